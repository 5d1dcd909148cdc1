"""Experiment configs (TOML), validated at the edge.

    name = "benchmark-cpu"
    task = "cpu"                      # a built-in task (`lrsearch tasks`), or your own workload:
                                      # "package.module:function" or "path/to/file.py:function"
                                      # (see lrsearch/training/workloads/, examples/)
    strategies = ["grid", "random", "optuna-tpe", "lr-range-clr"]
    budgets = [8]                     # trials per (strategy, seed) run
    seeds = [0, 1, 2]
    target_acc = 0.45                 # optional: overrides the task's target (an accuracy)
    target = 0.1                      # optional: the same for any metric (a user workload's loss, say)
    direction = "minimize"            # optional: a user workload's metric is maximised unless this says so
    time_budget_s = 120               # optional: training seconds per run
    calibration = "results/calibration"  # optional: the report's times on the cost clock (lrsearch calibrate)
    table = "results/tables/nobn"     # optional: answer trials from this table (`lrsearch tabulate`), no training:
                                      # the task's recorded runs, snapped to the grid (experiment/table.py)
    results = "runs/my-run"           # optional: output folder (default runs/<name>, ignored by git)
    reference = "results/benchmark-cpu"  # optional: committed results a fresh run's report sets itself beside

    [space]                           # optional: default lr in [1e-4, 1], log scale
    lr = { low = 1e-3, high = 3.0, log = true }

    [task_overrides]                  # optional: any Task field, e.g. epochs = 4
    [options.lr-range-clr]            # optional: per-strategy options
    metric = "loss"

    [executor]                        # optional: where trials run (default: here, one at a time)
    kind = "ray"                      # local | ray | simulated (a table's trials, K workers on a simulated clock)
    address = "auto"                  # optional: an existing Ray cluster (default: a private one on 127.0.0.1)
    workers = 8                       # optional: trials at once (default: GPUs, else CPU cores; simulated: 1)
    num_gpus = 0.5                    # optional: per trial; a fraction packs trials on a GPU (default 1 if GPUs)
    num_cpus = 1                      # optional: per trial (default: CPUs / workers)

`seeds` is a list, or a count n for seeds 0 .. n-1 (runs on a table use hundreds).

A search on a table with K workers on a simulated clock (what `lrsearch replay` did before 2026-12-03):
`table = "FOLDER"` and `[executor] kind = "simulated"`, `workers = K` (or `lrsearch run --executor simulated
--workers K`). Strategies whose proposals do not depend on their budget then run once, at the largest budget; the
report reads each smaller budget off its first trials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lrsearch.search.strategies import REGISTRY, SpaceError, parse_space, strategy_names
from lrsearch.training.errors import InputError
from lrsearch.training.tasks import TASKS, get_task
from lrsearch.training.workloads import Workload, WorkloadError, is_user_workload, load_workload


class ConfigError(InputError):
    """A bad experiment config; the message names the file, the field and what is allowed."""


_TABLES: dict[str, object] = {}  # table folder -> Table, for this process


class ExecutorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: Literal["local", "ray", "simulated"] = "local"
    address: str | None = Field(default=None, min_length=1)
    workers: int | None = Field(default=None, ge=1)
    num_gpus: float | None = Field(default=None, ge=0)
    num_cpus: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ray_options_need_ray(self) -> ExecutorSettings:
        given = [k for k in ("address", "workers", "num_gpus", "num_cpus") if getattr(self, k) is not None]
        if self.kind == "local" and given:
            raise ValueError(f"{', '.join(given)}: options of the Ray executor; set kind = \"ray\"")
        if self.kind == "simulated" and set(given) - {"workers"}:
            raise ValueError(f"{', '.join(sorted(set(given) - {'workers'}))}: options of the Ray executor; the "
                             "simulated one takes workers only")
        return self


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # strict: "8" is not a number

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    task: str
    strategies: list[str] = Field(min_length=1)
    budgets: list[int] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    target_acc: float | None = Field(default=None, gt=0, le=1)
    target: float | None = None
    direction: Literal["maximize", "minimize"] | None = None
    time_budget_s: float | None = Field(default=None, gt=0)
    results: str | None = None
    calibration: str | None = None  # a folder `lrsearch calibrate` wrote: the report's seconds on the cost clock
    table: str | None = None  # a folder `lrsearch tabulate` wrote: trials are read from it (experiment/table.py)
    reference: str | None = None
    description: str = ""
    space: dict[str, Any] | None = None
    task_overrides: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)

    def __init__(self, **data: Any):
        """Validated at construction; a bad field raises ConfigError with one line per problem (as a config
        file does), not pydantic's raw error."""
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(_problems("Experiment", err)) from None

    @model_validator(mode="before")
    @classmethod
    def _no_replay_section(cls, data: Any) -> Any:
        if isinstance(data, dict) and "replay" in data:
            table = (data["replay"] or {}).get("table", "FOLDER") if isinstance(data["replay"], dict) else "FOLDER"
            raise ValueError(f"[replay]: replays now run through `lrsearch run` on a table: replace the section by "
                             f"table = \"{table}\" and [executor] kind = \"simulated\" (workers = K for K trials at "
                             "once); see docs/replay.md")
        return data

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 1:
                raise ValueError("a seed count is >= 1 (or give a list of seeds)")
            return list(range(v))
        return v

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if not is_user_workload(v) and v not in TASKS:
            raise ValueError(f"unknown task {v!r}; allowed: {', '.join(TASKS)}, or your own workload as "
                             "\"package.module:function\" or \"path/to/file.py:function\"")
        if is_user_workload(v):
            try:
                load_workload(v)
            except WorkloadError as err:
                raise ValueError(str(err).removeprefix(f"task {v!r}: ")) from None
        return v

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, v: list[str]) -> list[str]:
        known = strategy_names()
        unknown = [s for s in v if s not in known]
        if unknown:
            raise ValueError(f"unknown strateg{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(known)}")
        if len(set(v)) != len(v):
            raise ValueError("a strategy is listed twice")
        return v

    @field_validator("budgets")
    @classmethod
    def _positive_budgets(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v):
            raise ValueError("budgets are trial counts >= 1")
        return v

    @field_validator("space")
    @classmethod
    def _valid_space(cls, v: dict | None) -> dict | None:
        try:
            parse_space(v, "space")
        except SpaceError as err:
            raise ValueError(str(err)) from None
        return v

    @field_validator("options")
    @classmethod
    def _declared_options(cls, v: dict[str, dict[str, Any]], info) -> dict[str, dict[str, Any]]:
        """Every strategy's options against what it declares (`lrsearch strategies --options`)."""
        problems = []
        for name, options in v.items():
            if name not in info.data.get("strategies", [name]):
                problems.append(f"[options.{name}]: {name} is not in strategies")
            elif name in REGISTRY:
                problems += [f"[options.{name}] {p}" for p in REGISTRY[name].option_problems(options)]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        if self.target is not None and self.target_acc is not None:
            raise ValueError("target and target_acc: give one (target is the same for any metric)")
        if self.direction is not None and not is_user_workload(self.task):
            raise ValueError("direction: a built-in task's metric is validation accuracy, maximised; "
                             "direction is for your own workload's metric")
        if self.executor.kind == "simulated" and self.table is None:
            raise ValueError("executor.kind = \"simulated\": a simulated clock needs the trials' costs from a table; "
                             "set table = \"FOLDER\" (`lrsearch tabulate`), or use kind = \"local\"")
        if self.table is not None:
            from lrsearch.experiment.table import check_table_experiment

            try:
                table = self._table()
            except InputError as err:
                raise ValueError(str(err)) from None
            problems = check_table_experiment(self.strategies, table, self.search_space(), self.task,
                                              self.task_overrides)
            if problems:
                raise ValueError("; ".join(problems))
            return self
        try:
            workload = self.workload()
        except WorkloadError as err:
            raise ValueError(str(err)) from None
        except ValueError as err:
            raise ValueError(f"task_overrides: {err}") from None
        problems = []
        if workload.parameters is not None:
            names = self.search_space().names + [n for d in self.search_space() for n in _branch_names(d)]
            unknown = sorted(set(names) - set(workload.parameters))
            if unknown:
                problems.append(f"space: {', '.join(unknown)}: not a parameter of {self.task}; it takes "
                                f"{', '.join(workload.parameters)}")
        if not workload.supports_range_test:
            refused = [s for s in self.strategies if s.startswith("lr-range")]
            if refused:
                problems.append(f"strategies: {', '.join(refused)}: {self.task} is a plain objective (no model, "
                                "optimizer and loader to run a range test on); leave them out, or return a "
                                "ModelWorkload")
        if not workload.supports_self_tuning:
            refused = [s for s in self.strategies if getattr(REGISTRY.get(s), "self_tuning", False)]
            if refused:
                problems.append(f"strategies: {', '.join(refused)}: {self.task} trains with an optimizer of its own "
                                "(a plain objective, or your model's), and a self-tuning strategy trains with the one "
                                "it names (only a built-in task's trainer can swap it in); leave them out")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def target_value(self) -> float | None:
        """The experiment's target: `target` or `target_acc`, else the workload's own."""
        if self.target is not None:
            return self.target
        if self.target_acc is not None:
            return self.target_acc
        return self.workload().target

    def workload(self, data_source: str | None = None) -> Workload:
        """The workload this experiment tunes: a built-in task with its overrides and target, or the user's own
        (imported here: `lrsearch validate` checks it loads)."""
        target = self.target if self.target is not None else self.target_acc
        if self.table is not None:
            from lrsearch.experiment.calibration import Calibration
            from lrsearch.experiment.table import TableWorkload

            if target is None and self.task in TASKS:
                target = get_task(self.task).target_acc
            return TableWorkload(self._table(), target, Calibration.load(self.calibration) if self.calibration else None)
        return load_workload(self.task, self.task_overrides, data_source, self.direction, target)

    def _table(self):
        """The Table of `table`, loaded once per experiment (tables are read often and never change under a run)."""
        from lrsearch.experiment.table import Table

        cached = _TABLES.get(self.table)
        if cached is None:
            cached = _TABLES[self.table] = Table.load(self.table)
        return cached

    def task_spec(self):
        """The built-in Task (with overrides and target); a user workload has none."""
        if is_user_workload(self.task):
            raise ValueError(f"task {self.task!r} is a user workload, not a built-in Task")
        overrides = dict(self.task_overrides)
        target = self.target if self.target is not None else self.target_acc
        if target is not None:
            overrides["target_acc"] = target
        return get_task(self.task, **overrides)

    def search_space(self):
        return parse_space(self.space, "space")

    def results_dir(self, override: str | Path | None = None) -> Path:
        """Where a run writes: the override (--results), else the config's `results`, else runs/<name>
        (ignored by git: a fresh clone's `make benchmark` trains, and the committed reference under
        results/ changes only when asked for with --results)."""
        return Path(override or self.results or Path("runs") / self.name)

    def write_json(self, out: Path, workload: Workload | None = None) -> None:
        """`experiment.json` in the results folder: the validated config and the workload it resolves to (for a
        built-in task, the Task's fields), for the report."""
        import json

        workload = workload or self.workload()
        config = self.model_dump() | {"task": workload.describe(), "space": self.search_space().to_dict(),
                                      "workload": {"spec": self.task, "metric": workload.metric,
                                                   "direction": workload.direction, "target": workload.target,
                                                   "defaults": workload.defaults()}}
        (Path(out) / "experiment.json").write_text(json.dumps(config, indent=2))


def _branch_names(dim) -> list[str]:
    """The sub-parameter names of a conditional dimension (none for a plain one)."""
    branches = dim.branches or {}
    return [sub.name for space in branches.values() for sub in space]


def read_toml(path: str | Path) -> dict:
    """A config file's TOML; a missing file or bad TOML raises ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file; the configs live in experiments/*.toml")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None


def load_experiment(path: str | Path) -> Experiment:
    raw = read_toml(path)
    try:
        return Experiment(**raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {str(err).removeprefix('Experiment: ')}") from None


def _problems(where: str, err: ValidationError) -> str:
    problems = [_describe(e) for e in err.errors()]
    if len(problems) == 1:
        return f"{where}: {problems[0]}"
    return f"{where}: {len(problems)} problems:\n  " + "\n  ".join(problems)


def _describe(error: dict) -> str:
    """One pydantic error as `field 'x': what is wrong`."""
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        allowed = Experiment.model_fields if len(error["loc"]) == 1 else None
        message = f"unknown key; allowed keys: {', '.join(allowed)}" if allowed else "unknown key"
    elif error["type"] == "missing":
        message = "required"
    field = ".".join(str(p) for p in error["loc"])
    return f"field {field!r}: {message}" if field else message
