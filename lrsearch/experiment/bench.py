"""A recorded table as a benchmark others can use: HPOBench's interface, and Syne Tune's blackbox layout.

`bench("nobn")` answers `objective(config, fidelity, seed)` from `results/tables/nobn` the way HPOBench's
tabular benchmarks answer `objective_function` (`function_value`, `cost`, `info`), beside `configspace` and
`fidelity_space` (ConfigSpace). `export_syne_tune` writes the same readings in Syne Tune's blackbox-repository
layout (`BlackboxTabular` + `serialize`), so a Syne Tune scheduler can be simulated on them.

One reading rule serves both, so a value read here and one read from the export agree:

- a config snaps to the nearest grid point on each axis, in the axis's own scale (`Table.snap`);
- the fidelity is training steps, one of the steps the table evaluated at (`fidelities`);
- `function_value` is the validation error, 1 - val_acc at that step (minimised, as HPOBench does);
- `cost` is the seconds of training up to that step on the cost clock (steps x calibrated seconds per step,
  calibration.py), or the recorded training seconds (`train_s`) when no calibration prices the task
  (`cost_clock` says which);
- a diverged run stopped at the evaluation where its loss blew up (training/loop.py checks only there), so it
  has no recorded accuracy from that step on. Read there or later, its value is chance error, 1 - 1/classes:
  what a model with non-finite weights scores on a balanced split. This is a filled value, not a recorded
  one, and it says so (`info["recorded"]` False and `info["note"]`; `metric_diverged` = 1 in the export). Its
  cost stays at what the run spent until it stopped: it trained no further;
- a failed run (a crash) says nothing about its config: past its last recorded evaluation there is no value
  (`function_value` None), and the export refuses a table with such a cell rather than invent one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd

from lrsearch.experiment.calibration import Calibration
from lrsearch.experiment.table import Table, TableWorkload
from lrsearch.training.errors import InputError

REPO = Path(__file__).resolve().parents[2]
TABLES = REPO / "results" / "tables"  # where `bench(name)` looks for a table by name
CALIBRATION = REPO / "results" / "calibration"  # the default cost clock, when it exists
FIDELITY = "steps"  # the fidelity's name, in both ConfigSpace's fidelity space and Syne Tune's
TASK = "task"  # the export's one constant hyperparameter: the table's task (see `to_blackbox`)
CIFAR10_CLASSES = 10

# Syne Tune's objective names, after its own tabular imports (conversion_scripts/scripts/nasbench201_import.py)
VALID_ERROR = "metric_valid_error"
TEST_ERROR = "metric_test_error"
ELAPSED_TIME = "metric_elapsed_time"  # cumulative over the fidelities, as the simulator backend requires
RUNTIME = "metric_runtime"  # this fidelity's own share of it
RECORDED_TRAIN_TIME = "metric_recorded_train_time"  # the recorded wall seconds of training, the check beside it
DIVERGED = "metric_diverged"  # 1 where the run had diverged by that step: its errors are the chance fill
OBJECTIVES = [VALID_ERROR, TEST_ERROR, ELAPSED_TIME, RUNTIME, RECORDED_TRAIN_TIME, DIVERGED]
SYNE_TUNE_INSTALL = "pip install -e '.[synetune]' && pip install --no-deps syne-tune==0.16.0"


@dataclass(frozen=True)
class Reading:
    """One recorded run read at one fidelity: what both `objective` and the export report."""
    steps: int  # the fidelity asked
    val_acc: float | None  # recorded at `steps`; None when not (diverged or failed by then)
    test_acc: float | None
    val_error: float | None  # 1 - val_acc, or the chance fill after a divergence, or None (no value)
    test_error: float | None
    diverged_at: int | None  # the step the run diverged at, when it had by `steps`
    steps_trained: int  # the steps the run had trained when read (fewer than `steps` after a divergence)
    cost_s: float
    train_s: float
    wall_s: float
    curve: list[dict]  # the recorded evaluations up to `steps`

    @property
    def recorded(self) -> bool:
        return self.val_acc is not None


class TableBenchmark:
    """A Table answered as an HPOBench benchmark (see the module docstring for what a reading is)."""

    def __init__(self, table: Table, calibration: Calibration | None = None, rng: int | np.random.Generator | None = None,
                 cost_clock: str | None = None):
        self.table = table
        self.rng = np.random.default_rng(rng)
        self.calibration = calibration
        self._workload = TableWorkload(table, calibration=calibration)
        self.task, self.names, self.seeds = table.task, table.names, list(table.seeds)
        classes = table.definition.get("task", {}).get("classes")  # a subset of CIFAR-10's labels, or None: all
        self.classes = len(classes) if classes else CIFAR10_CLASSES
        self.chance_error = 1 - 1 / self.classes
        self.fidelities = _fidelities(table)
        self.metric = "val_acc" if any(c.curve["val_acc"].notna().any() for c in table.cells.values()) else "test_acc"
        if calibration is None:
            self.cost_clock = cost_clock or "recorded training seconds (train_s): no calibration given"
        else:
            rate, pre_eval = calibration.rate(self.task, _optimizer(table))
            self.cost_clock = (f"steps x {1000 * rate:.3g} ms/step" + (f" + evaluations x {pre_eval:.3g} s" if pre_eval
                               else "") + f" (calibration {calibration.describe()})")
        self.configspace = _configspace(table, seed=int(self.rng.integers(2**31 - 1)))
        self.fidelity_space = _fidelity_space(self.fidelities)

    def __repr__(self) -> str:
        return f"<TableBenchmark {self.table.describe()}; fidelity steps {self.fidelities}; cost: {self.cost_clock}>"

    # ------------------------------------------------------------ HPOBench's interface

    def get_configuration_space(self):
        return self.configspace

    def get_fidelity_space(self):
        return self.fidelity_space

    def objective(self, config: Mapping, fidelity: int | Mapping | None = None, seed: int | None = None) -> dict:
        """The validation error of `config` (snapped to the grid) after `fidelity` steps (None: the full run),
        read from recorded seed `seed` (None: one drawn with this benchmark's rng)."""
        return self._answer(config, fidelity, seed, test=False)

    def objective_test(self, config: Mapping, fidelity: int | Mapping | None = None, seed: int | None = None) -> dict:
        """As `objective`, with the test error as `function_value`."""
        return self._answer(config, fidelity, seed, test=True)

    objective_function = objective  # HPOBench's names
    objective_function_test = objective_test

    def _answer(self, config: Mapping, fidelity, seed: int | None, test: bool) -> dict:
        point = self.snap(config)
        steps = self._steps(fidelity)
        seed = self._seed(seed)
        r = self.read(point, seed, steps)
        cell = self.table.cell(point, seed)
        note = None
        if r.diverged_at is not None:
            note = (f"the run diverged at step {r.diverged_at} (no accuracy recorded from there on); its error at step "
                    f"{steps} is chance, {self.chance_error:.3g} (1/{self.classes} classes), not a recorded evaluation")
        elif not r.recorded:
            note = f"the run {cell.status} before step {steps}: no value there"
        return {"function_value": r.test_error if test else r.val_error, "cost": r.cost_s,
                "info": {"val_acc": r.val_acc, "test_acc": r.test_acc, "steps": steps, "steps_trained": r.steps_trained,
                         "seed": seed, "config": dict(zip(self.names, point)), "status": cell.status,
                         "diverged_at_step": r.diverged_at, "recorded": r.recorded, "note": note,
                         "train_s": r.train_s, "wall_s": r.wall_s, "metric": self.metric, "curve": r.curve}}

    # ------------------------------------------------------------ the reading rule

    def read(self, point: tuple[float, ...], seed: int, steps: int) -> Reading:
        """The run at grid `point` under recorded `seed`, read at fidelity `steps` (one of `fidelities`)."""
        cell = self.table.cell(point, seed)
        curve = cell.curve[cell.curve["step"] <= steps]
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in curve.to_dict("records")]
        last = rows[-1] if rows else None
        diverged_at = cell.steps if cell.status == "diverged" and cell.steps <= steps else None
        val_acc = test_acc = None
        if last is not None and last["step"] == steps and last[self.metric] is not None:
            val_acc, test_acc = float(last[self.metric]), _float(last["test_acc"])
        if val_acc is not None:
            val_error, test_error = 1 - val_acc, None if test_acc is None else 1 - test_acc
        elif diverged_at is not None:
            val_error = test_error = self.chance_error
        else:
            val_error = test_error = None
        steps_trained = int(last["step"]) if last else 0
        train_s = float(last["train_s"] or 0.0) if last else cell.train_s
        cost = self._workload.price(dict(zip(self.names, point)), steps_trained, len(rows))
        return Reading(steps, val_acc, test_acc, val_error, test_error, diverged_at, steps_trained,
                       train_s if cost is None else cost, train_s, float(last["wall_s"] or 0.0) if last else 0.0, rows)

    # ------------------------------------------------------------ checking what a caller gives

    def snap(self, config: Mapping) -> tuple[float, ...]:
        """The grid point nearest to `config` (a dict or a ConfigSpace Configuration), each value checked first."""
        if not isinstance(config, Mapping):
            raise InputError(f"config {config!r}: expected a dict (or a ConfigSpace Configuration) of "
                             f"{', '.join(self.names)}")
        params = dict(config)
        for dim in self.table.space:
            value = params.get(dim.name)
            if dim.categorical or value is None:
                continue  # Table.snap names a missing one
            if not isinstance(value, Real) or not dim.low * (1 - 1e-9) <= value <= dim.high * (1 + 1e-9):
                raise InputError(f"config {dim.name}={value!r}: outside the table's space [{dim.low:g}, {dim.high:g}] "
                                 f"({self.table.folder}); sample from `configspace`")
        return self.table.snap(params)

    def _steps(self, fidelity) -> int:
        if fidelity is None:
            return self.fidelities[-1]
        if isinstance(fidelity, Mapping):
            if set(fidelity) != {FIDELITY}:
                raise InputError(f"fidelity {dict(fidelity)!r}: expected {{{FIDELITY!r}: n}} with n one of "
                                 f"{self.fidelities}")
            fidelity = fidelity[FIDELITY]
        if isinstance(fidelity, bool) or not isinstance(fidelity, Integral) or int(fidelity) not in self.fidelities:
            raise InputError(f"fidelity {FIDELITY}={fidelity!r}: the table evaluated at steps {self.fidelities} "
                             f"only ({self.table.folder}); give one of them, or None for the full run")
        return int(fidelity)

    def _seed(self, seed: int | None) -> int:
        if seed is None:
            return int(self.rng.choice(self.seeds))
        if isinstance(seed, bool) or not isinstance(seed, Integral) or int(seed) not in self.seeds:
            raise InputError(f"seed {seed!r}: not a recorded seed of {self.table.folder} (recorded: "
                             f"{', '.join(map(str, self.seeds))}); give one of them, or None to draw one")
        return int(seed)


def bench(name: str | Path, calibration: str | Path | Calibration | bool | None = None,
          rng: int | np.random.Generator | None = None) -> TableBenchmark:
    """The table `name` as a benchmark: a table's name under the repo's results/tables/ (`bench("nobn")`) or the
    folder `lrsearch tabulate` wrote. `calibration` prices the cost clock: a folder, its calibration.csv or a
    loaded Calibration; False for the recorded training seconds; None (default) for the repo's
    results/calibration when it prices the task, else the recorded training seconds (`.cost_clock` says which).
    `rng` (a seed or a numpy Generator) draws a recorded seed for a call that gives none, and seeds
    `configspace`."""
    table = Table.load(resolve_table(name))
    if calibration is False:
        return TableBenchmark(table, None, rng, "recorded training seconds (train_s): no calibration asked for")
    if calibration is not None:
        loaded = calibration if isinstance(calibration, Calibration) else Calibration.load(calibration)
        return TableBenchmark(table, loaded, rng)
    if not (CALIBRATION / "calibration.csv").is_file():
        return TableBenchmark(table, None, rng, f"recorded training seconds (train_s): no calibration at {CALIBRATION}")
    default = Calibration.load(CALIBRATION)
    try:
        default.rate(table.task, _optimizer(table))
    except InputError:
        return TableBenchmark(table, None, rng, f"recorded training seconds (train_s): {CALIBRATION} does not "
                              f"calibrate task {table.task}")
    return TableBenchmark(table, default, rng)


def resolve_table(name: str | Path) -> Path:
    """The folder of table `name`: a folder as given, or a name under the repo's results/tables/."""
    path = Path(name)
    if path.is_dir():
        return path
    here = sorted(p.name for p in TABLES.iterdir() if (p / "results.sqlite").is_file()) if TABLES.is_dir() else []
    if len(path.parts) == 1 and (TABLES / path).is_dir():
        return TABLES / path
    where = path if len(path.parts) > 1 else TABLES / path
    raise InputError(f"table {name}: no such folder {where} (tables under {TABLES}: {', '.join(here) or 'none'}); "
                     "give a table's name or the folder `lrsearch tabulate --results FOLDER` wrote")


# ---------------------------------------------------------------- Syne Tune's blackbox layout


def to_blackbox(b: TableBenchmark):
    """The benchmark's every reading as Syne Tune's BlackboxTabular: one row per grid point, Syne Tune's seed axis
    the table's recorded seeds (in `b.seeds`' order), one fidelity per recorded evaluation step."""
    BlackboxTabular = _syne_tune().BlackboxTabular
    from syne_tune.config_space import choice, logordinal, ordinal, randint

    points = b.table.points
    values = np.empty((len(points), len(b.seeds), len(b.fidelities), len(OBJECTIVES)))
    unanswered = []
    for i, point in enumerate(points):
        for j, seed in enumerate(b.seeds):
            for k, steps in enumerate(b.fidelities):
                r = b.read(point, seed, steps)
                if r.val_error is None or r.test_error is None:
                    unanswered.append(f"{_named(b.names, point)} seed {seed} at step {steps}")
                values[i, j, k] = [_nan(r.val_error), _nan(r.test_error), r.cost_s, 0.0, r.train_s,
                                   float(r.diverged_at is not None)]
    if unanswered:
        raise InputError(f"table {b.table.folder}: {len(unanswered)} readings have no value (a failed run, or one "
                         f"without a test accuracy), e.g. {unanswered[0]}; re-record those runs with "
                         "`lrsearch tabulate` before exporting")
    cumulative = values[..., OBJECTIVES.index(ELAPSED_TIME)]
    values[..., OBJECTIVES.index(RUNTIME)] = np.diff(cumulative, axis=-1, prepend=0.0)

    def domain(dim):
        grid = [float(v) for v in b.table.axes[dim.name]]
        if dim.categorical:
            return choice(grid)
        return logordinal(grid) if dim.log else ordinal(grid, kind="nn")

    # `task` is a constant column: Syne Tune 0.16 finds a config's row through a pandas index of the hyperparameter
    # columns, and under pandas 3 that lookup fails when there is one column (`loc[(lr,)]`: "zip() argument 2 is
    # longer than argument 1"), as in a one-axis table
    hyperparameters = pd.DataFrame(points, columns=b.names).assign(**{TASK: b.task})
    return BlackboxTabular(
        hyperparameters=hyperparameters,
        configuration_space={**{dim.name: domain(dim) for dim in b.table.space}, TASK: b.task},
        fidelity_space={FIDELITY: randint(lower=b.fidelities[0], upper=b.fidelities[-1])},
        objectives_evaluations=values, fidelity_values=np.array(b.fidelities), objectives_names=list(OBJECTIVES))


def export_syne_tune(b: TableBenchmark, folder: str | Path) -> Path:
    """Write `b` in Syne Tune's blackbox-repository layout into `folder`, through Syne Tune's own `serialize`:
    hyperparameters.parquet, objectives_evaluations.npy, fidelities_values.npy, configspace.json,
    fidelityspace.json and metadata.json. Load it with `syne_tune.blackbox_repository.blackbox_tabular.deserialize`
    (`[b.task]`); the task is its one task name."""
    blackbox = to_blackbox(b)
    from syne_tune.blackbox_repository.conversion_scripts import scripts  # the metadata keys Syne Tune reads

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    diverged = sum(c.status == "diverged" for c in b.table.cells.values())
    _syne_tune().serialize({b.task: blackbox}, str(folder), metadata={
        scripts.metric_elapsed_time: ELAPSED_TIME, scripts.default_metric: VALID_ERROR, scripts.time_attr: FIDELITY,
        "mode": "min",
        "seeds": b.seeds, "cost_clock": b.cost_clock, "source": str(b.table.folder), "digest": b.table.digest(),
        "diverged_fill": (f"{diverged} runs diverged; from the step a run diverged at on, its valid and test errors "
                          f"are chance error {b.chance_error:.6g} (1/{b.classes} classes, not recorded; "
                          f"{DIVERGED} = 1 there) and its elapsed time stays at what it spent until it stopped"),
        "objectives": {VALID_ERROR: "1 - val_acc at the step", TEST_ERROR: "1 - test_acc at the step",
                       ELAPSED_TIME: f"seconds of training up to the step, cumulative: {b.cost_clock}",
                       RUNTIME: f"this step's share of {ELAPSED_TIME}",
                       RECORDED_TRAIN_TIME: "recorded wall seconds of training up to the step (the check)",
                       DIVERGED: "1 where the run had diverged by the step (errors filled), else 0"},
    })
    return folder


def _syne_tune():
    """Syne Tune's blackbox_tabular module, or one line saying what to install."""
    try:
        import fastparquet  # noqa: F401  (Syne Tune writes and reads hyperparameters.parquet with it)
        from syne_tune.blackbox_repository import blackbox_tabular
    except ImportError as err:
        raise InputError(f"the Syne Tune export needs Syne Tune's blackbox repository, and {err.name} is not "
                         f"installed: {SYNE_TUNE_INSTALL}") from err
    return blackbox_tabular


# ---------------------------------------------------------------- the spaces


def _configspace(table: Table, seed: int):
    """ConfigSpace's space of the table's space: floats over [low, high], log where the space is log; a proposal
    between grid points is answered by the nearest one (`TableBenchmark.snap`)."""
    from ConfigSpace import Categorical, ConfigurationSpace, Float

    space = ConfigurationSpace(name=f"lrsearch-table-{table.task}", seed=seed)
    for dim in table.space:
        if dim.categorical:
            space.add(Categorical(dim.name, [float(v) for v in table.axes[dim.name]]))
        else:
            space.add(Float(dim.name, (dim.low, dim.high), log=dim.log))
    return space


def _fidelity_space(fidelities: list[int]):
    from ConfigSpace import ConfigurationSpace, Integer

    space = ConfigurationSpace(name="lrsearch-table-fidelity")
    space.add(Integer(FIDELITY, (fidelities[0], fidelities[-1]), default=fidelities[-1]))
    return space


def _fidelities(table: Table) -> list[int]:
    """The evaluation steps every completed run recorded (a diverged or failed run's are a prefix of them)."""
    full = {tuple(int(s) for s in c.curve["step"]) for c in table.cells.values() if c.status == "ok"}
    if not full:
        raise InputError(f"table {table.folder}: no run completed, so no fidelity is recorded in full")
    if len(full) > 1:
        raise InputError(f"table {table.folder}: its completed runs evaluated at {len(full)} different sets of steps; "
                         "a benchmark's fidelities are the steps every run shares (re-record the table)")
    steps = list(next(iter(full)))
    for (point, seed), c in table.cells.items():
        if list(c.curve["step"]) != steps[:len(c.curve)]:
            raise InputError(f"table {table.folder}: the run at {_named(table.names, point)} seed {seed} evaluated "
                             f"at steps {list(c.curve['step'])}, not a prefix of {steps}")
    return steps


def _optimizer(table: Table) -> str:
    """The optimizer every run of the table trained with (the calibration's second key)."""
    return table.definition.get("task", {}).get("optimizer", "sgd")


def _named(names: list[str], point: tuple[float, ...]) -> str:
    return " ".join(f"{n}={float(v):g}" for n, v in zip(names, point))


def _float(value) -> float | None:
    return None if value is None else float(value)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value
