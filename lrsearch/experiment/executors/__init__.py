"""Executors: where and how many trials run at once (here one at a time, or as Ray tasks).

`base` holds the contract the runner uses and the local executor; `ray_executor` the Ray one
(an optional extra, imported only when asked for). May import `lrsearch.search` (Evaluation)
and nothing above the experiment layer.
"""

from __future__ import annotations

from lrsearch.experiment.executors.base import (
    Cancelled,
    Executor,
    LocalExecutor,
    SimulatedExecutor,
    SlotExecutor,
)
from lrsearch.training.errors import InputError

__all__ = ["Cancelled", "Executor", "LocalExecutor", "SimulatedExecutor", "SlotExecutor", "make_executor"]


def make_executor(kind: str = "local", address: str | None = None, workers: int | None = None,
                  num_gpus: float | None = None, num_cpus: float | None = None) -> Executor:
    """The executor a config's [executor] (or `lrsearch run --executor ...`) asks for."""
    if kind == "local":
        return LocalExecutor()
    if kind == "simulated":
        return SimulatedExecutor(workers)
    if kind == "ray":
        from lrsearch.experiment.executors.ray_executor import RayExecutor  # Ray is an optional extra
        return RayExecutor(address, workers, num_gpus, num_cpus)
    raise InputError(f"executor {kind!r}: allowed: local, ray, simulated")
