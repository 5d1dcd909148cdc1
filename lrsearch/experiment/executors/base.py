"""Executors: where and how many trials run at once.

The runner hands every trial to an executor. `LocalExecutor` trains it in this process, one
at a time. A parallel executor (`RayExecutor`) has `slots` > 1: that
many trials run at once, and the runner keeps them busy (see `lrsearch.experiment.runner`). Slots are
claimed with `reserve` and freed when a trial ends, so that runs side by side and runs with
several trials in flight share one limit.

Only the runner's thread(s) in this process write the store: an executor returns
Evaluations, it never records them.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

from lrsearch.search.strategies import Evaluation, ReportHook


class Cancelled(BaseException):
    """Raised in the runner's threads once the executor is stopping (Ctrl-C, or another run's
    error). A BaseException, like KeyboardInterrupt, so that no library's `except Exception`
    records it as a failed trial: an interrupted trial is not recorded, the next run retrains it."""


class Executor:
    """One trial at a time, in the calling thread (subclasses: more). `evaluate` blocks and may
    call `report`, the pruning hook; `submit` (executors with `slots` > 1) returns a Future of
    the Evaluation."""

    slots = 1
    remote = False  # whether trials run in other processes (the data then need not be on this one's device)
    simulated = False  # whether trials are placed on a simulated clock (SimulatedExecutor)

    def describe(self) -> str:
        return "local: one trial at a time, in this process"

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def cancel(self) -> None:
        """Stop: trials in flight end without being recorded, and waiting threads get Cancelled."""

    def reserve(self, block: bool = True) -> bool:
        return True

    def release(self) -> None:
        pass

    def evaluate(self, objective, params: dict, report: ReportHook | None) -> Evaluation:
        return objective(params, report)

    def submit(self, objective, params: dict) -> Future:
        raise NotImplementedError  # only executors with several slots run trials side by side


class LocalExecutor(Executor):
    pass


class SimulatedExecutor(Executor):
    """A table's trials (experiment/table.py) on a simulated clock, as Syne Tune's simulator backend runs them:
    each answered at once, each run's trials placed on that run's own clock with `workers` of them in flight
    (runner.py's `_SimulatedRecording`). Runs go one after another; the clock, not the machine, is parallel."""

    simulated = True

    def __init__(self, workers: int | None = None):
        self.workers = workers or 1

    def describe(self) -> str:
        return f"simulated: {self.workers} worker{'s' if self.workers > 1 else ''} on a simulated clock, trials read from a table"


class SlotExecutor(Executor):
    """Base for parallel executors: `slots` trials at once, counted here. `reserve` claims a slot
    (blocking, or False when none is free), a trial's end frees it, `cancel` wakes every waiter."""

    def __init__(self, slots: int):
        self.slots = slots
        self._free = slots
        self._changed = threading.Condition()
        self.stopping = False

    def reserve(self, block: bool = True) -> bool:
        with self._changed:
            while not self._free:
                if self.stopping:
                    raise Cancelled
                if not block:
                    return False
                self._changed.wait(timeout=1.0)
            if self.stopping:
                raise Cancelled
            self._free -= 1
            return True

    def release(self) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify_all()

    def cancel(self) -> None:
        with self._changed:
            self.stopping = True
            self._changed.notify_all()
