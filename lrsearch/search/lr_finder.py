"""Leslie Smith's LR range test and the rules that read a learning rate off its curve.

`range_test(task, ...)` or `range_test(model, optimizer, train_loader, ...)` trains once while
the learning rate rises (linearly, as in Smith 2017 Sec. 3.3, or exponentially, as fastai's
`lr_find`) and returns a tidy table. The rules are pure functions of `(lrs, values)`:

- `suggest_range(lrs, values, metric)`: Smith's (base_lr, max_lr) for a cyclical LR;
- `valley`, `steep`, `minimum`, `slide`: fastai's single-LR suggestions;
- `steepest_gradient`: torch-lr-finder's suggestion.

All of them cut the curve at its first non-finite value, drop `skip_start` / `skip_end`
points, and smooth it with a centred moving average (no lag, unlike an EMA, so a
suggestion is not pushed towards larger rates). The default for CLR bounds is
`suggest_range(metric="acc")`, Smith's rule on validation accuracy.

An optimizer with several parameter groups (fine-tuning's backbone and head) is swept with every
group at its own LR, at the ratios it was built with: the table has a column per group (`lr_group0`,
...) beside `lr`, and `RangeTest.suggestions()` gives every rule's suggestion per group. A sweep step
may average several batches (`accumulation_steps`), and float16 autocast runs with a GradScaler.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import numpy as np
import pandas as pd

from lrsearch.training.errors import InputError
from lrsearch.training.schedules import make_schedule
from lrsearch.training.tasks import Task

RULES = ("valley", "steep", "minimum", "slide", "steepest_gradient")
COLUMNS = ("step", "lr", "train_loss", "smoothed_loss", "val_acc")  # a test's table; lr_group0, ... follow `lr`


# ---------------------------------------------------------------- curve helpers


def clean(lrs, values, skip_start: int = 0, skip_end: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cut at the first NaN/inf, then drop the first `skip_start` and last `skip_end` points."""
    lrs, values = np.asarray(lrs, dtype=float), np.asarray(values, dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        lrs, values = lrs[:bad[0]], values[:bad[0]]
    end = len(values) - skip_end
    return lrs[skip_start:end], values[skip_start:end]


def smooth(values, window: int) -> np.ndarray:
    """Centred moving average over `window` points; near the ends the window shrinks
    symmetrically (a one-sided window would bend a steep end of the curve)."""
    values = np.asarray(values, dtype=float)
    n, half = len(values), window // 2
    if half < 1 or n < 3:
        return values
    i = np.arange(n)
    h = np.minimum(half, np.minimum(i, n - 1 - i))
    cumsum = np.concatenate([[0.0], np.cumsum(values)])
    return (cumsum[i + h + 1] - cumsum[i - h]) / (2 * h + 1)


def ema(values, beta: float = 0.98) -> np.ndarray:
    """Debiased exponential moving average, as fastai and torch-lr-finder show the loss."""
    out, avg = np.empty(len(values)), 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def _prepare(lrs, values, skip_start, skip_end, window):
    lrs, values = clean(lrs, values, skip_start, skip_end)
    if len(values) < 3:
        raise ValueError(f"only {len(values)} usable points on the curve; run the range test longer")
    return lrs, smooth(values, window if window else max(1, len(values) // 20))


# ---------------------------------------------------------------- Smith's range rule


def suggest_range(lrs, values, metric: str = "acc", rise_start: float = 0.1, rise_end: float = 0.95,
                  skip_start: int = 0, skip_end: int = 0, window: int | None = None) -> tuple[float, float]:
    """(base_lr, max_lr) for a cyclical learning rate (Smith 2017, Sec. 3.3: "note the learning rate
    value when the accuracy starts to increase and when the accuracy slows, becomes ragged, or starts
    to fall").

    metric "acc": base_lr where accuracy starts to rise (the first point above `rise_start` of
    the total rise), max_lr where it stops rising (the first point at `rise_end` of the rise,
    after which it flattens, turns ragged or falls).

    metric "loss", the same reading of the loss as the seed article states it: base_lr where the
    loss starts to fall, max_lr where it starts to rise, just before its minimum (on the article's
    example about 0.001 and 0.1). With s the smoothed loss (centred average over `window` points,
    default a twentieth of the curve), m = argmin s and F = s[0] - s[m] its fall:

        base_lr = lr[b],  b = the first i with s[i] <= s[0] - rise_start * F
        r       = the first i > m with s[i] > s[m] + (1 - rise_end) * F  (the loss leaves its
                  bottom; the end of the curve if it never does)
        max_lr  = lr[j],  j = the last i in [m, r) with i == m or s[i] <= s[i - 1]

    so from max_lr on, the smoothed loss rises without a break until it is out of its bottom: on a
    loss that explodes after its minimum, max_lr is the smoothed minimum (which the centred average
    puts a little below the raw one); on a long flat bottom, the end of it, where the loss turns up.
    The minimum of a range test overshoots the largest stable LR, because an instability needs steps
    to show in the loss while the LR keeps rising: on least squares, where gradient descent diverges
    above 2/L, this max_lr lies at 4.75, 2.5 to 2.6 and 1.4 to 1.5 times 2/L for exponential sweeps of
    100, 300 and 1,000 steps (tests/test_lr_finder.py). fastai's single-LR rules (`valley`, `minimum` = the
    minimum / 10, ...) pick a training LR below it; `plot_range_test` marks both.
    """
    if metric not in ("acc", "loss"):
        raise ValueError(f"metric {metric!r}: expected 'acc' or 'loss'")
    lrs, v = _prepare(lrs, values, skip_start, skip_end, window if window else (3 if metric == "acc" else None))
    if metric == "loss":
        v = -v  # a fall in loss is a rise in -loss
    start = v[0]
    peak = int(np.argmax(v))
    rise = v[peak] - start
    if rise <= 0:
        raise ValueError(f"the {metric} never {'rises' if metric == 'acc' else 'falls'} over the range test")
    base_lr = float(lrs[int(np.argmax(v >= start + rise_start * rise))])
    if metric == "loss":
        s, m = -v, peak  # back to the loss; m is its minimum, `rise` its fall
        leaves = np.flatnonzero(s[m:] > s[m] + (1 - rise_end) * rise)
        bottom = s[m:m + leaves[0]] if len(leaves) else s[m:]
        not_rising = np.flatnonzero(np.diff(bottom) <= 0)
        max_lr = float(lrs[m + (not_rising[-1] + 1 if len(not_rising) else 0)])
    else:
        max_lr = float(lrs[int(np.argmax(v >= start + rise_end * rise))])
    if max_lr <= base_lr:
        raise ValueError(f"no range: base_lr {base_lr:.3g} >= max_lr {max_lr:.3g} on the {metric}; "
                         "use a wider, finer or longer range test")
    return base_lr, max_lr


# ---------------------------------------------------------------- single-LR rules


def valley(lrs, losses, skip_start: int = 0, skip_end: int = 0, window: int | None = None) -> float:
    """fastai's `valley`: the longest stretch over which the loss keeps falling (longest
    decreasing subsequence), then the point halfway along it."""
    lrs, v = _prepare(lrs, losses, skip_start, skip_end, window)
    n = len(v)
    run = np.ones(n, dtype=int)  # run[i]: length of the longest decreasing subsequence ending at i
    for i in range(1, n):
        earlier = run[:i][v[:i] > v[i]]
        if len(earlier):
            run[i] = earlier.max() + 1
    end = int(np.argmax(run))
    start = end - run[end] + 1
    third = (end - start) / 3
    return float(lrs[start + int(third) + int(third / 2)])


def steep(lrs, losses, skip_start: int = 0, skip_end: int = 0, window: int | None = None) -> float:
    """fastai's `steep`: where the loss falls fastest against log(lr)."""
    lrs, v = _prepare(lrs, losses, skip_start, skip_end, window)
    slopes = np.diff(v) / np.diff(np.log(lrs))
    return float(lrs[int(np.argmin(slopes))])


def minimum(lrs, losses, skip_start: int = 0, skip_end: int = 0, window: int | None = None) -> float:
    """fastai's `minimum`: the lr of the lowest loss, divided by 10."""
    lrs, v = _prepare(lrs, losses, skip_start, skip_end, window)
    return float(lrs[int(np.argmin(v))] / 10)


def slide(lrs, losses, lr_diff: int = 15, thresh: float = 0.005, adjust_value: float = 1.0,
          skip_start: int = 0, skip_end: int = 0, window: int | None = None) -> float:
    """fastai's `slide`: slide a window of `lr_diff` points from the high-lr end towards the
    low end while the loss gradient at its two ends differs by more than `thresh`; the lr at
    the window's left end when it stops."""
    lrs, v = _prepare(lrs, losses, skip_start, skip_end, window)
    grad = np.gradient(v)
    right = len(v) - 1
    left = right - lr_diff
    suggestion = lrs[max(left, 0)]
    while left >= 0 and abs(grad[right] - grad[left]) > thresh:
        suggestion = lrs[left]
        right -= 1
        left -= 1
    return float(suggestion * adjust_value)


def steepest_gradient(lrs, losses, skip_start: int = 10, skip_end: int = 5, window: int | None = None) -> float:
    """torch-lr-finder's suggestion: the point of steepest descent of the loss (np.gradient over
    the points, its defaults skipping 10 at the start and 5 at the end)."""
    lrs, v = _prepare(lrs, losses, skip_start, skip_end, window)
    return float(lrs[int(np.argmin(np.gradient(v)))])


def suggest_lr(lrs, losses, rule: str = "valley", **kwargs) -> float:
    rules = {"valley": valley, "steep": steep, "minimum": minimum, "slide": slide, "steepest_gradient": steepest_gradient}
    if rule not in rules:
        raise ValueError(f"rule {rule!r}: expected one of {', '.join(rules)}")
    return rules[rule](lrs, losses, **kwargs)


# ---------------------------------------------------------------- the test itself


@dataclass
class RangeTest:
    table: pd.DataFrame  # a row per sweep step: step, lr, lr_group0 ..., train_loss, smoothed_loss, val_acc (at evals)
    stop_reason: str  # "completed", or why it stopped early
    status: str  # the trainer's status: ok, diverged or failed
    train_s: float
    wall_s: float
    mode: str
    steps_per_epoch: int  # sweep steps per pass over the training loader
    lr_mults: tuple[float, ...] = (1.0,)  # each parameter group's LR over the `lr` column's, all along the sweep
    skipped_steps: int = 0  # optimizer steps the GradScaler skipped (inf or nan gradients): not sweep points

    def evaluations(self) -> pd.DataFrame:
        return self.table.dropna(subset=["val_acc"])

    def suggest_range(self, metric: str = "acc", **kwargs) -> tuple[float, float]:
        if metric == "acc":
            ev = self.evaluations()
            return suggest_range(ev["lr"], ev["val_acc"], "acc", **kwargs)
        return suggest_range(self.table["lr"], self.table["train_loss"], "loss", **kwargs)

    def suggest_lr(self, rule: str = "valley", **kwargs) -> float:
        return suggest_lr(self.table["lr"], self.table["train_loss"], rule, **kwargs)

    def group_lrs(self, lr: float) -> list[float]:
        """`lr`, read on the `lr` column (a suggestion), as each parameter group trains at it."""
        return [lr * mult for mult in self.lr_mults]

    def suggestions(self, rules: tuple[str, ...] = RULES, metrics: tuple[str, ...] = ("acc", "loss")) -> pd.DataFrame:
        """Every rule's suggestion for every parameter group, one row each: `rule` (a single-LR rule, or
        `smith-acc` / `smith-loss` for Smith's range on that metric), `bound` (lr, or base_lr / max_lr), `group`
        (the optimizer's index), its `lr_mult` and `lr`. Every group swept at a fixed ratio to `lr`, a rule picks
        one sweep step for them all: each group's suggestion is its LR at that step. A rule that finds nothing
        gives NaN and its reason in `error`."""
        found: list[tuple[str, str, float, str | None]] = []
        for rule in rules:
            try:
                found.append((rule, "lr", self.suggest_lr(rule), None))
            except ValueError as err:
                found.append((rule, "lr", np.nan, str(err)))
        for metric in metrics:
            try:
                bounds = self.suggest_range(metric)
            except ValueError as err:
                bounds, error = (np.nan, np.nan), str(err)
            else:
                error = None
            found += [(f"smith-{metric}", bound, lr, error) for bound, lr in zip(("base_lr", "max_lr"), bounds)]
        rows = [{"rule": rule, "bound": bound, "group": i, "lr_mult": mult, "lr": lr * mult, "error": error}
                for rule, bound, lr, error in found for i, mult in enumerate(self.lr_mults)]
        return pd.DataFrame(rows, columns=["rule", "bound", "group", "lr_mult", "lr", "error"])


def range_schedule(min_lr: float, max_lr: float, steps: int, mode: str) -> dict:
    """A schedule rising from min_lr at step 0 to max_lr at the last step."""
    if not 0 <= min_lr < max_lr:
        raise ValueError(f"range test: need 0 <= min_lr < max_lr (got {min_lr}, {max_lr})")
    if mode == "linear":
        return {"name": "linear_decay", "start_lr": min_lr, "end_lr": max_lr, "n_iters": max(steps - 1, 1)}
    if mode == "exp":
        if min_lr <= 0:
            raise ValueError("range test: mode 'exp' needs min_lr > 0")
        return {"name": "exponential", "base_lr": min_lr, "gamma": (max_lr / min_lr) ** (1 / max(steps - 1, 1))}
    raise ValueError(f"range test mode {mode!r}: expected 'linear' or 'exp'")


def range_test(subject, *args, **kwargs) -> RangeTest:
    """The LR range test on an lrsearch task, or on your own torch model (as fastai's `lr_find` and
    torch-lr-finder do):

        range_test(get_task("cpu"), 1e-4, 1.0, epochs=1)                  # lrsearch builds model, data, optimizer
        range_test(model, optimizer, train_loader, min_lr=1e-7, max_lr=10)  # any model, optimizer and loader

    See `task_range_test` and `model_range_test` for the arguments. Both return a RangeTest (its table, why
    it stopped, `suggest_range`, `suggest_lr`, and `plot_range_test` to draw it)."""
    if isinstance(subject, Task):
        return task_range_test(subject, *args, **kwargs)
    return model_range_test(subject, *args, **kwargs)


def _lr_mults(param_groups: list[dict]) -> tuple[float, ...]:
    """Each group's LR over the sweep's: its `lr_mult` (lrsearch's models: the finetune backbone's is
    backbone_lr_mult, the head's 1), else its LR over the first group's, so that discriminative LRs keep
    their ratios (all 1 when the first group's LR is 0: there is no ratio to keep)."""
    first = param_groups[0]["lr"]
    return tuple(float(g["lr_mult"]) if "lr_mult" in g else (float(g["lr"] / first) if first else 1.0)
                 for g in param_groups)


def _whole_number(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_accumulation_steps(accumulation_steps) -> None:
    if not _whole_number(accumulation_steps) or accumulation_steps < 1:
        raise InputError(f"range test: accumulation_steps={accumulation_steps!r}: expected an integer >= 1, the "
                         "number of batches each sweep step averages (1, the default: no accumulation)")


def _check_arguments(steps, n_evals, diverge_factor, beta, autocast_dtype, grad_scaler, accumulation_steps) -> None:
    """One message per bad argument, naming it and what it takes."""
    import torch

    _check_accumulation_steps(accumulation_steps)
    if steps is not None and (not _whole_number(steps) or steps < 1):
        raise InputError(f"range test: steps={steps!r}: expected an integer >= 1 sweep steps, or None for one pass "
                         "over the training loader")
    if not _whole_number(n_evals) or n_evals < 1:
        raise InputError(f"range test: n_evals={n_evals!r}: expected an integer >= 1, how often to measure accuracy "
                         "on val_loader")
    if not isinstance(diverge_factor, Real) or not diverge_factor > 1:
        raise InputError(f"range test: diverge_factor={diverge_factor!r}: expected a number > 1, the multiple of its "
                         "best smoothed loss at which the test stops (fastai's: 4)")
    if not isinstance(beta, Real) or not 0 <= beta < 1:
        raise InputError(f"range test: beta={beta!r}: expected 0 <= beta < 1, the smoothing EMA's weight on the "
                         "past (fastai's: 0.98)")
    if autocast_dtype not in (None, torch.float16, torch.bfloat16):
        raise InputError(f"range test: autocast_dtype={autocast_dtype!r}: expected None (float32), torch.float16 "
                         "or torch.bfloat16")
    if grad_scaler is not None and not isinstance(grad_scaler, torch.amp.GradScaler):
        raise InputError(f"range test: grad_scaler={grad_scaler!r}: expected a torch.amp.GradScaler, or None (one "
                         "is made for float16 autocast)")


def model_range_test(model, optimizer, train_loader, min_lr: float = 1e-7, max_lr: float = 10.0,
                     steps: int | None = None, mode: str = "exp", loss_fn=None, val_loader=None, n_evals: int = 10,
                     diverge_factor: float = 4.0, beta: float = 0.98, autocast_dtype=None,
                     restore: bool = True, accumulation_steps: int = 1, grad_scaler=None) -> RangeTest:
    """Train `model` with `optimizer` on batches of `train_loader` (any iterable of (inputs, targets); cycled
    if the test is longer than it) while the LR rises from min_lr to max_lr (`mode` exp or linear) over
    `steps` sweep steps (default: one pass over the loader). Stops when the loss diverges: not finite, or its
    smoothed value (debiased EMA, `beta`) above `diverge_factor` times its best (fastai's rule). With
    `val_loader`, classification accuracy on it is measured `n_evals` times. `loss_fn(outputs, targets)`
    defaults to cross-entropy. With `restore` (default) the model's, the optimizer's and a given grad_scaler's
    states are put back afterwards, as fastai and torch-lr-finder do for the first two.

    Parameter groups: every group gets the LR times its `lr_mult` if it has one (lrsearch's models), else
    times its LR's ratio to the first group's, so the ratios the optimizer was built with hold all along the
    sweep. The table's `lr` is the sweep's LR (that of a group with lr_mult 1, or of the first group); each
    group's own is in `lr_group0`, `lr_group1`, ... and `RangeTest.suggestions()` reads every rule per group.

    accumulation_steps k: each sweep step adds up the gradients of k batches, each batch's loss divided by k
    (as torch-lr-finder does), then takes one optimizer step; its loss is the k batches' mean. On a model
    without batch statistics that is one batch k times the size (BatchNorm normalises each batch alone).

    autocast_dtype float16 runs with a torch.amp.GradScaler (`grad_scaler`, or a default one): float16 ends at
    65504 and flushes small gradients to zero; bfloat16 has float32's range and needs none. A step the scaler
    skips (inf or nan gradients; it then halves its scale) is not a sweep point: the same LR is tried again on
    the next k batches, and `skipped_steps` counts it. Gradients still inf at a scale below 1 overflow
    unscaled: the test stops there as diverged.
    """
    import copy
    import time

    import torch
    import torch.nn.functional as F

    from lrsearch.training.loop import (  # the trainer's pieces (torch: imported here)
        accuracy,
        batches,
        diverged,
    )

    _check_arguments(steps, n_evals, diverge_factor, beta, autocast_dtype, grad_scaler, accumulation_steps)
    loss_fn = loss_fn or F.cross_entropy
    per_epoch = len(train_loader) // accumulation_steps if hasattr(train_loader, "__len__") else 0
    if steps is None:
        if per_epoch < 1:
            size = f"{len(train_loader)} batches" if hasattr(train_loader, "__len__") else "no length"
            raise InputError(f"range test: steps=None means one pass over the training loader, but it has {size} "
                             f"for accumulation_steps={accumulation_steps}; give steps (the loader is cycled)")
        steps = per_epoch
    schedule = make_schedule(range_schedule(min_lr, max_lr, steps, mode), steps)
    device = next(model.parameters()).device
    mults = _lr_mults(optimizer.param_groups)
    scaler = grad_scaler
    if scaler is None and autocast_dtype == torch.float16:
        scaler = torch.amp.GradScaler(device.type)
    saved = None
    if restore:
        saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()),
                 grad_scaler.state_dict() if grad_scaler is not None else None)
    eval_at = set(np.unique(np.linspace(1, steps, n_evals).round().astype(int))) if val_loader is not None else set()

    def autocast():
        return torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)

    def sweep_step() -> tuple[float, bool]:
        """One optimizer step on k batches: their mean loss, and whether the optimizer stepped."""
        optimizer.zero_grad(set_to_none=True)
        losses = []
        for _ in range(accumulation_steps):
            x, y = (t.to(device, non_blocking=True) for t in next(train_batches))
            with autocast():
                loss = loss_fn(model(x), y) / accumulation_steps
            (loss if scaler is None else scaler.scale(loss)).backward()
            losses.append(loss.detach())
        if scaler is None:
            stepped = True
            optimizer.step()
        else:
            scale = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            stepped = scaler.get_scale() >= scale  # a skipped step multiplies the scale by backoff_factor < 1
        return sum(float(loss) for loss in losses), stepped  # read after the step: the device waits once

    rows, best, avg = [], np.inf, 0.0
    status, reason, train_s, skipped = "ok", "completed", 0.0, 0
    started = time.perf_counter()
    was_training = model.training
    model.train()
    try:
        train_batches = batches(train_loader)
        step = 0
        while step < steps:
            lr = schedule(step)
            for group, mult in zip(optimizer.param_groups, mults):
                group["lr"] = lr * mult
            group_lrs = {f"lr_group{i}": group["lr"] for i, group in enumerate(optimizer.param_groups)}
            t0 = time.perf_counter()
            value, stepped = sweep_step()  # one synchronisation per step: the curve is what the test is for
            train_s += time.perf_counter() - t0
            if np.isfinite(value) and not stepped:
                skipped += 1
                if scaler.get_scale() < 1:
                    status = "diverged"
                    reason = (f"diverged at step {step + 1}, lr {lr:.3g}: gradients inf or nan even at a loss scale "
                              f"below 1 ({skipped} steps skipped)")
                    break
                continue  # not a sweep point: the same LR again, on the next batches
            step += 1
            avg = beta * avg + (1 - beta) * value
            smoothed = avg / (1 - beta**step)
            row = {"step": step, "lr": lr, **group_lrs, "train_loss": value, "smoothed_loss": smoothed,
                   "val_acc": np.nan}
            rows.append(row)
            if not np.isfinite(value) or diverged(smoothed, best, diverge_factor):
                status = "diverged"
                reason = (f"diverged at step {step}, lr {lr:.3g}: smoothed loss {smoothed:.3g} > {diverge_factor:g} x "
                          f"its best {best:.3g}" if np.isfinite(value) else f"diverged at step {step}, lr {lr:.3g}: loss {value}")
                break
            best = min(best, smoothed)
            if step in eval_at:
                model.eval()
                row["val_acc"] = accuracy(model, val_loader, autocast, device)
                model.train()
    finally:
        if saved is not None:
            model.load_state_dict(saved[0])
            optimizer.load_state_dict(saved[1])
            if grad_scaler is not None:
                grad_scaler.load_state_dict(saved[2])
        model.train(was_training)
    columns = [*COLUMNS[:2], *(f"lr_group{i}" for i in range(len(mults))), *COLUMNS[2:]]
    table = pd.DataFrame(rows, columns=columns)
    return RangeTest(table, reason, status, train_s, time.perf_counter() - started, mode, per_epoch, mults, skipped)


def task_range_test(task: Task, min_lr: float = 1e-4, max_lr: float = 1.0, steps: int | None = None,
                    epochs: float | None = None, mode: str = "exp", seed: int = 0, n_evals: int = 25,
                    device=None, data_source: str | None = None, accumulation_steps: int = 1) -> RangeTest:
    """`model_range_test` on a task: its model, optimizer (parameter groups, weight decay), training loader
    (augmentation) and precision as a trial of the task gets them, over `steps` sweep steps (or `epochs`,
    each sweep step reading `accumulation_steps` batches); accuracy on the validation split (the test split
    when the task has none) `n_evals` times. The groups keep the trial's ratios: the finetune task's backbone
    sweeps at backbone_lr_mult times the head's LR, which is the table's `lr` (the trial's `lr` param). No
    lookahead and no test-time augmentation: the test reads the raw response to the LR. A failure (not a
    divergence, not a bad argument) is returned as status "failed" with the reason, as a trial's is."""
    import time
    import traceback

    import torch
    import torch.nn.functional as F

    from lrsearch.training.data import DeviceLoader
    from lrsearch.training.trainer import (  # the trainer pulls in torch; the rules above need only numpy
        steps_per_epoch,
        trial_parts,
    )

    _check_accumulation_steps(accumulation_steps)
    if steps is None:
        if epochs is None:
            raise InputError("range test: give steps or epochs")
        steps = max(2, round(epochs * steps_per_epoch(task, device, data_source) / accumulation_steps))
    spec = range_schedule(min_lr, max_lr, steps, mode)
    run_task = task.with_overrides(epochs=None, steps=steps, seconds=None, lookahead_every=0, tta_level=0)
    started = time.perf_counter()
    try:
        setup, data = trial_parts(run_task, {"schedule": spec}, seed, device, data_source)
        x, y = (data.val_x, data.val_y) if data.val_x is not None else (data.test_x, data.test_y)
        bf16 = task.precision == "bf16" and x.device.type == "cuda"
        return model_range_test(
            setup.model, setup.optimizer, setup.loader, min_lr, max_lr, steps, mode,
            loss_fn=lambda out, target: F.cross_entropy(out, target, label_smoothing=task.label_smoothing),
            val_loader=DeviceLoader(x, y, task.eval_batch_size, train=False), n_evals=n_evals,
            diverge_factor=task.diverge_factor, autocast_dtype=torch.bfloat16 if bf16 else None, restore=False,
            accumulation_steps=accumulation_steps)
    except Exception as err:  # recorded, as a trial's failure is
        error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
        table = pd.DataFrame(columns=list(COLUMNS))
        return RangeTest(table, f"failed: {error.splitlines()[0]}", "failed", 0.0, time.perf_counter() - started, mode, 0)


# ---------------------------------------------------------------- figure


def plot_range_test(test: RangeTest, path=None, base_lr: float | None = None, max_lr: float | None = None,
                    title: str = "LR range test", rules: tuple[str, ...] = RULES):
    """Loss and validation accuracy against the LR, the given base_lr and max_lr as lines (as Smith's Fig. 3);
    on the smoothed loss, marks where each single-LR suggestion (`rules`: fastai's, torch-lr-finder's) and
    Smith's loss rule (`suggest_range(metric="loss")`: base_lr, max_lr) lie. Saved to `path` when given;
    returns the matplotlib Figure (a notebook shows it inline), drawn without touching pyplot's backend."""
    import seaborn as sns
    from matplotlib.figure import Figure

    sns.set_theme(style="whitegrid")
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    ax.plot(test.table["lr"], test.table["train_loss"], color="0.75", lw=0.8, label="training loss")
    ax.plot(test.table["lr"], test.table["smoothed_loss"], color="C0", label="smoothed loss (EMA)")
    ax.set_xlabel("learning rate" + (" (log scale)" if test.mode == "exp" else ""))
    ax.set_ylabel("training loss")
    if test.mode == "exp":
        ax.set_xscale("log")
    finite = test.table["smoothed_loss"].replace([np.inf, -np.inf], np.nan).dropna()
    if len(finite):
        ax.set_ylim(finite.min() * 0.9, min(finite.max(), finite.iloc[0] * 2.5) * 1.05)
    ev = test.evaluations()
    ax2 = ax.twinx()
    ax2.plot(ev["lr"], ev["val_acc"], "o-", color="C1", ms=3, label="validation accuracy")
    ax2.set_ylabel("validation accuracy")
    ax2.grid(False)
    markers = dict(zip(RULES, "v^so*"))
    lrs, smoothed = test.table["lr"].to_numpy(float), test.table["smoothed_loss"].to_numpy(float)
    positive = test.table[test.table["lr"] > 0]  # fastai's rules read slopes against log(lr): a linear test from 0

    def on_curve(lr):
        if test.mode == "exp":
            return np.interp(np.log(lr), np.log(np.maximum(lrs, 1e-300)), smoothed)
        return np.interp(lr, lrs, smoothed)

    for rule in rules:
        try:
            lr = suggest_lr(positive["lr"], positive["train_loss"], rule)
        except ValueError:
            continue
        source = "torch-lr-finder" if rule == "steepest_gradient" else "fastai"
        ax.plot([lr], [on_curve(lr)], markers.get(rule, "o"), ms=7, mfc="white", mec="k", mew=0.9, zorder=5,
                label=f"{rule} {lr:.3g} ({source})")
    try:
        smith = suggest_range(positive["lr"], positive["train_loss"], "loss")
    except ValueError:
        smith = ()
    for lr, name, marker, colour in zip(smith, ("base_lr", "max_lr"), "<>", ("C2", "C3")):
        ax.plot([lr], [on_curve(lr)], marker, ms=8, mfc=colour, mec="k", mew=0.9, zorder=6,
                label=f"{name} {lr:.3g} (Smith, loss)")
    for lr, name in ((base_lr, "base_lr"), (max_lr, "max_lr")):
        if lr is not None:
            ax.axvline(lr, color="C2" if name == "base_lr" else "C3", ls="--", lw=1.2)
            ax.annotate(f"{name} {lr:.3g}", (lr, 0.97), xycoords=("data", "axes fraction"), rotation=90,
                        va="top", ha="right", fontsize=8)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=7, frameon=False)
    ax.set_title(f"{title} ({test.stop_reason})", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
