"""The Workload interface: one problem a search tunes, whatever trains it.

AlgoPerf's `Workload` (algoperf/spec.py) and HPOBench's benchmark (`objective_function(configuration,
fidelity, rng)`) are the anchors: the problem owns its model, data, evaluation, metric and target; the
runner only plans, claims and records. Built-in CIFAR tasks and a user's own code are workloads of the
same kind, so every runner feature (store, claims, resume, report, replay) works on both.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal

from lrsearch.training.trainer import ReportHook, TrialResult

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class RangeTestParts:
    """What an LR range test needs from a workload that is not a built-in task: its model, optimizer and
    training loader (as `lrsearch.range_test(model, optimizer, loader)` takes them), and how long a trial is."""
    model: Any
    optimizer: Any
    train_loader: Any
    val_loader: Any = None
    loss_fn: Any = None
    steps_per_epoch: int = 0
    total_steps: int = 0


class Workload(abc.ABC):
    """A problem to tune: what one trial is, what must be ready before trials, its metric and target.

    Call order (the runner's):
      1. `definition()` when a run is claimed: stored with the run; a later change stops the experiment
         (the store's change check), so it holds everything that changes what a trial trains.
      2. `prepare(device)` once per process before its first trial (data downloaded and decoded, a
         pretrained backbone made and cached). Idempotent and cheap the second time.
      3. `trial(params, seed, report, device)` for each trial, possibly in other processes (a workload
         pickles). It never raises for a bad configuration: a diverged or failed trial comes back with that
         status and its partial curve.

    `report(step, value) -> stop?` is the pruning hook: called at each evaluation with the metric as the
    search sees it (see `score`), True asks the trial to stop (status "pruned").
    """

    name: str = ""
    metric: str = "val_acc"  # what a trial reports and a search optimises
    direction: Direction = "maximize"
    target: float | None = None  # the metric's target: time-to-target counts until a trial gets there

    @property
    @abc.abstractmethod
    def parameters(self) -> dict[str, str] | None:
        """The trial params it understands, name -> meaning; None: any name (a plain function's)."""

    @abc.abstractmethod
    def definition(self) -> dict:
        """What a trial trains, as JSON-able data (its target aside: a new target is re-read off the curves)."""

    def definition_defaults(self) -> dict:
        """Default values of definition leaves (flattened, dotted keys): a leaf missing from a stored
        definition counts as unchanged when its new value is this default (a field added later)."""
        return {}

    def definition_ignored(self) -> set[str]:
        """Definition leaves (flattened, dotted keys) that do not change what a trial trains (a description):
        never a reason to stop a run."""
        return set()

    def prepare(self, device) -> None:  # noqa: B027  (optional: most workloads need nothing prepared)
        """Make everything trials need, once per process."""

    @abc.abstractmethod
    def trial(self, params: dict, seed: int = 0, report: ReportHook | None = None, device=None) -> TrialResult:
        """Train once under `params` with `seed`; the curve, status and clocks in a TrialResult."""

    def defaults(self) -> dict:
        """The params a trial gets for dimensions a strategy does not search (stated in the report)."""
        return {}

    def describe(self) -> dict:
        """The workload as the report shows it: its definition, metric, direction and target."""
        return {"name": self.name, "metric": self.metric, "direction": self.direction, "target": self.target,
                "target_acc": self.target, **self.definition()}

    def score(self, value: float | None) -> float:
        """The metric as a search maximises it: itself, or its negative for a minimised metric."""
        if value is None:
            return 0.0 if self.direction == "maximize" else -1e300
        return value if self.direction == "maximize" else -value

    def reached(self, value: float | None) -> bool:
        return value is not None and self.target is not None and (
            value >= self.target if self.direction == "maximize" else value <= self.target)

    def with_target(self, target: float | None) -> Workload:
        """This workload with another target (the experiment's `target_acc` / `target`)."""
        import copy
        other = copy.copy(self)
        other.target = target
        return other

    @property
    def supports_self_tuning(self) -> bool:
        """Whether a trial may name the optimizer it trains with (the `optimizer` param the self-tuning strategies
        pass): only where lrsearch's trainer builds the optimizer."""
        return False

    # ---------------------------------------------------------------- range tests (optional)

    @property
    def supports_range_test(self) -> bool:
        return False

    def range_test_subject(self, seed: int, device=None):
        """What `lrsearch.range_test` runs on: a built-in Task, or RangeTestParts of the workload's own model."""
        raise ValueError(f"workload {self.name!r} gives no model, optimizer and loader: the LR range test "
                         "strategies cannot run on it (a plain objective function); use a search strategy")
