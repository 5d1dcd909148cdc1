"""The one training loop, and the pieces every loop here is built from.

AlgoPerf's split: a workload supplies the data, the model, the loss, the evaluation and its metric's direction
(as a `Trainee`); `run_loop` trains it. The trainer (trainer.py), the stacked-seed trainer (ensemble.py, K models
stepping together) and a user's own model (workloads/_model.py) are all `run_loop` over their own Trainee. The
LR range test (search/lr_finder.py) sweeps the LR step by step with its own short loop, from the same pieces:
`batches`, `accuracy` and `diverged`.

What `run_loop` does, for K >= 1 models trained by one step function:
- steps through `n_steps` batches (`batches` cycles the loader's passes);
- never synchronises with the device between evaluations: the running loss is summed on the device;
- every `eval_every` steps and at the last, reads each model's interval loss, applies the divergence rule, and
  evaluates the models still alive (`before_eval` inside the training clock, `recalibrate` inside the
  evaluation's, `after_eval` after, except after the last: the model ends as evaluated);
- stops a model on divergence, the trial on a pruner's word (`report`) or the seconds budget, and all when no
  model is left;
- writes a checkpoint when one is due (K = 1), while its clock is stopped.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch

ReportHook = Callable[[int, float], bool]  # (step, value as maximised) -> stop?


# ---------------------------------------------------------------- the pieces


def diverged(loss: float, best_loss: float, factor: float) -> bool:
    """The divergence rule of every loop here (the trainer's interval losses, the range test's smoothed loss):
    a non-finite loss, or one above `factor` times the best so far (fastai's `LRFinder` stops at 4x its best).
    A classifier's best starts at its chance-level loss (`chance_loss`), so that a first interval already far
    above chance counts too; a loss of unknown scale (a user's) starts at infinity."""
    return not math.isfinite(loss) or loss > factor * best_loss


def chance_loss(n_classes: int) -> float:
    """Cross-entropy of a uniform guess over `n_classes`: where a fresh classifier starts."""
    return math.log(n_classes)


def batches(loader: Iterable, n_steps: int | None = None) -> Iterator:
    """The loader's batches, pass after pass (a new shuffle each pass), `n_steps` of them (None: forever)."""
    step = 0
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
            step += 1
            if step == n_steps:
                return
        if empty:
            raise ValueError("the training loader yields no batches")


@torch.no_grad()
def accuracy(forward: Callable, pairs: Iterable, autocast: Callable | None = None,
             device: torch.device | None = None) -> float | list[float]:
    """Classification accuracy of `forward` over (inputs, targets) batches: the share of argmax hits. Logits of
    K stacked models (K, batch, classes) give K accuracies. With `device`, batches are moved there first."""
    autocast = autocast or contextlib.nullcontext
    correct, total = None, 0
    for x, y in pairs:
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast():
            logits = forward(x)
        hits = (logits.argmax(-1) == y).sum(-1)
        correct = hits if correct is None else correct + hits
        total += len(y)
    if correct is None:
        return 0.0
    return (correct.double() / total).tolist()


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); the clocks read only after it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def record_evaluation(result, row: dict, has_val: bool, target: float | None,
                      direction: Literal["maximize", "minimize"] = "maximize") -> float:
    """Fold one evaluated curve row into a TrialResult's summary (final, best, first time at the target); returns
    the metric a search sees (validation, or test when there is no validation split)."""
    value = row["val_acc"] if has_val else row["test_acc"]
    better = max if direction == "maximize" else min
    result.final_val_acc, result.final_test_acc = value, row["test_acc"]
    result.best_val_acc = value if result.best_val_acc is None else better(result.best_val_acc, value)
    reached = target is not None and (value >= target if direction == "maximize" else value <= target)
    if result.time_to_target_s is None and reached:
        result.time_to_target_s, result.steps_to_target = result.train_s, row["step"]
    return value


# ---------------------------------------------------------------- the loop


def _nothing(*args) -> None:
    return None


@dataclass
class Trainee:
    """What the loop trains, as its workload built it: K >= 1 models stepping together.

    step(batch) -> loss: one optimizer step (schedule included) on one batch; the loss on the device, a scalar,
    or K losses for K stacked models (each model's own batch mean).
    evaluate(final) -> (val, test): each model's metric on the validation and test splits, a float (K = 1) or
    K floats, None for a split the workload does not have; `final` at the last step (test-time augmentation).
    lr(step) -> the schedule's LR at a step (what the curve records).
    after_step(step): after each step (the lookahead's averaging).
    before_eval / after_eval / recalibrate: see the module's docstring (schedule-free's eval() and train(),
    averaged weights swapped in and out, BatchNorm statistics recalibrated)."""
    step: Callable[[object], torch.Tensor]
    evaluate: Callable[[bool], tuple]
    lr: Callable[[int], float]
    device: torch.device
    after_step: Callable[[int], None] = _nothing
    before_eval: Callable[[], None] = _nothing
    after_eval: Callable[[], None] = _nothing
    recalibrate: Callable[[], None] = _nothing


@dataclass
class Plan:
    """How long and how a trial trains, from its task or workload."""
    n_steps: int
    steps_per_epoch: int
    batch_size: int
    eval_every: int
    diverge_factor: float = 4.0
    best_loss: float = math.inf  # the divergence rule's starting reference (chance_loss for a classifier)
    seconds: float | None = None  # stop at the first evaluation after this much training time
    target: float | None = None
    direction: Literal["maximize", "minimize"] = "maximize"
    loss_dtype: torch.dtype = torch.float32  # the running loss's sum on the device (float64 for a user's loss)


@dataclass
class LoopState:
    """The loop's own running state: what a checkpoint keeps besides model, optimizer and loader."""
    best_loss: list[float]  # each model's lowest interval loss so far (the divergence rule's reference)
    loss_sum: torch.Tensor  # this evaluation interval's summed loss, per model, on the device
    step: int = 0
    interval_steps: int = 0
    step_losses: list[torch.Tensor] = field(default_factory=list)  # per-step losses not yet read off the device

    @classmethod
    def fresh(cls, plan: Plan, k: int, device: torch.device) -> LoopState:
        shape = () if k == 1 else (k,)
        return cls(best_loss=[plan.best_loss] * k, loss_sum=torch.zeros(shape, dtype=plan.loss_dtype, device=device))


def run_loop(trainee: Trainee, loader_batches: Iterator, plan: Plan, results: list, state: LoopState, *,
             started: float, report: ReportHook | None = None, bar=None, record_step_losses: bool = False,
             checkpoint=None, checkpoint_state: Callable[[LoopState, float], dict] | None = None) -> None:
    """Train `results`' models (one TrialResult each) from `state.step` to the end; see the module's docstring.

    loader_batches: the batches from `state.step` on (stacked models: a tuple of K batches per step).
    started: perf_counter when the trial began (its rows' wall_s; a resumed trial adds its earlier seconds).
    report(step, value): a pruner's hook (K = 1); the value in the maximised sign. checkpoint /
    checkpoint_state(state, wall_s): write the trial's state (checkpoint.py) when due (K = 1)."""
    dev, n_steps, k = trainee.device, plan.n_steps, len(results)
    live = [r.status == "ok" for r in results]
    train_s, eval_s = results[0].train_s, results[0].eval_s  # a resumed trial's earlier seconds
    wall_before = results[0].wall_s
    sync(dev)
    resumed = time.perf_counter()
    for batch in loader_batches:
        lr = trainee.lr(state.step)  # what the schedule set for this step (times each group's lr_mult)
        loss = trainee.step(batch)
        state.step += 1
        step = state.step
        trainee.after_step(step)
        state.loss_sum += loss
        if record_step_losses:
            state.step_losses.append(loss.float())
        state.interval_steps += 1
        if step % plan.eval_every == 0 or step == n_steps:
            trainee.before_eval()
            sync(dev)
            now = time.perf_counter()
            train_s += now - resumed
            sums = state.loss_sum.reshape(-1).tolist()
            losses = [s / state.interval_steps for s in sums]
            if state.step_losses:  # (n, K) losses, each model's own column
                read = torch.stack(state.step_losses).reshape(len(state.step_losses), -1).T.tolist()
                for result, column in zip(results, read):
                    result.step_losses += column
                state.step_losses.clear()
            diverging = [live[i] and diverged(losses[i], state.best_loss[i], plan.diverge_factor) for i in range(k)]
            state.best_loss = [min(b, x) if math.isfinite(x) else b for b, x in zip(state.best_loss, losses)]
            val = test = None
            if any(live[i] and not diverging[i] for i in range(k)):
                trainee.recalibrate()
                val, test = trainee.evaluate(step == n_steps)
                val, test = ([v] if k == 1 and v is not None else v for v in (val, test))
            eval_s += time.perf_counter() - now
            wall_s = wall_before + time.perf_counter() - started
            for i, result in enumerate(results):
                if not live[i]:
                    continue
                ok = not diverging[i]
                row = {"step": step, "epoch": step / plan.steps_per_epoch, "samples": step * plan.batch_size,
                       "lr": lr, "train_loss": losses[i], "val_acc": val[i] if ok and val is not None else None,
                       "test_acc": test[i] if ok and test is not None else None, "train_s": train_s, "wall_s": wall_s}
                result.train_s, result.eval_s, result.steps = train_s, eval_s, step
                result.curve.append(row)
                if not ok:
                    live[i] = False
                    result.status = "diverged"
                    result.error = f"loss {losses[i]:.4g} at step {step} (best {state.best_loss[i]:.4g})"
                    continue
                value = record_evaluation(result, row, val is not None, plan.target, plan.direction)
                if report is not None and report(step, value if plan.direction == "maximize" else -value):
                    live[i] = False
                    result.status = "pruned"
            if bar is not None:
                shown = [t for t, alive in zip(test or val or [], live) if alive and t is not None]
                bar.update(step, sum(losses) / k, sum(shown) / len(shown) if shown else None)
            if not any(live) or (plan.seconds is not None and train_s >= plan.seconds):
                break
            if step != n_steps:
                trainee.after_eval()
            state.loss_sum.zero_()
            state.interval_steps = 0
            sync(dev)
            resumed = time.perf_counter()
        if checkpoint is not None and step != n_steps and checkpoint.due(step):
            sync(dev)  # the clock stops while the checkpoint is written: its seconds are checkpoint_s
            now = time.perf_counter()
            train_s += now - resumed
            results[0].train_s = train_s
            checkpoint.save(checkpoint_state(state, wall_before + now - started), step)
            results[0].checkpoint_s += time.perf_counter() - now
            resumed = time.perf_counter()
