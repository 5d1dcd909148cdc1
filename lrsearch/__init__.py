"""lrsearch: what is the cheapest way to find a good learning rate?

The package is layered, each layer importing only those below it (`tests/test_layout.py` keeps it so):

    cli/        the `lrsearch` command
    paper/      the CLR paper reproduction
    reporting/  tables -> figures -> REPORT.md, from the store
    experiment/ config -> runner -> store; executors, replay, provenance, the NNI experiment
    search/     strategies, the objective they see, the LR range test
    training/   data, models, schedules, tasks, the one-trial trainer

The names a notebook needs are importable from here (`from lrsearch import train, get_task`);
each is loaded on first use, so `import lrsearch` stays light (torch and the search libraries
load only when a name that needs them is touched).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "load_cifar10": "lrsearch.training.data",
    "build_model": "lrsearch.training.models",
    "make_schedule": "lrsearch.training.schedules",
    "Task": "lrsearch.training.tasks",
    "TASKS": "lrsearch.training.tasks",
    "get_task": "lrsearch.training.tasks",
    "train": "lrsearch.training.trainer",
    "Workload": "lrsearch.training.workloads",
    "ModelWorkload": "lrsearch.training.workloads",
    "FunctionWorkload": "lrsearch.training.workloads",
    "TaskWorkload": "lrsearch.training.workloads",
    "load_workload": "lrsearch.training.workloads",
    "TrialResult": "lrsearch.training.trainer",
    "range_test": "lrsearch.search.lr_finder",
    "suggest_range": "lrsearch.search.lr_finder",
    "suggest_lr": "lrsearch.search.lr_finder",
    "get_strategy": "lrsearch.search.strategies",
    "strategy_names": "lrsearch.search.strategies",
    "Experiment": "lrsearch.experiment.config",
    "load_experiment": "lrsearch.experiment.config",
    "run_experiment": "lrsearch.experiment.runner",
    "Store": "lrsearch.experiment.store",
    "build_tables": "lrsearch.reporting.tables",
    "load_results": "lrsearch.reporting.tables",
    "Results": "lrsearch.reporting.tables",
    "build_report": "lrsearch.reporting.report",
    "bench": "lrsearch.experiment.bench",
}

__all__ = [
    "__version__",
    "load_cifar10", "build_model", "make_schedule", "Task", "TASKS", "get_task", "train",
    "TrialResult", "Workload", "ModelWorkload", "FunctionWorkload", "TaskWorkload", "load_workload", "range_test", "suggest_range", "suggest_lr", "get_strategy", "search",
    "strategy_names", "Experiment", "load_experiment", "run_experiment", "Store", "build_tables",
    "build_report", "load_results", "Results", "bench",
]

if TYPE_CHECKING:
    from lrsearch.experiment.bench import bench
    from lrsearch.experiment.config import Experiment, load_experiment
    from lrsearch.experiment.runner import run_experiment
    from lrsearch.experiment.store import Store
    from lrsearch.reporting.report import build_report
    from lrsearch.reporting.tables import Results, build_tables, load_results
    from lrsearch.search.lr_finder import range_test, suggest_lr, suggest_range
    from lrsearch.search.strategies import get_strategy, strategy_names
    from lrsearch.training.data import load_cifar10
    from lrsearch.training.models import build_model
    from lrsearch.training.schedules import make_schedule
    from lrsearch.training.tasks import TASKS, Task, get_task
    from lrsearch.training.trainer import TrialResult, train
    from lrsearch.training.workloads import (
        FunctionWorkload,
        ModelWorkload,
        TaskWorkload,
        Workload,
        load_workload,
    )


def __getattr__(name: str) -> Any:
    if name == "search":  # the subpackage, which is callable: lrsearch.search(strategy, objective, space, ...)
        return importlib.import_module("lrsearch.search")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lrsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
