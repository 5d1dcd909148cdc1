"""Replay recorded learning curves instead of training: search budgets at scale.

HPO benchmark suites (HPOBench, YAHPO Gym, LCBench) answer "which optimiser wins at which
budget" by replaying tables of recorded curves; this module does the same with our own
recordings, in three steps:

1. `tabulation`: an experiment turned into a dense grid of real trials (for example 48
   log-spaced LRs x 3 seeds), run and stored like any experiment (`lrsearch tabulate`).
2. `ReplayTable` + `ReplayObjective`: for a proposed LR, the curve interpolated in log-LR
   between the recorded neighbours (`interpolate_curve`) of one recorded seed, drawn at
   random for each trial; its recorded training seconds are the simulated time; the pruning
   hook is called at each recorded evaluation, as the trainer calls it. Strategies run
   against it unchanged, and their own overhead is measured for real.
3. `replay_experiment`: every (strategy, seed) run against the replay objective, in worker
   processes. A strategy whose proposals do not depend on its budget (all but grid, see
   `Strategy.budget_aware`) runs once at the largest budget and each smaller budget b is
   read as its first b trials; grid runs at every budget.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lrsearch.experiment.config import Experiment
from lrsearch.experiment.store import Store
from lrsearch.search.strategies import REGISTRY, USABLE, Evaluation, ReportHook, get_strategy
from lrsearch.training.errors import InputError
from lrsearch.training.progress import LOG, PROGRESS, Bar, bar_wanted

TABULATE_STRATEGY = "grid"


def tabulation(experiment: Experiment, n_lrs: int = 48, seeds: list[int] | None = None,
               results: str | None = None, points: dict[str, int] | None = None) -> Experiment:
    """The experiment as a dense table: a grid over its space for each seed, stored as the grid strategy's runs
    in `<results>-table/results.sqlite`. A 1-D `lr` space gets `n_lrs` log-spaced LRs; a space of several
    dimensions a product grid with `points[name]` points on each other axis (and `n_lrs` on lr unless `points`
    names it), as tabular benchmarks grid HPO spaces (for example 8 LRs x 3 x 3)."""
    space = experiment.search_space()
    if n_lrs < 2:
        raise InputError("--lrs: a table needs at least 2 learning rates")
    points = dict(points or {})
    options: dict = {}
    if space.names == ["lr"] and not points:
        budget = n_lrs
    else:
        if "lr" in space.names:
            points.setdefault("lr", n_lrs)
        options = {TABULATE_STRATEGY: {"points": points}}
        try:
            budget = get_strategy(TABULATE_STRATEGY, space, **options[TABULATE_STRATEGY]).grid_size(10**9)
        except InputError as err:
            raise InputError(f"{err} (`lrsearch tabulate --points NAME=K ...`)") from None
    return experiment.model_copy(update={
        "name": f"{experiment.name}-table", "strategies": [TABULATE_STRATEGY], "budgets": [budget],
        "seeds": seeds or [0, 1, 2], "options": options, "time_budget_s": None, "replay": None,
        "results": results or f"{experiment.results_dir()}-table",
        "description": f"Table of {experiment.name}: a grid of {budget} points over {', '.join(space.names)} x "
                       "seeds, full curves."})


@dataclass
class RecordedCurve:
    """One trial's curve at its evaluations: what the trainer reported, and the training seconds so far."""

    lr: float
    status: str  # ok, diverged, failed (a tabulated trial is never pruned)
    steps: np.ndarray
    val_acc: np.ndarray  # what the trainer reports to a pruner (test accuracy where the task has no val split)
    test_acc: np.ndarray
    train_s: np.ndarray


def interpolate_curve(lower: RecordedCurve, upper: RecordedCurve, lr: float) -> RecordedCurve:
    """The curve at `lr` between two recorded ones, linear in log-LR.

    Status and length come from the neighbour nearer in log-LR (a trial diverges or it does
    not); each evaluation's accuracies and training seconds are interpolated where both
    neighbours have a finite value at that step, and the nearer one's are kept elsewhere."""
    if upper.lr == lower.lr:
        return lower
    w = (math.log(lr) - math.log(lower.lr)) / (math.log(upper.lr) - math.log(lower.lr))
    w = min(max(w, 0.0), 1.0)
    near, far = (lower, upper) if w < 0.5 else (upper, lower)

    def blend(a_near: np.ndarray, a_far: np.ndarray) -> np.ndarray:
        out = a_near.astype(float).copy()
        n = min(len(a_near), len(a_far))
        same = (near.steps[:n] == far.steps[:n]) & np.isfinite(a_near[:n]) & np.isfinite(a_far[:n])
        w_far = w if near is lower else 1.0 - w
        out[:n][same] = (1 - w_far) * a_near[:n][same] + w_far * a_far[:n][same]
        return out

    return RecordedCurve(lr, near.status, near.steps, blend(near.val_acc, far.val_acc),
                         blend(near.test_acc, far.test_acc), blend(near.train_s, far.train_s))


class ReplayTable:
    """The recorded curves of a tabulation, per seed, sorted by LR."""

    def __init__(self, task: str, curves: dict[int, list[RecordedCurve]], source: str = "",
                 environment: dict | None = None):
        self.task, self.source, self.environment = task, source, environment or {}
        self.curves = {seed: sorted(c, key=lambda r: r.lr) for seed, c in curves.items()}
        self.seeds = sorted(self.curves)
        if not self.seeds or any(len(c) < 2 for c in self.curves.values()):
            raise InputError(f"{source or 'replay table'}: needs at least 2 recorded LRs per seed; "
                             "record them with `lrsearch tabulate EXPERIMENT.toml`")
        self.lr_low = max(c[0].lr for c in self.curves.values())
        self.lr_high = min(c[-1].lr for c in self.curves.values())

    @classmethod
    def load(cls, results_dir: str | Path) -> ReplayTable:
        path = Path(results_dir) / "results.sqlite"
        if not path.is_file():
            raise InputError(f"replay.table: {path} does not exist; record a table with "
                             "`lrsearch tabulate EXPERIMENT.toml` and give its folder")
        store = Store(path, create=False)
        try:
            trials = store.trials_frame()
            curves = store.curves_frame()
            runs = store.runs_frame()
        finally:
            store.close()
        trials = trials[(trials["strategy"] == TABULATE_STRATEGY) & (trials["kind"] == "train")]
        if trials.empty:
            raise InputError(f"replay.table: {path} holds no tabulated trials; run `lrsearch tabulate` first")
        curves = curves[curves["strategy"] == TABULATE_STRATEGY]
        by_trial = {tid: g.sort_values("step") for tid, g in curves.groupby("trial_id")}
        recorded: dict[int, list[RecordedCurve]] = {}
        for row in trials.itertuples():
            g = by_trial.get(row.trial_id, curves.iloc[:0])
            acc = g["val_acc"].where(g["val_acc"].notna(), g["test_acc"]).to_numpy(dtype=float)
            recorded.setdefault(int(row.seed), []).append(RecordedCurve(
                float(row.lr), row.status, g["step"].to_numpy(), acc, g["test_acc"].to_numpy(dtype=float),
                g["train_s"].to_numpy(dtype=float)))
        return cls(str(trials["task"].iloc[0]), recorded, str(results_dir), json.loads(runs["environment"].iloc[0]))

    def curve(self, seed: int, lr: float) -> RecordedCurve:
        """The seed's curve at `lr`, interpolated between its recorded neighbours (clamped to the recorded range)."""
        curves = self.curves[seed]
        lrs = [c.lr for c in curves]
        i = int(np.clip(np.searchsorted(lrs, lr), 1, len(curves) - 1))
        return interpolate_curve(curves[i - 1], curves[i], float(np.clip(lr, lrs[0], lrs[-1])))


@dataclass
class ReplayObjective:
    """The objective strategies see in a replay: params -> Evaluation from the table, no training.

    With seed_draw "trial", each trial draws one recorded seed (seeded by the run's seed, in trial
    order); with "run", every trial of the run gets the same recorded seed, as a real run trains all
    its trials with its own seed (but there are only as many such landscapes as recorded seeds)."""

    table: ReplayTable
    target_acc: float
    seed: int = 0
    seed_draw: str = "trial"

    def __post_init__(self):
        self._rng = np.random.default_rng(self.seed)
        self._run_seed = self.table.seeds[int(self._rng.integers(len(self.table.seeds)))]

    def __call__(self, params: dict, report: ReportHook | None = None) -> Evaluation:
        if set(params) != {"lr"}:
            raise ValueError(f"a replay answers params {{'lr': ...}} only, got {sorted(params)}")
        recorded_seed = (self._run_seed if self.seed_draw == "run"
                         else self.table.seeds[int(self._rng.integers(len(self.table.seeds)))])
        curve = self.table.curve(recorded_seed, float(params["lr"]))
        status, n = curve.status, len(curve.steps)
        reached = np.flatnonzero(curve.val_acc >= self.target_acc)
        if status == "ok" and report is not None:
            for i, (step, acc) in enumerate(zip(curve.steps, curve.val_acc)):
                if report(int(step), float(acc)):  # the trainer's semantics: a True answer stops the trial
                    status, n = "pruned", i + 1
                    break
        last = n - 1
        usable = status in USABLE and n > 0 and math.isfinite(curve.val_acc[last])
        ttt = float(curve.train_s[reached[0]]) if len(reached) and reached[0] <= last else None
        record = {"recorded_seed": recorded_seed, "steps": int(curve.steps[last]) if n else 0,
                  "final_test_acc": float(curve.test_acc[last]) if usable else None, "time_to_target_s": ttt}
        return Evaluation(params, float(curve.val_acc[last]) if usable else 0.0, status,
                          float(curve.train_s[last]) if n else 0.0, record=record)


def check_replayable(experiment: Experiment, table: ReplayTable) -> None:
    """Stop with one message when the experiment asks for something the table cannot answer."""
    if experiment.task != table.task:
        raise InputError(f"task: the replay table {table.source} records task {table.task!r}, "
                         f"the experiment asks for {experiment.task!r}")
    space = experiment.search_space()
    if space.names != ["lr"]:
        raise InputError("space: a replay answers a search over `lr` alone")
    dim = next(iter(space))
    if dim.low < table.lr_low * (1 - 1e-9) or dim.high > table.lr_high * (1 + 1e-9):
        raise InputError(f"space.lr: [{dim.low:g}, {dim.high:g}] reaches outside the table's recorded LRs "
                         f"[{table.lr_low:g}, {table.lr_high:g}]")
    range_tests = [s for s in experiment.strategies if s.startswith("lr-range")]
    if range_tests:
        raise InputError(f"strategies: {', '.join(range_tests)} cannot be replayed (a range test and a cyclical "
                         "run are not in a table of fixed-schedule trials); run them for real with `lrsearch run`")
    self_tuning = [s for s in experiment.strategies if getattr(REGISTRY.get(s), "self_tuning", False)]
    if self_tuning:
        raise InputError(f"strategies: {', '.join(self_tuning)} cannot be replayed (they train with another optimizer "
                         "than the table's trials); run them for real with `lrsearch run`")
    if experiment.time_budget_s is not None:
        raise InputError("time_budget_s: replays compare trial budgets; leave it out")


# ---------------------------------------------------------------- running the replay

_worker_table: ReplayTable | None = None


def _init_worker(table: ReplayTable) -> None:
    global _worker_table
    _worker_table = table
    # one thread per worker process: several processes each running multi-threaded BLAS / torch
    # (GP strategies) oversubscribe the cores and run slower than one
    import torch
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(1)
    threadpool_limits(1)
    import logging
    import warnings
    warnings.filterwarnings("ignore")
    for name in ("optuna", "hyperopt", "nni"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def _replay_runs(job: tuple) -> list[dict]:
    """One strategy at one budget for a list of seeds: its trials as rows."""
    strategy_name, budget, seeds, space, options, target_acc, seed_draw = job
    rows = []
    for seed in seeds:
        objective = ReplayObjective(_worker_table, target_acc, seed, seed_draw)
        strategy = get_strategy(strategy_name, space, seed=seed, **options)
        for i, ev in enumerate(strategy.run(objective, budget)):
            rows.append({"strategy": strategy_name, "run_budget": budget, "seed": seed, "trial_index": i,
                         "lr": float(ev.params["lr"]), "status": ev.status,
                         "value": ev.value if ev.has_value else math.nan,
                         "final_test_acc": ev.record["final_test_acc"], "train_s": ev.train_s,
                         "overhead_s": ev.overhead_s, "time_to_target_s": ev.record["time_to_target_s"],
                         "recorded_seed": ev.record["recorded_seed"], "steps": ev.record["steps"]})
    return rows


def seed_chunks(seeds: list[int], workers: int) -> list[list[int]]:
    """A run's seeds in one chunk per worker process (fewer when there are fewer seeds): each (strategy, budget)
    keeps every worker busy, and a seed's replay does not depend on the chunk it is in."""
    return [chunk.tolist() for chunk in np.array_split(np.array(seeds), max(1, min(len(seeds), workers)))]


def replay_experiment(experiment: Experiment, table: ReplayTable | None = None, workers: int | None = None,
                      progress: bool = True) -> pd.DataFrame:
    """Every (strategy, seed) run of the experiment against its replay table; one row per trial
    (`run_budget` is the budget the run was made with)."""
    if experiment.replay is None:
        raise InputError("replay: this experiment has no [replay] table; add one, or train it with `lrsearch run`")
    table = table or ReplayTable.load(experiment.replay.table)
    check_replayable(experiment, table)
    space = experiment.search_space().to_dict()
    target = experiment.target_value()
    top = max(experiment.budgets)
    workers = workers or experiment.replay.workers or os.cpu_count() or 1
    jobs = []
    for name in experiment.strategies:
        budgets = experiment.budgets if REGISTRY[name].budget_aware else [top]
        options = experiment.options.get(name, {})
        for budget in budgets:
            for chunk in seed_chunks(experiment.seeds, workers):
                jobs.append((name, budget, chunk, space, options, target, experiment.replay.seed_draw))
    rows: list[dict] = []
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(table,)) as pool:
        bar = Bar(len(jobs), experiment.name) if progress and bar_wanted() else None
        for done, chunk_rows in enumerate(pool.map(_replay_runs, jobs), start=1):
            rows.extend(chunk_rows)
            name, budget, seeds = jobs[done - 1][:3]
            LOG.info("%s: replayed %s b%d seeds %d-%d (%d/%d chunks)", experiment.name, name, budget, seeds[0], seeds[-1],
                     done, len(jobs), extra=PROGRESS)
            if bar:
                bar.update(advance=1)
        if bar:
            bar.close()
    return pd.DataFrame(rows)

