"""Several seeds of one trial trained at once, in one process (the CLR reproduction's speed-up).

A small net at batch 100 is bound by kernel launches, not by the GPU's arithmetic: the Caffe
CIFAR-10 net ran 3.35 ms per step on an H200 alone (results/trainer-gpu/trainer_speed.csv). Here K seeds of
one task and schedule share every launch: their parameters are stacked along a new first
dimension (`torch.func.stack_module_state`) and one vmapped forward runs all K models, each on
its own batches (its own seed's shuffle). Each model's loss is its own batch mean, so the loss
summed over models leaves every model its own gradients, and torch's optimizers work
elementwise, so one stacked update is K independent updates.

Each seed's record is what `train(task, params, seed)` gives for that seed, up to the order of
floating-point sums (tests/test_ensemble.py checks it). Its `train_s` is the ensemble's clock,
shared by its K models: it is not one model's time.

Not supported (ValueError): lookahead, test-time augmentation, decoupled weight decay,
torch.compile, parameter groups frozen after some epochs, pretrained weights (fine-tuning tasks),
pruning (a report hook), and a trial's own `optimizer`. The loop is the trainer's (loop.run_loop) over K models:
the same divergence rule, per model, and the same evaluations.
"""

from __future__ import annotations

import copy
import time
import traceback

import torch
import torch.nn.functional as F

from lrsearch.training.data import DeviceLoader
from lrsearch.training.loop import LoopState, Plan, Trainee, accuracy, batches, chance_loss, run_loop, sync
from lrsearch.training.models import build_model, with_backbone_lr_mult
from lrsearch.training.schedules import FunctionLR, make_schedule
from lrsearch.training.tasks import Task, TrialSettings, trial_settings
from lrsearch.training.trainer import (
    ProgressBar,
    TaskData,
    TrialResult,
    device_name,
    make_optimizer,
    prepare_data,
    resolve_device,
    total_steps,
)

_UNSUPPORTED = {"lookahead_every": 0, "tta_level": 0, "decoupled_wd": False, "compile": False, "pretrain": None}


def train_seeds(task: Task, params: dict | None, seeds: list[int], *, device: str | torch.device | None = None,
                data_source: str | None = None, progress: bool = False) -> list[TrialResult]:
    """Train one model per seed, all at once; one TrialResult per seed, in the order of `seeds`.
    Like `train`, never raises for a bad learning rate: a model that diverges is recorded as diverged
    (the others go on), and an error fails every model that had not ended."""
    params = dict(params or {})
    started = time.perf_counter()
    dev = resolve_device(device)
    results = [TrialResult(params=params, seed=s, status="ok", target_acc=task.target_acc, device=device_name(dev))
               for s in seeds]
    try:
        bad = [f"{name}={getattr(task, name)!r}" for name, off in _UNSUPPORTED.items() if getattr(task, name) != off]
        if bad:
            raise ValueError(f"task {task.name!r}: train_seeds does not support {', '.join(bad)}; use train()")
        if len(set(seeds)) != len(seeds) or not seeds:
            raise ValueError(f"seeds {seeds}: expected distinct seeds, at least one")
        _run(task, params, list(seeds), dev, data_source, progress, results, started)
    except Exception as err:  # recorded, as `train` does
        for result in results:
            if result.status == "ok":
                result.status = "failed"
                result.error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
    for result in results:
        result.wall_s = time.perf_counter() - started
    return results


class _Stack:
    """K models of one architecture as stacked tensors, with a vmapped forward and one optimizer."""

    def __init__(self, task: Task, settings: TrialSettings, seeds: list[int], data: TaskData):
        models = []
        for seed in seeds:  # the same initialisation as `train` gives each seed
            torch.manual_seed(seed)
            models.append(build_model(task.model, num_classes=data.n_classes,
                                      train_images=data.train_x.float()).to(data.train_x.device))
        self.base = copy.deepcopy(models[0]).to("meta")
        self.params, self.buffers = torch.func.stack_module_state(models)
        self.names = {id(p): name for name, p in models[0].named_parameters()}
        self.groups_template = with_backbone_lr_mult(models[0], models[0].param_groups(settings.weight_decay),
                                                     settings.backbone_lr_mult)
        if any("train_epochs" in g for g in self.groups_template):
            raise ValueError(f"model {task.model!r}: groups frozen after some epochs are not supported here")
        self.initial = {k: v.detach().clone() for k, v in (self.params | self.buffers).items()}

        def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(self.base, (p, b), (x,))

        self.train_forward = torch.func.vmap(one)  # each model its own batch
        self.eval_forward = torch.func.vmap(one, in_dims=(0, 0, None))  # every model the same images

    def new_optimizer(self, task: Task, schedule, momentum: float) -> tuple[torch.optim.Optimizer, FunctionLR]:
        groups = [{**g, "params": [self.params[self.names[id(p)]] for p in g["params"]]} for g in self.groups_template]
        optimizer = make_optimizer(task, groups, schedule(0), momentum)
        return optimizer, FunctionLR(optimizer, schedule)

    @torch.no_grad()
    def restore(self) -> None:
        for name, tensor in (self.params | self.buffers).items():
            tensor.copy_(self.initial[name])

    def accuracy(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, autocast) -> list[float]:
        self.base.eval()
        slices = ((x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size))
        acc = accuracy(lambda v: self.eval_forward(self.params, self.buffers, v), slices, autocast)
        self.base.train()
        return acc


def _run(task: Task, params: dict, seeds: list[int], dev: torch.device, data_source: str | None, progress: bool,
         results: list[TrialResult], started: float) -> None:
    settings = trial_settings(task, params)
    if settings.optimizer != task.optimizer:
        raise ValueError(f"trial params: optimizer {settings.optimizer!r}: train_seeds trains with the task's own "
                         f"({task.optimizer!r}); use train()")
    data = prepare_data(task, dev, data_source)
    stack = _Stack(task, settings, seeds, data)

    def loaders() -> list[DeviceLoader]:
        return [DeviceLoader(data.train_x, data.train_y, task.batch_size, augment=task.augment, pad=task.translate,
                             flip=task.flip, seed=seed) for seed in seeds]

    n_per_epoch = len(loaders()[0])
    n_steps = settings.steps if settings.steps is not None else total_steps(task, n_per_epoch)
    schedule = make_schedule(settings.schedule, n_steps)
    momentum = settings.momentum
    use_bf16 = task.precision == "bf16" and dev.type == "cuda"

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16)

    def step(optimizer, scheduler, group) -> torch.Tensor:
        """One stacked step on K batches (one per model); the K losses."""
        xs = torch.stack([x for x, _ in group])
        ys = torch.stack([y for _, y in group])
        with autocast():
            logits = stack.train_forward(stack.params, stack.buffers, xs)
            losses = F.cross_entropy(logits.flatten(0, 1).float(), ys.flatten(), reduction="none",
                                     label_smoothing=settings.label_smoothing).view(len(seeds), -1).mean(1)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        scheduler.step()
        return losses.detach()

    for result in results:
        result.steps_per_epoch = n_per_epoch
    if dev.type == "cuda":  # cuDNN autotuning and first calls out of train_s, then the initial state back
        t0 = time.perf_counter()
        torch.backends.cudnn.benchmark = True
        optimizer, scheduler = stack.new_optimizer(task, schedule, momentum)
        for group, _ in zip(zip(*loaders()), range(3)):
            step(optimizer, scheduler, group)
        stack.accuracy(data.test_x, data.test_y, task.eval_batch_size, autocast)
        sync(dev)
        stack.restore()
        for result in results:
            result.warmup_s = time.perf_counter() - t0
    optimizer, scheduler = stack.new_optimizer(task, schedule, momentum)
    has_val = data.val_x is not None

    def evaluate(final: bool) -> tuple[list[float] | None, list[float]]:
        val = stack.accuracy(data.val_x, data.val_y, task.eval_batch_size, autocast) if has_val else None
        return val, stack.accuracy(data.test_x, data.test_y, task.eval_batch_size, autocast)

    plan = Plan(n_steps=n_steps, steps_per_epoch=n_per_epoch, batch_size=task.batch_size, eval_every=task.eval_every,
                diverge_factor=task.diverge_factor, best_loss=chance_loss(data.n_classes), seconds=task.seconds,
                target=task.target_acc)
    trainee = Trainee(step=lambda group: step(optimizer, scheduler, group), evaluate=evaluate, lr=schedule,
                      device=dev)
    bar = ProgressBar(n_steps, f"{task.name} x{len(results)}") if progress else None
    run_loop(trainee, zip(*(batches(loader, n_steps) for loader in loaders())), plan, results,
             LoopState.fresh(plan, len(results), dev), started=started, bar=bar)
    if bar is not None:
        bar.close()
