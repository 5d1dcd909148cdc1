"""Learning-rate-free optimizers as strategies, on the same clock as LR search: one trial per seed.

A self-tuning method needs no search: AlgoPerf's self-tuning rule gives it one training run, no tuning trials.
So each strategy here asks the objective once, with params {"optimizer": <its name>, plus the lr, schedule and
momentum its authors recommend} (tasks.SELF_TUNING_OPTIMIZERS; the trainer builds the optimizer, see
training/self_tuning.py), and spends one trial of its budget: the other `n_trials - 1` stay unused, and the
report says so (`self_tuning` and `trials_per_run` below, and a line of `space_notes()` stored with each trial).
Its seed is the run's: the trial trains with it, so a run is as repeatable as any trial.

Dimensions of the search space are not searched: the method's recommended params fix lr (a scale of its own
step size, often outside the space's bounds), the schedule and momentum; every other dimension stays at the
workload's default. Only a workload whose trainer can swap the optimizer runs them (the built-in tasks);
experiment/config.py refuses them for a plain objective or a user's model.
"""

from __future__ import annotations

from lrsearch.search.strategies.base import Strategy, register
from lrsearch.training.tasks import SELF_TUNING_OPTIMIZERS

INSTALL = "pip install -e '.[selftuning]'"


class SelfTuningStrategy(Strategy):
    """One trial with a learning-rate-free optimizer; the rest of the budget unused (see the module)."""

    self_tuning = True  # read by the config (which workloads can run it) and the report (budget unused)
    trials_per_run = 1  # of any budget

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.budget: int | None = None  # the run's n_trials, once run

    def params(self) -> dict:
        """What the one trial trains with: the optimizer's name and its authors' recommended params."""
        return {"optimizer": self.name} | SELF_TUNING_OPTIMIZERS[self.name]

    def _search(self, objective, n_trials):
        self.budget = n_trials
        objective(self.params(), None)

    def budget_unused(self) -> int | None:
        """Trials of the run's budget left unspent (None before the run)."""
        return None if self.budget is None else max(self.budget - self.trials_per_run, 0)

    def space_notes(self) -> list[str]:
        notes = []
        recommended = SELF_TUNING_OPTIMIZERS[self.name]
        fixed = [f"{d.name} = {recommended[d.name]!r} (the method's)" for d in self.space if d.name in recommended]
        defaults = [d.name for d in self.space if d.name not in recommended]
        if fixed or defaults:
            notes.append(f"{self.name}: searches nothing (a self-tuning optimizer, one trial)"
                         + (f"; {', '.join(fixed)}" if fixed else "")
                         + (f"; {', '.join(defaults)} at the workload's defaults" if defaults else ""))
        if self.budget is not None:
            notes.append(f"{self.name}: budget unused: {self.budget_unused()} of {self.budget} trials "
                         "(AlgoPerf's self-tuning rule: one run per seed)")
        return notes

    @property
    def flattens_space(self) -> bool:
        return bool(self.space.names)  # every dimension is fixed or left at its default


@register
class ScheduleFreeSGD(SelfTuningStrategy):
    name = "schedulefree-sgd"
    summary = ("Schedule-Free SGD (Defazio et al. 2024), one run: lr 1.0 and momentum 0.9 (its defaults), 2% warm-up, "
               "no schedule, the averaged weights evaluated (BatchNorm recalibrated)")
    requires = (("schedulefree", INSTALL),)


@register
class ScheduleFreeAdamW(SelfTuningStrategy):
    name = "schedulefree-adamw"
    summary = ("Schedule-Free AdamW (Defazio et al. 2024), one run: lr 0.0025 and betas (0.9, 0.999) (its defaults), "
               "2% warm-up, no schedule, the averaged weights evaluated (BatchNorm recalibrated)")
    requires = (("schedulefree", INSTALL),)


@register
class Prodigy(SelfTuningStrategy):
    name = "prodigy"
    summary = ("Prodigy (Mishchenko & Defazio 2024), one run: lr 1 with cosine annealing over the trial (its README), "
               "decoupled weight decay, safeguard_warmup where the schedule warms up")
    requires = (("prodigyopt", INSTALL),)


@register
class DAdaptSGD(SelfTuningStrategy):
    name = "dadapt-sgd"
    summary = "D-Adaptation SGD (Defazio & Mishchenko 2023), one run: lr 1 times the task's own schedule"
    requires = (("dadaptation", INSTALL),)


@register
class DAdaptAdam(SelfTuningStrategy):
    name = "dadapt-adam"
    summary = ("D-Adaptation Adam (Defazio & Mishchenko 2023), one run: lr 1 times the task's own schedule, "
               "decoupled weight decay")
    requires = (("dadaptation", INSTALL),)


@register
class DoG(SelfTuningStrategy):
    name = "dog"
    summary = ("DoG (Ivgi et al. 2023), one run: lr 1, reps_rel 1e-4 with BatchNorm (else 1e-6), the polynomial-decay "
               "averaged weights evaluated")
    requires = (("dog", INSTALL),)


@register
class Mechanic(SelfTuningStrategy):
    name = "mechanic"
    summary = ("Mechanic (Cutkosky et al. 2023) around the task's SGD (AdamW for an Adam task), one run: lr 1 times "
               "the task's own schedule, its defaults")
    requires = (("mechanic_pytorch", INSTALL),)
