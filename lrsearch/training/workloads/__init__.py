"""Workloads: the problems a search tunes, behind one interface (`Workload`).

    TaskWorkload      a built-in CIFAR-10 task, trained by lrsearch's trainer
    ModelWorkload     your torch model, data and optimizer; lrsearch trains them
    FunctionWorkload  your own objective fn(params, report), which trains itself
    load_workload     any of them by name: "cpu", "package.module:function", "path/file.py:function"
"""

from lrsearch.training.workloads._base import RangeTestParts, Workload
from lrsearch.training.workloads._function import FunctionWorkload, TrialStopped
from lrsearch.training.workloads._load import WorkloadError, is_user_workload, load_workload
from lrsearch.training.workloads._model import ModelWorkload, TensorBatches, accuracy
from lrsearch.training.workloads._task import TaskWorkload

__all__ = ["FunctionWorkload", "ModelWorkload", "RangeTestParts", "TaskWorkload", "TensorBatches", "TrialStopped",
           "Workload", "WorkloadError", "accuracy", "is_user_workload", "load_workload"]
