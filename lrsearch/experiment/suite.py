"""Suites: several problems (workload x search space) under one set of strategies, budgets and seeds.

    name = "suite-cpu"
    strategies = ["random", "optuna-tpe", "lr-range-clr"]
    budgets = [8]
    seeds = [0, 1, 2]
    results = "results/suite-cpu"       # optional (default runs/<name>); each problem writes <results>/<problem>/

    [options.optuna-tpe]                # optional: per-strategy options, as in an experiment
    n_startup_trials = 4

    [[problems]]                        # one per workload
    task = "cpu"                        # a built-in task or your own ("path/to/file.py:function")
    tables = { lr = "results/tables/cpu" }  # optional: each space's table; with [executor] kind = "simulated" the
                                        # suite reads its trials from them (experiment/table.py) instead of training
    target_acc = 0.46                   # optional, as in an experiment (or target, direction)
    task_overrides = {}                 # optional
    [problems.spaces.lr]                # one problem per space: <task>-<space>
    lr = { low = 1e-3, high = 3.0, log = true }
    [problems.spaces.lr-wd-mom]
    lr = { low = 1e-3, high = 3.0, log = true }
    weight_decay = { low = 1e-5, high = 1e-2, log = true }
    one_minus_momentum = { low = 0.01, high = 0.5, log = true }

Each problem is an ordinary experiment (`Suite.experiments()`), named `<suite>.<problem>`, with its own store,
tables, figures and REPORT.md in its own folder; the runner resumes and shares each one between workers
exactly as for a single experiment. The suite's REPORT.md lists every problem's summary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lrsearch.experiment.config import ConfigError, ExecutorSettings, Experiment, _problems
from lrsearch.search.strategies import is_self_tuning
from lrsearch.training.errors import InputError


class Problem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    task: str
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")  # default: the task's (a function's) name
    target_acc: float | None = Field(default=None, gt=0, le=1)
    target: float | None = None
    direction: Literal["maximize", "minimize"] | None = None
    task_overrides: dict[str, Any] = Field(default_factory=dict)
    spaces: dict[str, dict[str, Any]] = Field(min_length=1)
    strategies: list[str] | None = None  # optional: a subset of the suite's for this workload
    description: str = ""
    # optional: space name -> its table (`lrsearch tabulate`); a suite whose [executor] is "simulated" reads every
    # problem's trials from these instead of training
    tables: dict[str, str] | None = None

    @field_validator("spaces")
    @classmethod
    def _space_names(cls, v: dict) -> dict:
        bad = [k for k in v if not re.fullmatch(r"[A-Za-z0-9_-]+", k)]
        if bad:
            raise InputError(f"space name(s) {', '.join(map(repr, bad))}: letters, digits, - and _ only")
        return v

    @property
    def label(self) -> str:
        return self.name or re.sub(r"[^A-Za-z0-9_.-]+", "-", self.task.rpartition(":")[2] or self.task)


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    strategies: list[str] = Field(min_length=1)
    budgets: list[int] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    time_budget_s: float | None = Field(default=None, gt=0)
    results: str | None = None
    calibration: str | None = None  # a folder `lrsearch calibrate` wrote: every report's seconds on the cost clock
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    problems: list[Problem] = Field(min_length=1)

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(_problems("Suite", err)) from None
        self.experiments()  # every problem validated as the experiment it is, all problems at once

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, v: Any) -> Any:
        return list(range(v)) if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else v

    def results_dir(self, override: str | Path | None = None) -> Path:
        return Path(override or self.results or Path("runs") / self.name)

    def experiments(self, results_dir: str | Path | None = None) -> list[Experiment]:
        """One experiment per (problem, space), in the suite's order; a bad one raises ConfigError naming
        `problems[i].spaces.<name>` and every problem at once."""
        root = self.results_dir(results_dir)
        out, problems, seen = [], [], set()
        for i, problem in enumerate(self.problems):
            strategies = problem.strategies or self.strategies
            outside = [s for s in strategies if s not in self.strategies]
            if outside:
                problems.append(f"problems[{i}].strategies: {', '.join(outside)} not in the suite's strategies")
                continue
            searching = [s for s in strategies if not is_self_tuning(s)]
            for n_space, (space_name, space) in enumerate(problem.spaces.items()):
                label = f"{problem.label}-{space_name}"
                # A strategy that searches nothing (a self-tuning optimizer: one run at its authors' settings)
                # would train the same trials in every space: it runs in the workload's first space only.
                in_space = strategies if n_space == 0 else searching
                if label in seen:
                    problems.append(f"problems[{i}]: problem {label!r} twice; give the problem a `name`")
                    continue
                seen.add(label)
                table = None
                if self.executor.kind == "simulated":
                    table = (problem.tables or {}).get(space_name)
                    if table is None:
                        problems.append(f"problems[{i}].tables.{space_name}: a simulated suite reads every problem "
                                        "from its table; give the folder `lrsearch tabulate` wrote")
                        continue
                try:
                    out.append(Experiment(
                        name=f"{self.name}.{label}", task=problem.task, strategies=in_space, budgets=self.budgets,
                        seeds=self.seeds, target_acc=problem.target_acc, target=problem.target,
                        direction=problem.direction, time_budget_s=self.time_budget_s, results=str(root / label),
                        calibration=self.calibration,
                        description=problem.description or self.description, space=space,
                        task_overrides=problem.task_overrides, table=table,
                        options={k: v for k, v in self.options.items() if k in in_space},
                        executor=self.executor))
                except ConfigError as err:
                    problems.append(f"problems[{i}].spaces.{space_name}: {str(err).removeprefix('Experiment: ')}")
        if problems:
            raise ConfigError("Suite: " + ("\n  ".join([f"{len(problems)} problems:", *problems])
                                           if len(problems) > 1 else problems[0]))
        return out


def is_suite(raw: dict) -> bool:
    return "problems" in raw


def load_config(path: str | Path) -> Experiment | Suite:
    """An experiment file, or a suite file (one with [[problems]]); a bad one raises ConfigError naming it."""
    from lrsearch.experiment.config import load_experiment, read_toml

    raw = read_toml(path)
    if not is_suite(raw):
        return load_experiment(path)
    try:
        return Suite(**raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {str(err).removeprefix('Suite: ')}") from None


def stored_suite(folder: str | Path) -> Suite:
    """The suite a results folder's suite.json records (`run_suite` writes it). A folder written before the
    replay was retired (2026-12-03) also records its `replay` section and problems' `replay_table`, which no
    Suite has now: left out here, so that the folder still reports."""
    raw = json.loads((Path(folder) / "suite.json").read_text())
    raw.pop("replay", None)
    for problem in raw.get("problems", []):
        problem.pop("replay_table", None)
    return Suite(**raw)


def run_suite(suite: Suite, results_dir: str | Path | None = None, only: list[str] | None = None,
              make_executor=None, **run_options) -> list[tuple[Path, Experiment]]:
    """Every problem's runs, problem after problem (each resumable and shared between workers as any
    experiment); returns each problem's (results folder, experiment). `only` keeps those strategies (a problem
    without any of them is left out); `make_executor(experiment)` gives each problem its executor (default: the
    one the suite's [executor] names); `run_options` go to `run_experiment`."""
    from lrsearch.experiment.runner import run_experiment

    root = suite.results_dir(results_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "suite.json").write_text(suite.model_dump_json(indent=2))  # `lrsearch report <folder>` reads it
    done = []
    for experiment in suite.experiments(results_dir):
        subset = [s for s in only if s in experiment.strategies] if only else None
        if only and not subset:
            continue
        executor = make_executor(experiment) if make_executor is not None else None
        out = run_experiment(experiment, experiment.results, only=subset, executor=executor, **run_options)
        done.append((out, experiment))
    return done
