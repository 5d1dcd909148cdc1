"""A user's own torch model as a workload: the parts of a task, and lrsearch trains them.

    import lrsearch

    def workload():
        return lrsearch.ModelWorkload(
            name="digits-mlp",
            model=lambda: torch.nn.Sequential(...),        # a fresh model (called once per trial, after seeding)
            train_data=(x_train, y_train),                  # tensors, or any iterable of (inputs, targets)
            val_data=(x_val, y_val),
            epochs=5, batch_size=64, target=0.95)

The trial: the model seeded by the trial's seed, its optimizer (default SGD with the trial's lr, momentum
and weight decay; or `optimizer(parameters, params) -> torch.optim.Optimizer`), the schedule template with
"$lr" filled (default constant), `loss_fn` (default cross-entropy) and `evaluate(model, val_data) -> metric`
(default classification accuracy; your `evaluate` gets the model on the trial's device), every `eval_every` steps (default: 10 evaluations). `train_s` counts the
training steps, `eval_s` the evaluations. It trains in the trainer's one loop (loop.run_loop): the loss's
divergence rule is the trainer's (fastai's): not finite, or its interval mean above `diverge_factor` times its
best (which starts at infinity: a user's loss need not be a classifier's); the running loss is summed on the
device in float64, read at evaluations only. The model and each batch go to the trial's `device` (`--device`).
The range-test strategies run on it.
"""

from __future__ import annotations

import inspect
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from lrsearch.training.errors import InputError
from lrsearch.training.loop import LoopState, Plan, Trainee, batches, run_loop
from lrsearch.training.loop import accuracy as _accuracy
from lrsearch.training.schedules import FunctionLR, make_schedule
from lrsearch.training.trainer import ReportHook, TrialResult, device_name, resolve_device
from lrsearch.training.workloads._base import Direction, RangeTestParts, Workload
from lrsearch.training.workloads._function import source_digest

MODEL_PARAMETERS = {"lr": "peak learning rate (fills \"$lr\" in the schedule)", "momentum": "SGD momentum",
                    "one_minus_momentum": "1 - SGD momentum (AlgoPerf's form, searched on a log scale)",
                    "weight_decay": "SGD weight decay (L2)"}


class TensorBatches:
    """Shuffled mini-batches of (x, y) tensors, a new order each pass, from a seeded generator."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0, shuffle: bool = True):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=self.generator) if self.shuffle else torch.arange(len(self.y))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self.x[idx], self.y[idx]


def accuracy(model: torch.nn.Module, batches, device: torch.device | str | None = None) -> float:
    """Classification accuracy of `model` over (inputs, targets) batches (moved to `device` when given): the
    default evaluation."""
    return _accuracy(model, batches, device=torch.device(device) if device is not None else None)


@dataclass
class ModelWorkload(Workload):
    model: Callable[..., torch.nn.Module] = None  # () -> a fresh model, or (params) -> one
    train_data: Any = None  # (x, y) tensors or an iterable of batches
    val_data: Any = None
    name: str = "model"
    epochs: float | None = None
    steps: int | None = None
    batch_size: int = 64
    target: float | None = None
    metric: str = "val_acc"
    direction: Direction = "maximize"
    optimizer: Callable | None = None  # (parameters, params) -> optimizer; default SGD
    schedule: dict = field(default_factory=lambda: {"name": "constant", "lr": "$lr"})
    loss_fn: Callable | None = None
    evaluate: Callable | None = None  # (model, val batches) -> metric; default accuracy
    eval_every: int | None = None
    diverge_factor: float = 4.0
    default_params: dict = field(default_factory=lambda: {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0})
    spec: str = ""

    def __post_init__(self):
        problems = []
        if not callable(self.model):
            problems.append("model: expected a function returning a fresh torch.nn.Module")
        if self.train_data is None or self.val_data is None:
            problems.append("train_data and val_data: expected (inputs, targets) tensors or iterables of batches")
        if (self.epochs is None) == (self.steps is None):
            problems.append("give exactly one of epochs or steps")
        if problems:
            raise InputError(f"workload {self.name!r}: " + "; ".join(problems))

    @property
    def parameters(self) -> dict[str, str] | None:
        return None if self.optimizer is not None else MODEL_PARAMETERS | {"schedule": "a whole schedule spec"}

    def definition(self) -> dict:
        return {"workload": self.spec or self.name, "source_sha256": source_digest(self.model),
                "epochs": self.epochs, "steps": self.steps, "batch_size": self.batch_size, "schedule": self.schedule,
                "metric": self.metric, "direction": self.direction, "eval_every": self.eval_every}

    def defaults(self) -> dict:
        return dict(self.default_params)

    # ---------------------------------------------------------------- the parts of a trial

    def _batches(self, data, seed: int, train: bool):
        if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor):
            return TensorBatches(data[0], data[1], self.batch_size, seed, shuffle=train)
        return data

    def _model(self, params: dict, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        takes_params = len(inspect.signature(self.model).parameters) > 0
        return self.model(params) if takes_params else self.model()

    def _optimizer(self, model: torch.nn.Module, params: dict) -> torch.optim.Optimizer:
        p = self.default_params | params
        if self.optimizer is not None:
            return self.optimizer(model.parameters(), p)
        momentum = 1.0 - p["one_minus_momentum"] if "one_minus_momentum" in p else p.get("momentum", 0.9)
        return torch.optim.SGD(model.parameters(), lr=float(p["lr"]), momentum=float(momentum),
                               weight_decay=float(p.get("weight_decay", 0.0)))

    def _n_steps(self, per_epoch: int, params: dict) -> int:
        if "steps" in params:
            return int(params["steps"])
        return int(self.steps) if self.steps is not None else max(1, round(self.epochs * per_epoch))

    def _schedule_spec(self, params: dict) -> dict:
        if isinstance(params.get("schedule"), dict):
            return dict(params["schedule"])
        lr = float((self.default_params | params)["lr"])
        return {k: (lr if v == "$lr" else v) for k, v in self.schedule.items()}

    def trial(self, params: dict, seed: int = 0, report: ReportHook | None = None, device=None) -> TrialResult:
        dev = resolve_device(device)
        result = TrialResult(params=dict(params), seed=seed, status="ok", target_acc=self.target,
                             device=device_name(dev))
        started = time.perf_counter()
        try:
            self._train(params, seed, report, result, started, dev)
        except Exception as err:  # a trial's failure is recorded, and the search goes on
            result.status = "failed"
            result.error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
        result.wall_s = time.perf_counter() - started
        return result

    def _train(self, params: dict, seed: int, report: ReportHook | None, result: TrialResult, started: float,
               dev: torch.device) -> None:
        unknown = set(params) - set(self.parameters or params) - {"steps"}
        if unknown:
            raise ValueError(f"unknown trial param(s) {', '.join(sorted(unknown))}; this workload takes "
                             f"{', '.join(self.parameters)} (or give it an `optimizer` function that reads any)")
        model = self._model(params, seed).to(dev)
        train = self._batches(self.train_data, seed, train=True)
        val = self._batches(self.val_data, seed, train=False)
        per_epoch = len(train)
        result.steps_per_epoch = per_epoch
        n_steps = self._n_steps(per_epoch, params)
        optimizer = self._optimizer(model, params)
        schedule = make_schedule(self._schedule_spec(params), n_steps)
        scheduler = FunctionLR(optimizer, schedule)
        loss_fn = self.loss_fn or F.cross_entropy

        def step(batch) -> torch.Tensor:
            x, y = (t.to(dev, non_blocking=True) for t in batch)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            return loss.detach()

        def evaluate(final: bool) -> tuple[float, None]:
            model.eval()
            value = float(self.evaluate(model, val)) if self.evaluate is not None else accuracy(model, val, dev)
            model.train()
            return value, None  # the workload's metric, on its validation data; no test split

        plan = Plan(n_steps=n_steps, steps_per_epoch=per_epoch, batch_size=self.batch_size,
                    eval_every=self.eval_every or max(1, n_steps // 10), diverge_factor=self.diverge_factor,
                    target=self.target, direction=self.direction,
                    loss_dtype=torch.float32 if dev.type == "mps" else torch.float64)  # MPS has no float64
        trainee = Trainee(step=step, evaluate=evaluate, lr=lambda _: optimizer.param_groups[0]["lr"], device=dev)
        run_loop(trainee, batches(train, n_steps), plan, [result], LoopState.fresh(plan, 1, dev), started=started,
                 report=report)

    # ---------------------------------------------------------------- range tests

    @property
    def supports_range_test(self) -> bool:
        return True

    def range_test_subject(self, seed: int, device=None) -> RangeTestParts:
        params = dict(self.default_params)
        model = self._model(params, seed).to(resolve_device(device))
        train = self._batches(self.train_data, seed, train=True)
        # accuracy along the test only where accuracy is the metric; otherwise the strategies read the loss
        val = self._batches(self.val_data, seed, False) if self.evaluate is None else None
        return RangeTestParts(model, self._optimizer(model, params), train, val, self.loss_fn, len(train),
                              self._n_steps(len(train), {}))
