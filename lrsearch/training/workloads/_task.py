"""The built-in CIFAR-10 tasks as workloads: a `Task` trained by lrsearch's own trainer."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from lrsearch.training import tasks as _tasks
from lrsearch.training.tasks import Task, get_task
from lrsearch.training.trainer import ReportHook, TrialResult, train
from lrsearch.training.workloads._base import Workload


@dataclass
class TaskWorkload(Workload):
    """A CIFAR-10 `Task` (see `lrsearch tasks`): validation accuracy, maximised, the task's target.

    `data_source` names the CIFAR-10 copy (None: $LRSEARCH_DATA, else ./data/, downloaded there on a fresh
    machine, see training/data.py); it is resolved once, so that every trial reads the same source."""

    task: Task
    data_source: str | None = None

    def __post_init__(self):
        self.name, self.metric, self.direction, self.target = self.task.name, "val_acc", "maximize", self.task.target_acc
        self._resolved: str | None = None

    @classmethod
    def named(cls, name: str, overrides: dict | None = None, data_source: str | None = None) -> TaskWorkload:
        return cls(get_task(name, **(overrides or {})), data_source)

    @property
    def parameters(self) -> dict[str, str]:
        return dict(getattr(_tasks, "TRIAL_PARAMETERS", None) or dict.fromkeys(("lr", "momentum", "weight_decay",
                                                                                 "schedule"), ""))

    def source(self) -> str:
        """The data source, resolved (downloaded first where nothing names one and ./data/ is empty)."""
        if self._resolved is None:
            from lrsearch.training.data import ensure_source
            self._resolved = str(ensure_source(self.data_source))
        return self._resolved

    def definition(self) -> dict:
        task = asdict(self.task)
        task.pop("target_acc")
        source = Path(self.source())
        return {"task": task, "data": {"name": source.name, "size": source.stat().st_size if source.is_file() else None}}

    def definition_defaults(self) -> dict:
        import json
        return {f"task.{f.name}": json.loads(json.dumps(f.default)) for f in fields(Task)
                if f.name != "target_acc" and f.default is not MISSING and not isinstance(f.default, dict)}

    def definition_ignored(self) -> set[str]:
        return {"task.description"}

    def prepare(self, device) -> None:
        from lrsearch.training import trainer
        prepare = getattr(trainer, "prepare_task", None)
        if prepare is not None:
            prepare(self.task, device, self.source())
        else:
            trainer.prepare_data(self.task, device, self.source())

    def trial(self, params: dict, seed: int = 0, report: ReportHook | None = None, device=None) -> TrialResult:
        task = self.task if self.target == self.task.target_acc else self.task.with_overrides(target_acc=self.target)
        return train(task, params, seed=seed, device=device, report=report, data_source=self.source())

    def defaults(self) -> dict:
        return {"lr": self.task.lr, "momentum": self.task.momentum, "weight_decay": self.task.weight_decay,
                "schedule": self.task.schedule}

    def describe(self) -> dict:
        return asdict(self.task) | {"target_acc": self.target, "metric": self.metric, "direction": self.direction}

    def with_target(self, target: float | None) -> TaskWorkload:
        return TaskWorkload(self.task.with_overrides(target_acc=target) if target is not None else self.task,
                            self.data_source)

    @property
    def supports_self_tuning(self) -> bool:
        return True

    @property
    def supports_range_test(self) -> bool:
        return True

    def range_test_subject(self, seed: int, device=None) -> Task:
        return self.task
