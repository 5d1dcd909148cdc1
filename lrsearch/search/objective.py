"""The objective every strategy sees: params -> Evaluation, by training a task.

This is the one place where search meets training. Every trial of a (strategy, seed)
run trains with the run's seed, so trials differ only by their params. A params dict
{"range_test": {...}} asks for an LR range test instead of a training run.
"""

from __future__ import annotations

from dataclasses import dataclass

from lrsearch.search.lr_finder import range_test
from lrsearch.search.strategies.base import Evaluation, ReportHook
from lrsearch.training.tasks import Task
from lrsearch.training.trainer import prepare_data, resolve_device, total_steps, train


@dataclass
class TrainingObjective:
    task: Task
    seed: int = 0
    device: str | None = None
    data_source: str | None = None

    def __call__(self, params: dict, report: ReportHook | None = None) -> Evaluation:
        if "range_test" in params:
            return self._range_test(params)
        result = train(self.task, params, seed=self.seed, device=self.device, report=report,
                       data_source=self.data_source)
        return Evaluation(params, result.value, result.status, result.train_s, record=result)

    def steps_per_epoch(self) -> int:
        data = prepare_data(self.task, resolve_device(self.device), self.data_source)
        return len(data.train_y) // self.task.batch_size

    def _range_test(self, params: dict) -> Evaluation:
        request = dict(params["range_test"])
        per_epoch = self.steps_per_epoch()
        n_total = total_steps(self.task, per_epoch)
        if "fraction" in request:
            request["steps"] = max(10, round(request.pop("fraction") * n_total))
        test = range_test(self.task, seed=self.seed, device=self.device, data_source=self.data_source, **request)
        ev = test.evaluations()
        extra = {"kind": "range_test", "lrs": test.table["lr"].tolist(), "losses": test.table["train_loss"].tolist(),
                 "eval_lrs": ev["lr"].tolist(), "eval_accs": ev["val_acc"].tolist(), "stop_reason": test.stop_reason,
                 "steps_per_epoch": per_epoch, "total_steps": n_total}
        status = "failed" if test.status == "failed" else "ok"  # a range test is meant to end in divergence
        # A range test is not a candidate configuration (its LR never settles): it scores 0 for the search.
        return Evaluation(params, 0.0, status, test.train_s, record=test, extra=extra)
