"""Learning-rate schedules, each a pure function of the iteration `it` (0-based).

`make_schedule(spec, total_steps)` turns a plain dict from a config into a
function `it -> lr`; `FunctionLR` lets any such function drive a torch optimizer.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch

from lrsearch.training.errors import InputError

Schedule = Callable[[int], float]


def constant(it: int, lr: float) -> float:
    """lr(it) = lr."""
    return lr


def multistep(it: int, base_lr: float, milestones: Sequence[int] = (60_000, 65_000), gamma: float = 0.1) -> float:
    """lr(it) = base_lr * gamma ** (number of milestones <= it).

    Default milestones: Caffe's CIFAR-10 "full" solver chain (0.001, x0.1 at 60,000 and
    65,000 iterations), the CLR paper's `fixed` baseline (Smith 2017, Table 1).
    """
    return base_lr * gamma ** sum(it >= m for m in milestones)


def exponential(it: int, base_lr: float, gamma: float) -> float:
    """lr(it) = base_lr * gamma ** it (Caffe's "exp" policy, the CLR paper's `exp`)."""
    return base_lr * gamma**it


def linear_decay(it: int, start_lr: float, end_lr: float, n_iters: int) -> float:
    """Linear from start_lr at it=0 to end_lr at it=n_iters, then constant at end_lr.

    The CLR paper's `decay` policy (Smith 2017, Sec. 4.1.1).
    """
    return start_lr + (end_lr - start_lr) * min(it, n_iters) / n_iters


def cosine(it: int, base_lr: float, total_iters: int, min_lr: float = 0.0) -> float:
    """lr(it) = min_lr + (base_lr - min_lr) * (1 + cos(pi * it / total_iters)) / 2, then min_lr
    (Loshchilov & Hutter, SGDR, without restarts; torch's CosineAnnealingLR closed form)."""
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * min(it, total_iters) / total_iters)) / 2


def one_cycle(it: int, max_lr: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
              final_div_factor: float = 1e4, anneal_strategy: str = "cos", three_phase: bool = False) -> float:
    """One-cycle (Smith & Topin 2018) exactly as torch.optim.lr_scheduler.OneCycleLR.

    initial = max_lr / div_factor, min = initial / final_div_factor. Two phases: initial -> max_lr
    until step pct_start*total - 1, then max_lr -> min until total - 1. Three phases: initial -> max,
    max -> initial until 2*pct_start*total - 2, then initial -> min. Each phase anneals by cosine
    `end + (start - end) * (1 + cos(pi * pct)) / 2` or linearly.
    """
    initial = max_lr / div_factor
    minimum = initial / final_div_factor
    up_end = float(pct_start * total_steps) - 1
    if three_phase:
        phases = [(up_end, initial, max_lr), (2 * up_end, max_lr, initial), (total_steps - 1, initial, minimum)]
    else:
        phases = [(up_end, initial, max_lr), (total_steps - 1, max_lr, minimum)]
    start_step = 0.0
    for i, (end_step, start_lr, end_lr) in enumerate(phases):
        if it <= end_step or i == len(phases) - 1:
            pct = (it - start_step) / (end_step - start_step)
            if anneal_strategy == "cos":
                return end_lr + (start_lr - end_lr) / 2.0 * (math.cos(math.pi * pct) + 1)
            return (end_lr - start_lr) * pct + start_lr
        start_step = end_step
    raise AssertionError("unreachable")


def warmup_linear_decay(it: int, lr: float, total_steps: int, pct_start: float = 0.23, start_factor: float = 0.2,
                        end_factor: float = 0.07) -> float:
    """Linear warm-up, then linear decay (airbench94's schedule, Jordan 2024, `get_lr`):

        w     = int(pct_start * total_steps)
        lr(it) = lr * (start_factor + (1 - start_factor) * it / w)                          for it < w
        lr(it) = lr * (1 + (end_factor - 1) * (it - w) / (total_steps - w))                otherwise

    airbench94 uses pct_start 0.23, start_factor 0.2, end_factor 0.07.
    """
    warmup = int(pct_start * total_steps)
    if it < warmup:
        return lr * (start_factor + (1.0 - start_factor) * it / warmup)
    return lr * (1.0 + (end_factor - 1.0) * (it - warmup) / (total_steps - warmup))


_WINDOWS: dict[str, Callable[[float], float]] = {
    "triangular": lambda x: 1.0 - x,
    "welch": lambda x: 1.0 - x * x,
    "hann": lambda x: (1.0 + math.cos(math.pi * x)) / 2.0,
}


def cyclic_lr(it: int, base_lr: float, max_lr: float, step_size: int, mode: str = "triangular",
              gamma: float = 1.0, window: str = "triangular", decay: str = "amplitude") -> float:
    """Cyclical learning rate (Smith 2017, Sec. 3; formula of bckenstler/CLR, the Keras CLR):

        cycle = floor(1 + it / (2 * step_size))
        x     = |it / step_size - 2 * cycle + 1|
        lr    = base_lr + (max_lr - base_lr) * w(x) * scale

    mode: triangular (scale 1), triangular2 (scale 1 / 2**(cycle - 1)), exp_range (scale gamma**it).
    decay, for exp_range only: "amplitude" scales the height above base_lr as above (bckenstler/CLR,
    torch's CyclicLR); "bounds" scales both boundaries, lr = (base_lr + (max_lr - base_lr) * w(x)) * gamma**it,
    which is how the paper's text (Sec. 3.1) describes exp_range.
    window w, the shapes the CLR paper compared (Sec. 3.1): triangular 1 - x, welch 1 - x**2,
    hann (1 + cos(pi x)) / 2. With the triangular window this equals torch's CyclicLR.
    """
    cycle = math.floor(1 + it / (2 * step_size))
    x = abs(it / step_size - 2 * cycle + 1)
    if mode == "triangular":
        scale = 1.0
    elif mode == "triangular2":
        scale = 1.0 / 2.0 ** (cycle - 1)
    elif mode == "exp_range":
        scale = gamma**it
    else:
        raise InputError(f"cyclic mode {mode!r}: expected triangular, triangular2 or exp_range")
    if window not in _WINDOWS:
        raise InputError(f"cyclic window {window!r}: expected one of {', '.join(_WINDOWS)}")
    if decay == "bounds" and mode == "exp_range":
        return (base_lr + (max_lr - base_lr) * _WINDOWS[window](x)) * scale
    if decay not in ("amplitude", "bounds"):
        raise InputError(f"cyclic decay {decay!r}: expected amplitude or bounds")
    return base_lr + (max_lr - base_lr) * _WINDOWS[window](x) * scale


def with_warmup(schedule: Schedule, warmup_iters: int, start_factor: float = 0.0) -> Schedule:
    """Linear warm-up in front of any schedule: lr(it) = schedule(it) * f, f rising linearly
    from start_factor at it=0 to 1 at it=warmup_iters (Goyal et al. 2017, gradual warm-up)."""
    def warmed(it: int) -> float:
        if it >= warmup_iters:
            return schedule(it)
        return schedule(it) * (start_factor + (1.0 - start_factor) * it / warmup_iters)
    return warmed


def staged(stages: Sequence[tuple[int, Schedule]]) -> Schedule:
    """Consecutive iteration ranges, each with its own schedule: stages are (end_it, schedule),
    end exclusive and increasing; a stage's schedule sees the iteration counted from its own
    start. Past the last end, the last stage goes on. (The CLR paper's Figure 1 run changed
    its CLR range part-way.)"""
    ends = [end for end, _ in stages]
    if ends != sorted(ends) or len(set(ends)) != len(ends):
        raise InputError(f"stage ends {ends} must increase")

    def run(it: int) -> float:
        start = 0
        for end, schedule in stages:
            if it < end:
                return schedule(it - start)
            start = end
        return stages[-1][1](it - (ends[-2] if len(ends) > 1 else 0))
    return run


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant, "multistep": multistep, "exponential": exponential, "linear_decay": linear_decay,
    "cosine": cosine, "one_cycle": one_cycle, "cyclic": cyclic_lr, "warmup_linear_decay": warmup_linear_decay,
}
# Parameters a config may leave out because the run's length supplies them.
_LENGTH_DEFAULTS = {"cosine": "total_iters", "one_cycle": "total_steps", "linear_decay": "n_iters",
                    "warmup_linear_decay": "total_steps"}


def make_schedule(spec: dict, total_steps: int) -> Schedule:
    """Build `it -> lr` from a config dict such as {"name": "cyclic", "base_lr": 0.001,
    "max_lr": 0.006, "step_size": 2000, "mode": "triangular2"}. Any spec may add a linear warm-up
    (`with_warmup`): "warmup_iters", or "warmup_frac" (that fraction of `total_steps`, rounded), and
    "warmup_start_factor". {"name": "staged", "stages": [{"until": N, ...}, ...]} chains specs (a stage's
    warmup_frac is of its own length). A wrong name or parameter raises ValueError naming it."""
    spec = dict(spec)
    name = spec.pop("name", None)
    warmup = spec.pop("warmup_iters", 0)
    if "warmup_frac" in spec:
        if warmup:
            raise InputError(f"schedule {name!r}: give warmup_iters or warmup_frac, not both")
        frac = float(spec.pop("warmup_frac"))
        if not 0.0 <= frac <= 1.0:
            raise InputError(f"schedule {name!r}: warmup_frac {frac}: expected a fraction from 0 to 1")
        warmup = round(frac * total_steps)
    warmup_start = spec.pop("warmup_start_factor", 0.0)
    if name == "staged":
        stages = []
        for stage in spec.pop("stages"):
            stage = dict(stage)
            until = stage.pop("until")
            stages.append((int(until), make_schedule(stage, total_steps=int(until) - (stages[-1][0] if stages else 0))))
        schedule = staged(stages)
    elif name in SCHEDULES:
        fn = SCHEDULES[name]
        if name in _LENGTH_DEFAULTS:
            spec.setdefault(_LENGTH_DEFAULTS[name], total_steps)
        allowed = [p for p in inspect.signature(fn).parameters if p != "it"]
        unknown = sorted(set(spec) - set(allowed))
        missing = [p for p, v in inspect.signature(fn).parameters.items()
                   if p != "it" and v.default is inspect.Parameter.empty and p not in spec]
        if unknown or missing:
            raise InputError(f"schedule {name!r}: " + "; ".join(
                ([f"unknown parameter(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"missing {', '.join(missing)}"] if missing else [])) + f" (takes {', '.join(allowed)})")
        params = dict(spec)
        schedule = lambda it: fn(it, **params)  # noqa: E731
    else:
        raise InputError(f"schedule name {name!r}: expected one of {', '.join([*SCHEDULES, 'staged'])}")
    return with_warmup(schedule, warmup, warmup_start) if warmup else schedule


class FunctionLR(torch.optim.lr_scheduler.LRScheduler):
    """Drive a torch optimizer with any `it -> lr` function: call `.step()` once per iteration.

    Each parameter group gets `lr(it) * group.get("lr_mult", 1)` (Caffe's per-parameter lr_mult), and
    0 from step `group["frozen_from"]` on where a group has one: SGD then moves those parameters no more
    (airbench trains its whitening bias for 3 epochs only). A learning rate of 0 freezes them without
    touching `requires_grad`, which would make a compiled model recompile.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule):
        self.schedule = schedule
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        lr = self.schedule(self.last_epoch)
        return [0.0 if self.last_epoch >= group.get("frozen_from", math.inf) else lr * group.get("lr_mult", 1.0)
                for group in self.optimizer.param_groups]
