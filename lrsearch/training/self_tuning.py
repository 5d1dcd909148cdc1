"""Optimizers that set their own step size, built for one trial as their authors recommend.

The trainer builds one of these when a trial's params name it (`"optimizer": "prodigy"`; the names, and the lr
and schedule each one takes, are tasks.SELF_TUNING_OPTIMIZERS). Each builder gets the task's parameter groups
(their weight decay is each group's own) and returns a `SelfTuned`: the torch optimizer, which the trial's
schedule drives through FunctionLR like any other (for these, `lr` is a scale of the method's own step size),
and what the trainer must do around it:

- `after_step`, after every optimizer step (DoG's iterate averager), inside `train_s`;
- `swap_in` / `swap_out` around every evaluation, inside `train_s` (AlgoPerf times its `prepare_for_eval`):
  the weights the method evaluates (DoG's averaged model) put in the model and taken out again. Schedule-Free's
  own `optimizer.eval()` / `.train()` need no swap: the trainer's evaluation hooks call them on any optimizer
  that has them;
- `recalibrate_bn`: BatchNorm statistics recomputed for the evaluated weights before each evaluation
  (`recalibrate_batchnorm`), counted in `eval_s`;
- `averages`: the method averages the weights itself, so the task's own lookahead (airbench's) is left out.

Their libraries (the `selftuning` extra: schedulefree, prodigyopt, dadaptation, dog-optimizer,
mechanic-pytorch) are imported when a trial uses one, so the trainer works without them.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from lrsearch.training.tasks import Task

INSTALL = "pip install -e '.[selftuning]'"
RECALIBRATION_BATCHES = 50  # schedulefree's README: "itertools.islice(train_loader, 50)"


@dataclass
class SelfTuned:
    """A self-tuning optimizer for one trial and what the trainer does around it (see the module's docstring)."""
    optimizer: torch.optim.Optimizer
    after_step: Callable[[], None] | None = None
    swap_in: Callable[[], None] | None = None
    swap_out: Callable[[], None] | None = None
    recalibrate_bn: bool = False
    averages: bool = False


@dataclass(frozen=True)
class BuildContext:
    """What a builder needs beyond the parameter groups."""
    task: Task
    model: nn.Module
    lr: float  # the schedule's first value (FunctionLR sets every step's)
    momentum: float  # the trial's momentum: SGD's, or Adam's beta1
    n_steps: int
    warms_up: bool  # whether the trial's schedule rises from a lower start to its peak
    base: tuple[type[torch.optim.Optimizer], dict]  # the task's own torch optimizer and its options (Mechanic's)


def _library(module: str, name: str):
    """Import a method's library on first use, or say what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"optimizer {name!r} needs the {module} package: {INSTALL}") from err


@contextlib.contextmanager
def _quiet():
    """prodigyopt and dadaptation print "Using decoupled weight decay" on construction; keep stdout clean."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _one_lr(groups: list[dict], scale_key: str | None = None) -> list[dict]:
    """Prodigy and D-Adaptation refuse groups at different LRs (other than 0): every group's lr_mult becomes 1,
    except a frozen group's 0; with `scale_key` (DAdaptAdam's `layer_scale`), the multiplier moves there."""
    for group in groups:
        if group.get("lr_mult", 1.0):
            if scale_key is not None:
                group[scale_key] = group["lr_mult"]
            group["lr_mult"] = 1.0
    return groups


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], autocast: Callable) -> None:
    """BatchNorm's running statistics recomputed for the weights now in the model: schedulefree's README (model in
    train mode, optimizer in eval mode, ~50 training batches under no_grad, then model.eval() to evaluate). The
    statistics are reset and averaged equally over the batches (torch's momentum=None), PreciseBN's form, which
    the README names as the alternative, so that nothing of the training points' statistics stays. The model is
    left in train mode; the evaluation switches it."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for x in batches:
        with autocast():
            model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


# ---------------------------------------------------------------- one builder per method


def _schedulefree(cls_name: str, betas: bool) -> Callable[[list[dict], BuildContext], SelfTuned]:
    def build(groups: list[dict], ctx: BuildContext) -> SelfTuned:
        cls = getattr(_library("schedulefree", cls_name), cls_name)
        # warm-up: the README recommends one, through `warmup_steps`; 2% of the steps is the warmup_factor of the
        # package's own AlgoPerf submissions (schedulefree/algoperf/*/schedule_free_adamw)
        options = {"betas": (ctx.momentum, 0.999)} if betas else {"momentum": ctx.momentum}
        optimizer = cls(groups, lr=ctx.lr, warmup_steps=int(0.02 * ctx.n_steps), **options)
        optimizer.train()  # "requires that .train() and .eval() be called before the beginning of training"
        return SelfTuned(optimizer, recalibrate_bn=True, averages=True)
    return build


def _prodigy(groups: list[dict], ctx: BuildContext) -> SelfTuned:
    prodigy = _library("prodigyopt", "prodigy")
    # README: lr=1 with cosine annealing (the schedule); decoupled weight decay is its default; "To avoid issues
    # with warm-up, use option safeguard_warmup=True"
    with _quiet():
        optimizer = prodigy.Prodigy(_one_lr(groups), lr=ctx.lr, betas=(ctx.momentum, 0.999), decouple=True,
                                    safeguard_warmup=ctx.warms_up)
    return SelfTuned(optimizer)


def _dadapt_sgd(groups: list[dict], ctx: BuildContext) -> SelfTuned:
    dadaptation = _library("dadaptation", "dadapt-sgd")
    # README: lr 1.0 and the schedule one would use anyway; DAdaptSGD reads the first group's weight decay
    return SelfTuned(dadaptation.DAdaptSGD(_one_lr(groups), lr=ctx.lr, momentum=ctx.momentum))


def _dadapt_adam(groups: list[dict], ctx: BuildContext) -> SelfTuned:
    dadaptation = _library("dadaptation", "dadapt-adam")
    # README: per-layer LRs through `layer_scale`; "The Adam variant supports AdamW style weight decay, just set
    # decouple=True", as Prodigy and AdamW decouple it
    with _quiet():
        optimizer = dadaptation.DAdaptAdam(_one_lr(groups, "layer_scale"), lr=ctx.lr, betas=(ctx.momentum, 0.999),
                                           decouple=True)
    return SelfTuned(optimizer)


def _dog(groups: list[dict], ctx: BuildContext) -> SelfTuned:
    dog = _library("dog", "dog")
    # README and DoG's docstring: reps_rel 1e-6, "unless the model uses batch-normalization, in which case the
    # suggested value is 1e-4"; "DoG/L-DoG must be combined with iterate averaging": its PolynomialDecayAverager
    # (gamma 8, its default) after every step, and the averaged model is the one evaluated
    optimizer = dog.DoG(groups, reps_rel=1e-4 if has_batchnorm(ctx.model) else 1e-6, lr=ctx.lr)
    averager = dog.PolynomialDecayAverager(ctx.model)
    swap = _AveragedWeights(ctx.model, averager.averaged_model)
    return SelfTuned(optimizer, after_step=averager.step, swap_in=swap.swap_in, swap_out=swap.swap_out, averages=True)


def _mechanic(groups: list[dict], ctx: BuildContext) -> SelfTuned:
    mechanic = _library("mechanic_pytorch", "mechanic")
    # README: optimizer = mechanize(torch.optim.SGD)(model.parameters(), lr=1.0), around any optimizer and schedule;
    # its defaults (s_decay 0.01, betas 0.9 to 0.999999, s_init 1e-8)
    base, options = ctx.base
    return SelfTuned(mechanic.mechanize(base)(groups, lr=ctx.lr, **options))


class _AveragedWeights:
    """Puts an averaged copy's weights (and buffers) in the model for an evaluation, and the trained ones back."""

    def __init__(self, model: nn.Module, averaged: nn.Module):
        self.model, self.averaged = model, averaged
        self.trained: list[torch.Tensor] | None = None

    @torch.no_grad()
    def swap_in(self) -> None:
        self.trained = [t.clone() for t in self.model.state_dict().values()]
        for live, average in zip(self.model.state_dict().values(), self.averaged.state_dict().values()):
            live.copy_(average)

    @torch.no_grad()
    def swap_out(self) -> None:
        for live, trained in zip(self.model.state_dict().values(), self.trained):
            live.copy_(trained)
        self.trained = None


# name -> builder (the keys are tasks.SELF_TUNING_OPTIMIZERS', kept equal by tests/test_self_tuning.py)
BUILDERS: dict[str, Callable[[list[dict], BuildContext], SelfTuned]] = {
    "schedulefree-sgd": _schedulefree("SGDScheduleFree", betas=False),
    "schedulefree-adamw": _schedulefree("AdamWScheduleFree", betas=True),
    "prodigy": _prodigy,
    "dadapt-sgd": _dadapt_sgd,
    "dadapt-adam": _dadapt_adam,
    "dog": _dog,
    "mechanic": _mechanic,
}


def build(name: str, groups: list[dict], ctx: BuildContext) -> SelfTuned:
    """The self-tuning optimizer `name` over `groups` (tasks.trial_settings has checked the name)."""
    return BUILDERS[name](groups, ctx)
