"""A user's plain objective as a workload: `fn(params, report)` that trains however it likes and reports.

    def objective(params, report, seed):              # `seed` is optional: given when the function names it
        model = ...
        for epoch in range(10):
            loss = train_one_epoch(model, params["lr"])
            if report(epoch, accuracy(model), loss=loss):   # True: the search prunes this trial; return
                return

The runner times it: training seconds are the time between reports, less any `eval_s=` a report passes
(the seconds the function spent evaluating since its last report); the time inside `report` is the
runner's. The metric is maximised unless the experiment says `direction = "minimize"`. A function that
never reports and returns a number is one evaluation at step 0.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lrsearch.training.trainer import ReportHook, TrialResult
from lrsearch.training.workloads._base import Direction, Workload


class TrialStopped(Exception):
    """Raised by `report` when a function keeps training after the search asked it to stop."""


def source_digest(fn: Callable) -> str | None:
    """sha256 of the file that defines `fn` (its code is part of what a trial trains)."""
    try:
        path = inspect.getsourcefile(fn)
    except TypeError:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path and Path(path).is_file() else None


@dataclass
class FunctionWorkload(Workload):
    fn: Callable
    name: str = "objective"
    metric: str = "value"
    direction: Direction = "maximize"
    target: float | None = None
    spec: str = ""  # where it was loaded from ("pkg.module:function" or "path/file.py:function")
    default_params: dict = field(default_factory=dict)

    def __post_init__(self):
        signature = inspect.signature(self.fn)
        self._takes_seed = "seed" in signature.parameters

    @property
    def parameters(self) -> None:
        return None

    def definition(self) -> dict:
        return {"function": self.spec or getattr(self.fn, "__qualname__", repr(self.fn)),
                "source_sha256": source_digest(self.fn), "metric": self.metric, "direction": self.direction}

    def defaults(self) -> dict:
        return dict(self.default_params)

    def trial(self, params: dict, seed: int = 0, report: ReportHook | None = None, device=None) -> TrialResult:
        result = TrialResult(params=dict(params), seed=seed, status="ok", target_acc=self.target, device="user code")
        started = time.perf_counter()
        clock = {"last": started, "stopped": False}

        def record(step, value, loss=None, eval_s: float = 0.0) -> bool:
            now = time.perf_counter()
            if clock["stopped"]:
                raise TrialStopped(f"report() called again after it returned True at step {result.steps}")
            result.train_s += max(0.0, now - clock["last"] - float(eval_s))
            result.eval_s += float(eval_s)
            value = None if value is None else float(value)
            row = {"step": int(step), "epoch": None, "samples": None, "lr": params.get("lr"),
                   "train_loss": None if loss is None else float(loss), "val_acc": value, "test_acc": None,
                   "train_s": result.train_s, "wall_s": now - started}
            result.curve.append(row)
            result.steps = int(step)
            stop = False
            if value is None or not math.isfinite(value):
                result.status, result.error = "diverged", f"metric {value} at step {step}"
                stop = True
            else:
                self._fold(result, value, step)
                stop = bool(report(int(step), self.score(value))) if report is not None else False
                if stop:
                    result.status = "pruned"
            clock["stopped"] = stop
            clock["last"] = time.perf_counter()  # the hook's time is not the function's
            return stop

        try:
            returned = self.fn(params, record, seed=seed) if self._takes_seed else self.fn(params, record)
            if not clock["stopped"]:
                result.train_s += time.perf_counter() - clock["last"]
            if returned is not None and not result.curve:
                record(0, returned)
            elif returned is not None and result.status == "ok":
                self._fold(result, float(returned), result.steps)
            if not result.curve:
                raise ValueError("the objective neither reported a metric nor returned one")
        except TrialStopped:
            pass
        except Exception as err:  # a trial's failure is recorded, and the search goes on
            result.status = "failed"
            result.error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
        result.wall_s = time.perf_counter() - started
        return result

    def _fold(self, result: TrialResult, value: float, step: int) -> None:
        result.final_val_acc = value
        better = min if self.direction == "minimize" else max
        result.best_val_acc = value if result.best_val_acc is None else better(result.best_val_acc, value)
        if result.time_to_target_s is None and self.reached(value):
            result.time_to_target_s, result.steps_to_target = result.train_s, int(step)
