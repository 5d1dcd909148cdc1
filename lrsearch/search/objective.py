"""The objective every strategy sees: params -> Evaluation, by running one trial of a workload.

This is the one place where search meets training. Every trial of a (strategy, seed) run trains
with the run's seed, so trials differ only by their params. The Evaluation's value is what the
search maximises: the workload's metric, negated where it is minimised (`Workload.score`). A params
dict {"range_test": {...}} asks for an LR range test instead of a training run, on a workload that
gives a model, optimizer and loader.
"""

from __future__ import annotations

from dataclasses import dataclass

from lrsearch.search.lr_finder import model_range_test, task_range_test
from lrsearch.search.strategies.base import USABLE, Evaluation, ReportHook
from lrsearch.training.tasks import Task
from lrsearch.training.trainer import prepare_data, resolve_device, total_steps
from lrsearch.training.workloads import TaskWorkload, Workload


@dataclass
class WorkloadObjective:
    workload: Workload
    seed: int = 0
    device: str | None = None

    def __call__(self, params: dict, report: ReportHook | None = None) -> Evaluation:
        if "range_test" in params:
            return self._range_test(params)
        result = self.workload.trial(params, seed=self.seed, report=report, device=self.device)
        value = self.workload.score(result.final_val_acc if result.status in USABLE else None)
        return Evaluation(params, value, result.status, result.train_s, record=result, extra=dict(result.notes))

    def _range_test(self, params: dict) -> Evaluation:
        request = dict(params["range_test"])
        subject = self.workload.range_test_subject(self.seed, self.device)
        if isinstance(subject, Task):
            workload: TaskWorkload = self.workload
            data = prepare_data(subject, resolve_device(self.device), workload.source())
            per_epoch = len(data.train_y) // subject.batch_size
            n_total = total_steps(subject, per_epoch)
        else:
            per_epoch, n_total = subject.steps_per_epoch, subject.total_steps
        if "fraction" in request:
            request["steps"] = max(10, round(request.pop("fraction") * n_total))
        elif "epochs" in request and not isinstance(subject, Task):
            request["steps"] = max(2, round(request.pop("epochs") * per_epoch))
        if isinstance(subject, Task):
            test = task_range_test(subject, seed=self.seed, device=self.device, data_source=workload.source(), **request)
        else:
            request.pop("n_evals", None)
            test = model_range_test(subject.model, subject.optimizer, subject.train_loader, loss_fn=subject.loss_fn,
                                    val_loader=subject.val_loader, **request)
        ev = test.evaluations()
        extra = {"kind": "range_test", "lrs": test.table["lr"].tolist(), "losses": test.table["train_loss"].tolist(),
                 "eval_lrs": ev["lr"].tolist(), "eval_accs": ev["val_acc"].tolist(), "stop_reason": test.stop_reason,
                 "steps_per_epoch": per_epoch, "total_steps": n_total,
                 "lr_mults": list(test.lr_mults)}  # each parameter group's LR over `lrs` (finetune: backbone, head)
        status = "failed" if test.status == "failed" else "ok"  # a range test is meant to end in divergence
        # A range test is not a candidate configuration (its LR never settles): it scores 0 for the search.
        return Evaluation(params, 0.0, status, test.train_s, record=test, extra=extra)

    def steps_per_epoch(self) -> int:
        subject = self.workload.range_test_subject(self.seed, self.device)
        if isinstance(subject, Task):
            return len(prepare_data(subject, resolve_device(self.device), self.workload.source()).train_y) // subject.batch_size
        return subject.steps_per_epoch


def TrainingObjective(task: Task, seed: int = 0, device: str | None = None,  # noqa: N802  (the older name)
                      data_source: str | None = None) -> WorkloadObjective:
    """The objective of a built-in task (a WorkloadObjective over its TaskWorkload)."""
    return WorkloadObjective(TaskWorkload(task, data_source), seed, device)
