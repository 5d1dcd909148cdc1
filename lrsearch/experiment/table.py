"""A table is a workload: trials answered from recorded runs, as tabular benchmarks answer them.

`lrsearch tabulate` (experiment/tabulation.py) records a product grid over a space (32 LRs, or 8 LRs x 3 x 3 over
weight decay and momentum) x seeds, every cell a real training run with its whole curve, in an ordinary store. `Table` loads
that store; `TableWorkload` answers a trial from it, the way HPOBench's and YAHPO's tabular benchmarks and
Syne Tune's blackbox repository do:

- a proposal snaps to the nearest grid point on each axis, in the axis's own scale (log for a log axis);
- each trial draws one of the recorded seeds, from (the run's seed, the grid point): a run that proposes
  the same point twice gets the same answer, as a real run trains every trial with its own seed;
- it returns the recorded curve (the pruning hook called at each recorded evaluation, as the trainer calls
  it), with its recorded steps. Its price on the cost clock is those steps x the calibrated seconds per
  step (`calibration.py`); its recorded wall seconds stay beside it, as a check.

A table may still be growing (its lanes run for hours): only the seeds recorded at every grid point are
used, and the others are named (`Table.partial`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lrsearch.experiment.store import Store
from lrsearch.search.strategies import REGISTRY, SearchSpace, parse_space
from lrsearch.training.errors import InputError
from lrsearch.training.trainer import ReportHook, TrialResult
from lrsearch.training.workloads import Workload

TABULATE_STRATEGY = "grid"  # the strategy `lrsearch tabulate` records a table with
CURVE_FIELDS = ("step", "epoch", "samples", "lr", "train_loss", "val_acc", "test_acc", "train_s", "wall_s")


@dataclass
class Cell:
    """One recorded run: a grid point under one seed, its status and its curve (one row per evaluation)."""
    point: tuple[float, ...]
    seed: int
    status: str  # ok, diverged or failed (a table's runs are never pruned)
    curve: pd.DataFrame  # CURVE_FIELDS
    train_s: float  # recorded wall seconds of training (the check beside the cost clock)
    eval_s: float
    device: str

    @property
    def steps(self) -> int:
        return int(self.curve["step"].iloc[-1]) if len(self.curve) else 0


@dataclass
class Table:
    """A tabulated grid: its task, its space, the grid's values on each axis, and a Cell per (point, seed)."""
    folder: Path
    task: str
    space: SearchSpace
    axes: dict[str, np.ndarray]  # each axis's grid values, ascending
    seeds: list[int]  # the seeds recorded at every point (the others: `partial`)
    cells: dict[tuple[tuple[float, ...], int], Cell]
    definition: dict  # the training every cell ran (the tabulated runs' stored definition, space aside)
    environment: dict = field(default_factory=dict)
    partial: dict[int, int] = field(default_factory=dict)  # seed -> points recorded, for seeds left out

    # ------------------------------------------------------------ loading

    @classmethod
    def load(cls, folder: str | Path) -> Table:
        """The table in `folder` (what `lrsearch tabulate` wrote: results.sqlite and experiment.json)."""
        folder = Path(folder)
        db, meta = folder / "results.sqlite", folder / "experiment.json"
        if not db.is_file() or not meta.is_file():
            raise InputError(f"table {folder}: no results.sqlite and experiment.json there; record a table with "
                             "`lrsearch tabulate EXPERIMENT.toml --results FOLDER`")
        space = parse_space(json.loads(meta.read_text())["space"], f"{meta}: space")
        if space.is_conditional or any(d.categorical for d in space):
            raise InputError(f"table {folder}: its space has a categorical or conditional dimension; a table is "
                             "answered on a numeric product grid (tabulate each choice as a table of its own)")
        store = Store(db, create=False)
        try:
            trials, curves, runs = store.trials_frame(), store.curves_frame(), store.runs_frame()
        finally:
            store.close()
        trials = trials[(trials["strategy"] == TABULATE_STRATEGY) & (trials["kind"] == "train")]
        if trials.empty:
            raise InputError(f"table {folder}: no tabulated trials yet; run `lrsearch tabulate` into it")
        by_trial = {tid: g for tid, g in curves.groupby("trial_id")}
        names = space.names
        cells: dict = {}
        for t in trials.itertuples():
            params = json.loads(t.params)
            point = tuple(float(params[n]) for n in names)
            curve = by_trial.get(t.trial_id, curves.iloc[:0])[list(CURVE_FIELDS)].sort_values("step")
            cells[(point, int(t.seed))] = Cell(point, int(t.seed), t.status, curve.reset_index(drop=True),
                                                float(t.train_s), float(getattr(t, "eval_s", None) or 0.0), str(t.device))
        axes = {n: np.unique([p[i] for p, _ in cells]) for i, n in enumerate(names)}
        grid = [tuple(float(x) for x in v) for v in _product(axes, names)]
        counts = {s: sum((p, s) in cells for p in grid) for s in sorted({s for _, s in cells})}
        seeds = [s for s, n in counts.items() if n == len(grid)]
        if not seeds:
            raise InputError(f"table {folder}: no seed is recorded at all {len(grid)} grid points yet "
                             f"({', '.join(f'seed {s}: {n}' for s, n in counts.items())}); let `lrsearch tabulate` "
                             "finish at least one")
        column = runs.get("definition", pd.Series(dtype=object))  # a store written before runs had definitions
        definition = json.loads(column.dropna().iloc[0]) if column.notna().any() else {}
        definition.pop("space", None)
        environment = json.loads(runs["environment"].dropna().iloc[0]) if runs["environment"].notna().any() else {}
        return cls(folder, str(trials["task"].iloc[0]), space, axes, seeds,
                   {k: c for k, c in cells.items() if k[1] in seeds}, definition, environment,
                   {s: n for s, n in counts.items() if s not in seeds})

    # ------------------------------------------------------------ answering

    @property
    def names(self) -> list[str]:
        return self.space.names

    @property
    def points(self) -> list[tuple[float, ...]]:
        """Every grid point, in the grid's order (the first axis slowest)."""
        return [tuple(float(x) for x in v) for v in _product(self.axes, self.names)]

    def snap(self, params: dict) -> tuple[float, ...]:
        """The grid point nearest to `params` on each axis, in the axis's scale (log distance on a log axis)."""
        missing = [n for n in self.names if n not in params]
        extra = sorted(set(params) - set(self.names))
        if missing or extra:
            raise InputError(f"table {self.folder}: a trial gives {', '.join(sorted(params)) or 'nothing'}; the "
                             f"table answers {', '.join(self.names)} (search its own space)")
        point = []
        for dim in self.space:
            values, x = self.axes[dim.name], float(params[dim.name])
            if dim.log:
                i = int(np.argmin(np.abs(np.log(values) - math.log(max(x, 1e-300)))))
            else:
                i = int(np.argmin(np.abs(values - x)))
            point.append(float(values[i]))
        return tuple(point)

    def draw_seed(self, run_seed: int, point: tuple[float, ...]) -> int:
        """The recorded seed a run's trial at `point` reads: drawn from (run seed, point), so repeatable."""
        digest = hashlib.sha256(json.dumps([run_seed, list(point)]).encode()).digest()
        return self.seeds[int.from_bytes(digest[:8], "little") % len(self.seeds)]

    def cell(self, point: tuple[float, ...], seed: int) -> Cell:
        return self.cells[(point, seed)]

    def digest(self) -> str:
        """A short hash of everything a trial can read: a table that grows or changes gets another."""
        if getattr(self, "_digest", None) is None:
            self._digest = self._hash()
        return self._digest

    def _hash(self) -> str:
        h = hashlib.sha256()
        for key in sorted(self.cells):
            c = self.cells[key]
            h.update(json.dumps([key[0], key[1], c.status, c.curve[["step", "val_acc", "test_acc"]].to_numpy(dtype=float)
                                 .round(6).tolist()]).encode())
        return h.hexdigest()[:16]

    def frame(self) -> pd.DataFrame:
        """Every cell's evaluations as rows: the grid point's params, seed, status, and CURVE_FIELDS."""
        parts = []
        for (point, seed), c in sorted(self.cells.items()):
            rows = c.curve.copy()
            for name, value in zip(self.names, point):
                rows[name] = value
            rows["seed"], rows["status"] = seed, c.status
            parts.append(rows[[*self.names, "seed", "status", *CURVE_FIELDS]])
        return pd.concat(parts, ignore_index=True)

    def describe(self) -> str:
        shape = " x ".join(str(len(self.axes[n])) for n in self.names)
        left = (f"; left out, recorded at fewer points: {', '.join(f'seed {s} ({n})' for s, n in self.partial.items())}"
                if self.partial else "")
        return (f"table `{self.folder}`: task {self.task}, {shape} grid points over {', '.join(self.names)} x "
                f"{len(self.seeds)} seeds = {len(self.cells)} runs{left}")


def _product(axes: dict[str, np.ndarray], names: list[str]):
    import itertools
    return itertools.product(*(axes[n] for n in names))


class TableWorkload(Workload):
    """A workload whose trials are read from a Table (see the module docstring); `calibration` (optional) prices
    them on the cost clock for the simulated executor."""

    def __init__(self, table: Table, target: float | None = None, calibration=None):
        self.table, self.target, self.calibration = table, target, calibration
        self.name = table.task
        # a built-in task's metric is validation accuracy, maximised; a user's function says its own
        self.metric = table.definition.get("metric", "val_acc")
        self.direction = table.definition.get("direction", "maximize")

    @property
    def parameters(self) -> dict[str, str]:
        return {n: f"tabulated at {len(self.table.axes[n])} points" for n in self.table.names}

    def definition(self) -> dict:
        return {"table": {"folder": self.table.folder.name, "digest": self.table.digest(),
                          "grid": {n: len(v) for n, v in self.table.axes.items()}, "seeds": self.table.seeds},
                **self.table.definition}

    def definition_ignored(self) -> set[str]:
        return {"table.folder"}  # the same table may sit in another folder

    def describe(self) -> dict:
        return super().describe() | {"answered_from": self.table.describe()}

    def price(self, params: dict, steps: float, evaluations: int) -> float | None:
        """Seconds on the cost clock of `steps` training steps and `evaluations` evaluations (None: no calibration)."""
        if self.calibration is None:
            return None
        own = self.table.definition.get("task", {}).get("optimizer")  # a built-in task's; a user's function has none
        if own is None and "optimizer" not in params:
            raise InputError(f"table {self.table.folder}: the calibration prices a built-in task's steps; "
                             f"{self.name!r} is not one (leave out `calibration` for its recorded seconds)")
        rate, pre_eval = self.calibration.rate(self.name, params.get("optimizer") or own)
        return steps * rate + evaluations * pre_eval

    def trial(self, params: dict, seed: int = 0, report: ReportHook | None = None, device=None) -> TrialResult:
        point = self.table.snap(params)
        recorded = self.table.draw_seed(seed, point)
        cell = self.table.cell(point, recorded)
        snapped = dict(zip(self.table.names, point))
        curve = cell.curve
        status, n = cell.status, len(curve)
        acc = curve["val_acc"].where(curve["val_acc"].notna(), curve["test_acc"]).to_numpy(dtype=float)
        if status == "ok" and report is not None:
            for i, (step, value) in enumerate(zip(curve["step"], acc)):
                if report(int(step), float(value)):  # the trainer's semantics: True stops the trial here
                    status, n = "pruned", i + 1
                    break
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in curve.iloc[:n].to_dict("records")]
        result = TrialResult(params=dict(params), seed=seed, status=status, curve=rows, target_acc=self.target,
                             device=f"table ({cell.device})", notes={"table_point": snapped, "recorded_seed": recorded})
        if n:
            last = rows[-1]
            result.steps, result.train_s = int(last["step"]), float(last["train_s"] or 0.0)
            result.wall_s = float(last["wall_s"] or 0.0)
            result.eval_s = cell.eval_s * n / max(len(curve), 1)
            usable = status in ("ok", "pruned") and math.isfinite(acc[n - 1])
            result.final_val_acc = float(acc[n - 1]) if usable else None
            result.final_test_acc = (float(last["test_acc"]) if usable and last["test_acc"] is not None else None)
            finite = acc[:n][np.isfinite(acc[:n])]
            result.best_val_acc = float(finite.max()) if len(finite) else None
            if self.target is not None and status != "failed":
                hit = np.flatnonzero(acc[:n] >= self.target if self.direction == "maximize" else acc[:n] <= self.target)
                if len(hit):
                    result.steps_to_target = int(rows[hit[0]]["step"])
                    result.time_to_target_s = float(rows[hit[0]]["train_s"] or 0.0)
        result.steps_per_epoch = int(round(rows[0]["step"] / rows[0]["epoch"])) if n and rows[0]["epoch"] else 0
        return result


def check_table_experiment(strategies: list[str], table: Table, space: SearchSpace, task: str,
                           task_overrides: dict) -> list[str]:
    """What an experiment asks that its table cannot answer, one problem per line (empty: nothing)."""
    problems = []
    if task != table.task and task != table.definition.get("function"):  # a user's function: its "file.py:fn"
        problems.append(f"task: the table {table.folder} records task {table.task!r}, not {task!r}; "
                        f"set task = {table.task!r}")
    if task_overrides:
        problems.append("task_overrides: a table's training is fixed when it is recorded; leave them out (tabulate "
                        "another table to change it)")
    if space.names != table.names:
        problems.append(f"space: the table answers {', '.join(table.names)}; search exactly those (in that order)")
    else:
        for dim in space:
            values = table.axes[dim.name]
            if dim.low < values[0] * (1 - 1e-9) or dim.high > values[-1] * (1 + 1e-9):
                problems.append(f"space.{dim.name}: [{dim.low:g}, {dim.high:g}] reaches outside the table's grid "
                                f"[{values[0]:g}, {values[-1]:g}]")
    refused = [s for s in strategies if s.startswith("lr-range") or getattr(REGISTRY.get(s), "self_tuning", False)]
    if refused:
        problems.append(f"strategies: {', '.join(refused)}: a table holds fixed-schedule runs of the task's own "
                        "optimizer; run these for real on the task")
    return problems
