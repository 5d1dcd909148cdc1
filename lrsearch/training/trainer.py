"""One trial: train a task's model under given params and seed, and return its record.

What `train_s` counts: the seconds spent in training steps (forward, backward, optimizer,
schedule, augmentation, lookahead; a self-tuning optimizer's extra state and slower steps, and
its switch to the weights it evaluates), measured between device synchronisations at each
evaluation; evaluation itself (`eval_s`, test-time augmentation and Schedule-Free's BatchNorm
recalibration included), model construction, data upload and warm-up are left out. On CUDA,
a few steps and one pass of every evaluation run first on the trial's model, whose initial
state is then restored (cuDNN autotuning, compilation), reported as `warmup_s`. `wall_s` is
everything from the call to the return. airbench's clock would be `train_s` plus the last
evaluation.

The step loop never synchronises with the device except at evaluations: the running loss
is summed on the device and read once per evaluation interval.

`prepare_task` makes what a task's trials share, once per process: its data on the device and,
for a fine-tuning task, the pretrained weights (cached on disk, see pretrain.py). `train` calls it
itself, so a bare `train` works; the pretraining's seconds are never part of a trial's `train_s`.
"""

from __future__ import annotations

import contextlib
import copy
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from lrsearch.training import pretrain, self_tuning
from lrsearch.training.checkpoint import Checkpointing, fingerprint
from lrsearch.training.data import (
    DeviceLoader,
    load_cifar10,
    resolve_source,
    select_classes,
    stratified_split,
    stratified_subset,
    to_device,
)
from lrsearch.training.loop import (
    LoopState,
    Plan,
    ReportHook,
    Trainee,
    accuracy,
    batches,
    chance_loss,
    run_loop,
    sync,
)
from lrsearch.training.models import build_model, head_parameter_names, with_backbone_lr_mult
from lrsearch.training.progress import LOG, PROGRESS, Bar
from lrsearch.training.schedules import FunctionLR, make_schedule
from lrsearch.training.tasks import Task, pretrain_task, schedule_spec, trial_settings

STATUSES = ("ok", "diverged", "pruned", "failed")


@dataclass
class TrialResult:
    params: dict
    seed: int
    status: str  # one of STATUSES
    curve: list[dict] = field(default_factory=list)  # rows: step, epoch, samples, lr, train_loss, val_acc, test_acc, train_s, wall_s
    steps: int = 0
    train_s: float = 0.0
    wall_s: float = 0.0
    warmup_s: float = 0.0
    eval_s: float = 0.0  # seconds in evaluations (TTA included), apart from train_s
    final_val_acc: float | None = None
    final_test_acc: float | None = None
    best_val_acc: float | None = None
    time_to_target_s: float | None = None
    steps_to_target: int | None = None
    target_acc: float | None = None
    device: str = ""
    error: str | None = None
    steps_per_epoch: int = 0
    step_losses: list[float] | None = None  # every step's training loss, when asked for (range tests)
    resumed_from: list[int] = field(default_factory=list)  # the steps of the checkpoints this trial went on from
    checkpoint_s: float = 0.0  # seconds spent writing checkpoints (outside train_s and eval_s)
    notes: dict = field(default_factory=dict)  # what the workload adds about the trial, stored in its `extra`

    @property
    def value(self) -> float:
        """What a search maximises: the last validation accuracy (test accuracy when the task has
        no validation split). A diverged or failed trial scores 0.0: its model is not usable."""
        if self.status in ("diverged", "failed") or self.final_val_acc is None:
            return 0.0
        return self.final_val_acc

    def to_dict(self) -> dict:
        return asdict(self) | {"value": self.value}


@dataclass
class TaskData:
    """A task's splits, normalised and resident on the device, shared by all its trials."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: torch.Tensor | None
    test_x: torch.Tensor
    test_y: torch.Tensor
    n_classes: int = 0  # from the labels (the data's, after any class selection): the model's head and chance loss


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return str(device)
    import platform
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


_DATA_FIELDS = ("classes", "train_subset", "val_size", "test_subset", "split_seed", "normalization", "precision", "channels_last")


def prepare_data(task: Task, device: torch.device, source: str | None = None) -> TaskData:
    """The task's splits on the device, built once per (data fields, device, source) and reused."""
    return _prepare_data(tuple(getattr(task, f) for f in _DATA_FIELDS), device, source)


@lru_cache(maxsize=2)
def _prepare_data(key: tuple, device: torch.device, source: str | None) -> TaskData:
    task = SimpleNamespace(**dict(zip(_DATA_FIELDS, key)))
    data = load_cifar10(source)
    train_images, train_labels = data.train_images, data.train_labels
    test_images, test_labels = data.test_images, data.test_labels
    if task.classes:
        train_images, train_labels = select_classes(train_images, train_labels, task.classes)
        test_images, test_labels = select_classes(test_images, test_labels, task.classes)
    if task.train_subset:
        idx = stratified_subset(train_labels, task.train_subset, task.split_seed)
        train_images, train_labels = train_images[idx], train_labels[idx]
    val_images = val_labels = None
    if task.val_size:
        keep, held = stratified_split(train_labels, task.val_size, task.split_seed)
        val_images, val_labels = train_images[held], train_labels[held]
        train_images, train_labels = train_images[keep], train_labels[keep]
    if task.test_subset:
        idx = stratified_subset(test_labels, task.test_subset, task.split_seed)
        test_images, test_labels = test_images[idx], test_labels[idx]

    pixels = train_images.astype(np.float64)
    if task.normalization == "pixel_mean":  # Caffe's mean image: per-pixel mean, no scaling
        mean, std = pixels.mean(0).transpose(2, 0, 1), None
    else:
        mean = pixels.mean((0, 1, 2))[:, None, None]
        std = pixels.std((0, 1, 2))[:, None, None]
    dtype = torch.bfloat16 if task.precision == "bf16" and device.type == "cuda" else torch.float32

    def put(images, labels):
        if images is None:
            return None, None
        return (to_device(images, device, mean, std, dtype, task.channels_last), torch.from_numpy(labels).to(device))

    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    return TaskData(*put(train_images, train_labels), *put(val_images, val_labels), *put(test_images, test_labels),
                    n_classes=n_classes)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, autocast,
             tta_level: int = 0) -> float:
    """Accuracy of `model` on (x, y). With test-time augmentation (airbench94's), the logits are averaged
    over views: tta_level 1, the image and its mirror; 2, half that pair and half the pair of each of
    two 1-pixel shifts (up-left, down-right; reflect padding)."""
    model.eval()
    slices = ((x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size))
    acc = accuracy(lambda v: _tta_logits(model, v, tta_level), slices, autocast)
    model.train()
    return acc


def _tta_logits(model: torch.nn.Module, x: torch.Tensor, tta_level: int) -> torch.Tensor:
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(v).float() + 0.5 * model(v.flip(3).contiguous(memory_format=layout)).float()

    if tta_level == 0:
        return model(x).float()
    if tta_level == 1:
        return mirrored(x)
    h, w = x.shape[2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[:, :, :h, :w], padded[:, :, 2:, 2:]]
    shifted_logits = torch.stack([mirrored(v.contiguous(memory_format=layout)) for v in shifted]).mean(0)
    return 0.5 * mirrored(x) + 0.5 * shifted_logits


class Lookahead:
    """airbench94's lookahead (after hlb-CIFAR10): every `every` steps the averaged weights move towards
    the model's, `avg = decay * avg + (1 - decay) * weights`, and the model takes the average, with
    decay = 0.95**every * (step / total_steps)**3 (none early, the strongest at the end). `finish`
    leaves the average in the model. Covers every floating-point tensor of the state (BatchNorm's
    running statistics too)."""

    def __init__(self, model: torch.nn.Module, every: int, total_steps: int):
        self.every, self.total_steps = every, total_steps
        self.live = [t for t in model.state_dict().values() if t.is_floating_point()]
        self.average = [t.detach().clone() for t in self.live]

    def decay(self, step: int) -> float:
        return 0.95 ** self.every * (step / self.total_steps) ** 3

    @torch.no_grad()
    def step(self, step: int) -> None:
        if step % self.every == 0:
            torch._foreach_lerp_(self.average, self.live, 1.0 - self.decay(step))
            torch._foreach_copy_(self.live, self.average)

    @torch.no_grad()
    def finish(self) -> None:
        torch._foreach_copy_(self.live, self.average)


def steps_per_epoch(task: Task, device: str | torch.device | None = None, data_source: str | None = None) -> int:
    """Training steps in one epoch of `task`: its training split (as prepared, subsets and held-out images
    taken out) in whole batches."""
    return len(prepare_data(task, resolve_device(device), data_source).train_y) // task.batch_size


def total_steps(task: Task, steps_per_epoch: int) -> int:
    if task.steps is not None:
        return int(task.steps)
    if task.epochs is not None:
        return max(1, round(task.epochs * steps_per_epoch))
    raise ValueError(f"task {task.name!r}: give a budget in `steps` or `epochs`")


# ---------------------------------------------------------------- preparing a task, and one trial


@dataclass
class PreparedTask:
    """What `prepare_task` made ready, and what it cost."""
    data_s: float  # seconds to load the data onto the device (0 when this process had it already)
    pretrained: Path | None = None  # the cached weights that the trials fine-tune
    pretrain_s: float | None = None  # the pretraining's train_s, from its record (whichever process made it)
    pretrain_wall_s: float | None = None  # ... and its whole run's seconds (evaluations, data upload too)


def prepare_task(task: Task, device: str | torch.device | None = None, data_source: str | None = None) -> PreparedTask:
    """Make everything `task`'s trials need, once per process, before them: the data decoded, split and on the
    device (kept for the trials in this process), and for a task with `pretrain`, the pretrained weights,
    trained on the first call on this machine and cached on disk (pretrain.py; processes starting together
    train them once). Later calls, here or in other processes, only look them up. Raises when the data cannot
    be read or the pretraining does not end "ok": no trial of the task could run."""
    dev = resolve_device(device)
    started = time.perf_counter()
    prepare_data(task, dev, data_source)
    prepared = PreparedTask(data_s=time.perf_counter() - started)
    if task.pretrain is not None:
        prepared.pretrained = _pretrained_weights(task, dev, data_source)
        record = pretrain.read_record(prepared.pretrained)
        prepared.pretrain_s, prepared.pretrain_wall_s = record["train_s"], record["wall_s"]
    return prepared


def _pretrained_weights(task: Task, dev: torch.device, data_source: str | None) -> Path:
    path = pretrain.weights_path(task, resolve_source(data_source), dev.type)
    if path.exists():  # written by rename: complete
        return path
    with pretrain.exclusive(path):
        if path.exists():  # another process made it while this one waited
            return path
        pre, seed = pretrain_task(task), int(task.pretrain.get("seed", 0))
        LOG.info("%s: pretraining (%s), cached as %s", task.name, pre.model, path)
        result, setup = _train(pre, {}, seed, dev, data_source=data_source)
        if result.status != "ok":
            raise RuntimeError(f"task {task.name!r}: pretraining {result.status}: {result.error}")
        record = result.to_dict() | {"task": asdict(pre), "made": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                                     "torch": torch.__version__, "format": pretrain.FORMAT_VERSION}
        pretrain.save(path, setup.model.state_dict(), record)
    return path


def train(task: Task, params: dict | None = None, seed: int = 0, *, device: str | torch.device | None = None,
          report: ReportHook | None = None, data_source: str | None = None, progress: bool = False,
          record_step_losses: bool = False, checkpoint: Checkpointing | None = None) -> TrialResult:
    """Run one trial. Never raises for a bad learning rate: divergence and errors are
    recorded in the result's status ("diverged", "failed") with the partial curve.

    params: any of tasks.TRIAL_PARAMETERS ("lr" fills the task's schedule; "schedule" names a family or
    gives a whole spec; momentum, weight decay, warm-up and the rest); an unknown name fails the trial.
    checkpoint: where and how often to write this trial's checkpoint (checkpoint.py). A checkpoint of the
    same trial found there is gone on from; the file is removed when the trial ends.
    """
    return _train(task, params, seed, resolve_device(device), report, data_source, progress, record_step_losses,
                  checkpoint)[0]


def _train(task: Task, params: dict | None, seed: int, dev: torch.device, report: ReportHook | None = None,
           data_source: str | None = None, progress: bool = False, record_step_losses: bool = False,
           checkpoint: Checkpointing | None = None) -> tuple[TrialResult, _Setup | None]:
    """`train`, also handing back what it trained (None when it failed before training)."""
    params = dict(params or {})
    started = time.perf_counter()
    result = TrialResult(params=params, seed=seed, status="ok", target_acc=task.target_acc, device=device_name(dev),
                         step_losses=[] if record_step_losses else None)
    setup = None
    try:
        setup = _run(task, params, seed, dev, report, data_source, progress, result, started, checkpoint)
    except Exception as err:  # a trial's failure is recorded, and the search goes on
        result.status = "failed"
        result.error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
    result.wall_s += time.perf_counter() - started  # (+: a resumed trial holds its earlier processes' seconds)
    if checkpoint is not None:  # the trial has ended (a kill or Ctrl-C never gets here): nothing to go on from
        checkpoint.remove()
    return result, setup


def _optimizer_eval(setup: _Setup) -> None:
    """An optimizer that evaluates other weights than it trains (schedule-free, Defazio et al. 2024: its
    `optimizer.eval()` puts the averaged weights in the model) switches to them; torch's own have no `eval`."""
    if hasattr(setup.optimizer, "eval"):
        setup.optimizer.eval()


def _optimizer_train(setup: _Setup) -> None:
    """... and back to the weights it trains (`optimizer.train()`)."""
    if hasattr(setup.optimizer, "train"):
        setup.optimizer.train()


@dataclass
class _Setup:
    """What one trial trains with: model (and its compiled forward), loader, schedule, optimizer.

    `before_eval(setup)` runs before each evaluation, inside the training clock (AlgoPerf times its
    `prepare_for_eval`), `after_eval(setup)` after it, except after the last: the model ends as evaluated.
    `recalibrate(setup)`, where set, runs after the training clock stops and before the evaluation, counted in
    `eval_s` (Schedule-Free's BatchNorm statistics); `after_step()` after every optimizer step (DoG's averager).
    `averages`: the optimizer averages the weights itself, so the task's lookahead is left out."""
    model: torch.nn.Module
    forward: Callable
    loader: DeviceLoader
    n_steps: int
    schedule: Callable[[int], float]
    momentum: float
    weight_decay: float
    label_smoothing: float
    backbone_lr_mult: float
    autocast: Callable
    optimizer_name: str  # a torch optimizer (OPTIMIZERS) or a self-tuning one (self_tuning.BUILDERS)
    optimizer: torch.optim.Optimizer | None = None
    scheduler: FunctionLR | None = None
    before_eval: Callable[[_Setup], None] = _optimizer_eval
    after_eval: Callable[[_Setup], None] = _optimizer_train
    recalibrate: Callable[[_Setup], None] | None = None
    after_step: Callable[[], None] | None = None
    averages: bool = False

    def new_optimizer(self, task: Task) -> None:
        """The task's optimizer over the model's parameter groups, driven by the schedule, the backbone's
        groups at `backbone_lr_mult` x the LR. With `decoupled_wd` each group's decay is divided by its peak
        LR, so that the weights shrink by `weight_decay` per step at the peak whatever the LR (airbench's
        form); a group with `train_epochs` is frozen after them. A self-tuning optimizer (the trial's `optimizer`
        names one of self_tuning.BUILDERS) is built as its authors recommend, with the hooks it needs."""
        groups = with_backbone_lr_mult(self.model, self.model.param_groups(self.weight_decay), self.backbone_lr_mult)
        torch_optimizer = self.optimizer_name in OPTIMIZERS
        peak = None
        if task.decoupled_wd:
            # a self-tuning optimizer's lr is a scale, not an LR: its decay is the one the task's own trial uses
            schedule = self.schedule if torch_optimizer else make_schedule(schedule_spec(task, {}), self.n_steps)
            peak = max(schedule(i) for i in range(self.n_steps))
        for group in groups:
            if "train_epochs" in group:
                group["frozen_from"] = round(group.pop("train_epochs") * len(self.loader))
            if peak and group["lr_mult"]:
                group["weight_decay"] = self.weight_decay / (peak * group["lr_mult"])
        if torch_optimizer:
            self.optimizer = make_optimizer(task, groups, self.schedule(0), self.momentum, self.optimizer_name)
        else:
            self._new_self_tuning(task, groups)
        self.scheduler = FunctionLR(self.optimizer, self.schedule)

    def _new_self_tuning(self, task: Task, groups: list[dict]) -> None:
        """The trial's self-tuning optimizer over `groups`, and its hooks (self_tuning.SelfTuned)."""
        base, options = OPTIMIZERS["adamw" if task.optimizer in ("adam", "adamw") else "sgd"]  # Mechanic's base
        first = self.schedule(0)
        # Prodigy and D-Adaptation refuse an lr of 0 at construction, which a warm-up from 0 starts with: they are
        # built at the schedule's peak, and FunctionLR sets step 0's lr (0) before the first step.
        construct = first if first > 0 else max(self.schedule(i) for i in range(self.n_steps))
        if first == 0 and self.optimizer_name == "dadapt-sgd" and self.n_steps > 1:
            # DAdaptSGD takes its gradient-norm scale g0 from the first step's groups with lr > 0
            # (dadapt_sgd.py: g0_norm), and divides by it: a warm-up from 0 starts at its second step's lr.
            schedule, second = self.schedule, self.schedule(1)
            self.schedule = lambda i: second if i == 0 else schedule(i)
        context = self_tuning.BuildContext(task, self.model, construct, self.momentum, self.n_steps,
                                           warms_up=any(self.schedule(i) > first for i in range(self.n_steps)),
                                           base=(base, options(task, self.momentum)))
        tuned = self_tuning.build(self.optimizer_name, groups, context)
        self.optimizer, self.after_step, self.averages = tuned.optimizer, tuned.after_step, tuned.averages
        if tuned.swap_in is not None:
            self.before_eval = lambda setup: tuned.swap_in()
            self.after_eval = lambda setup: tuned.swap_out()
        self.recalibrate = _recalibrate_batchnorm if tuned.recalibrate_bn else None

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            loss = F.cross_entropy(self.forward(x), y, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.after_step is not None:
            self.after_step()
        self.scheduler.step()
        return loss.detach()


def _recalibrate_batchnorm(setup: _Setup) -> None:
    """BatchNorm statistics for the weights the optimizer evaluates (self_tuning.recalibrate_batchnorm), from the
    first training images in stored order, un-augmented, batch by batch: the same images at every evaluation,
    and the loader's shuffle and augmentation untouched. The eager model: a compiled one would recompile."""
    images, size = setup.loader.images, setup.loader.batch_size
    n = min(len(images), self_tuning.RECALIBRATION_BATCHES * size)
    self_tuning.recalibrate_batchnorm(setup.model, (images[i:i + size] for i in range(0, n, size)), setup.autocast)


def _sgd_options(task: Task, momentum: float) -> dict:
    return {"momentum": momentum, "nesterov": task.nesterov and momentum > 0}


def _adam_options(task: Task, momentum: float) -> dict:
    return {"betas": (momentum, task.beta2), "eps": task.eps}


def _torch_defaults(task: Task, momentum: float) -> dict:
    return {}


# name -> (torch optimizer, its options from the task and the trial's momentum). Weight decay is each group's
# own: L2 (added to the gradient) for all but AdamW, which decouples it (p -= lr * weight_decay * p).
OPTIMIZERS = {"sgd": (torch.optim.SGD, _sgd_options), "adam": (torch.optim.Adam, _adam_options),
              "adamw": (torch.optim.AdamW, _adam_options), "rmsprop": (torch.optim.RMSprop, _torch_defaults),
              "adagrad": (torch.optim.Adagrad, _torch_defaults), "adadelta": (torch.optim.Adadelta, _torch_defaults)}


def make_optimizer(task: Task, groups: list[dict], lr: float, momentum: float,
                   name: str | None = None) -> torch.optim.Optimizer:
    """The task's torch optimizer (or `name`, a trial's own) over `groups` (each group's weight decay is its own):
    SGD takes the momentum and Nesterov flag; Adam and AdamW betas (momentum, task.beta2) and task.eps; the others
    their torch defaults. (Task.__post_init__ and trial_settings have checked the name.)"""
    optimizer, options = OPTIMIZERS[name or task.optimizer]
    return optimizer(groups, lr=lr, **options(task, momentum))


def trial_parts(task: Task, params: dict, seed: int = 0, device: str | torch.device | None = None,
                data_source: str | None = None) -> tuple[_Setup, TaskData]:
    """What one trial of `task` under `params` trains with (model, optimizer, training loader, schedule) and
    the task's data, built as `train` builds them, for callers that run their own loop (the range test)."""
    dev = resolve_device(device)
    data = prepare_data(task, dev, data_source)
    setup = _setup(task, params, seed, dev, data, data_source)
    setup.new_optimizer(task)
    return setup, data


def _setup(task: Task, params: dict, seed: int, dev: torch.device, data: TaskData,
           data_source: str | None = None) -> _Setup:
    settings = trial_settings(task, params)
    torch.manual_seed(seed)
    model = build_model(task.model, num_classes=data.n_classes, train_images=data.train_x.float())
    if task.pretrain is not None:  # the pretrained backbone; the head keeps its fresh, seeded weights
        weights = pretrain.load(_pretrained_weights(task, dev, data_source))
        head = head_parameter_names(model)
        model.load_state_dict({k: v for k, v in weights.items() if k not in head}, strict=False)
    model = model.to(dev)
    if task.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = DeviceLoader(data.train_x, data.train_y, task.batch_size, augment=task.augment, pad=task.translate,
                          flip=task.flip, seed=seed)
    n_steps = settings.steps if settings.steps is not None else total_steps(task, len(loader))
    use_bf16 = task.precision == "bf16" and dev.type == "cuda"

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16)

    forward = torch.compile(model) if task.compile and dev.type == "cuda" else model
    return _Setup(model, forward, loader, n_steps, make_schedule(settings.schedule, n_steps), settings.momentum,
                  settings.weight_decay, settings.label_smoothing, settings.backbone_lr_mult, autocast,
                  settings.optimizer)


def _warm_up(task: Task, setup: _Setup, data: TaskData, seed: int) -> None:
    """On CUDA: a few steps and every evaluation shape on the trial's own model, from a loader built like
    the trial's (same augmentation path, same memory layout), then the model's initial state restored.
    cuDNN autotuning and compilation (train and eval graphs) thus stay out of `train_s`."""
    torch.backends.cudnn.benchmark = True
    initial = copy.deepcopy(setup.model.state_dict())
    setup.new_optimizer(task)
    loader = DeviceLoader(data.train_x, data.train_y, task.batch_size, augment=task.augment, pad=task.translate,
                          flip=task.flip, seed=seed)
    for (x, y), _ in zip(loader, range(3)):
        setup.step(x, y)
    for x, y in ((data.val_x, data.val_y), (data.test_x, data.test_y)):
        if x is not None:
            evaluate(setup.forward, x, y, task.eval_batch_size, setup.autocast, task.tta_level)
    sync(data.train_x.device)
    setup.model.load_state_dict(initial)


def _run(task: Task, params: dict, seed: int, dev: torch.device, report: ReportHook | None,
         data_source: str | None, progress: bool, result: TrialResult, started: float,
         checkpoint: Checkpointing | None = None) -> _Setup:
    data = prepare_data(task, dev, data_source)
    setup = _setup(task, params, seed, dev, data, data_source)
    result.steps_per_epoch = len(setup.loader)
    if dev.type == "cuda":
        t0 = time.perf_counter()
        _warm_up(task, setup, data, seed)
        result.warmup_s = time.perf_counter() - t0
    setup.new_optimizer(task)
    use_lookahead = task.lookahead_every and not setup.averages  # an optimizer that averages brings its own
    lookahead = Lookahead(setup.model, task.lookahead_every, setup.n_steps) if use_lookahead else None
    plan = _plan(task, setup, data)
    loop = LoopState.fresh(plan, 1, dev)
    if checkpoint is not None and not _checkpointable(setup):
        LOG.warning("%s: optimizer %s keeps state outside its state_dict (an averager or a weight swap): "
                    "trained without checkpoints", task.name, setup.optimizer_name)
        checkpoint = None
    if checkpoint is not None:
        checkpoint.trial = fingerprint({"task": asdict(task), "params": params, "seed": seed})
        state = checkpoint.read(checkpoint.trial)
        if state is not None:
            try:
                loop = _restore(state, setup, lookahead, result, dev, plan)
                LOG.info("%s: going on from the checkpoint at step %d (%s)", task.name, loop.step, checkpoint.path)
            except Exception as err:  # a checkpoint of this trial that does not fit it: start over, afresh
                checkpoint.warn(f"does not fit this trial ({type(err).__name__}: {err})")
                checkpoint.remove()
                return _run(task, params, seed, dev, report, data_source, progress, result, started, checkpoint)
    # compiled: every graph was built in the warm-up, so a recompilation in the timed loop is an error
    stance = torch.compiler.set_stance("fail_on_recompile") if setup.forward is not setup.model else contextlib.nullcontext()
    with stance:
        bar = ProgressBar(setup.n_steps, task.name) if progress else None
        run_loop(_trainee(task, setup, data, lookahead), batches(setup.loader, setup.n_steps - loop.step), plan,
                 [result], loop, started=started, report=report, bar=bar,
                 record_step_losses=result.step_losses is not None, checkpoint=checkpoint,
                 checkpoint_state=lambda state, wall_s: _checkpoint_state(setup, lookahead, state, result,
                                                                          checkpoint.trial, wall_s))
        if bar is not None:
            bar.close()
    return setup


def _plan(task: Task, setup: _Setup, data: TaskData) -> Plan:
    return Plan(n_steps=setup.n_steps, steps_per_epoch=len(setup.loader), batch_size=task.batch_size,
                eval_every=task.eval_every, diverge_factor=task.diverge_factor, best_loss=chance_loss(data.n_classes),
                seconds=task.seconds, target=task.target_acc)


def _trainee(task: Task, setup: _Setup, data: TaskData, lookahead: Lookahead | None) -> Trainee:
    """The task's model as the one loop trains it: the setup's step, the lookahead after it, and an evaluation on
    the validation split (where the task has one) and the test split, with test-time augmentation at the end."""
    n_steps, has_val = setup.n_steps, data.val_x is not None

    def after_step(step: int) -> None:
        if lookahead is not None:
            lookahead.step(step)
            if step == n_steps:
                lookahead.finish()

    def evaluate_splits(final: bool) -> tuple[float | None, float]:
        tta = task.tta_level if final else 0  # airbench: the plain model during training
        val = (evaluate(setup.forward, data.val_x, data.val_y, task.eval_batch_size, setup.autocast, tta)
               if has_val else None)
        return val, evaluate(setup.forward, data.test_x, data.test_y, task.eval_batch_size, setup.autocast, tta)

    return Trainee(step=lambda batch: setup.step(*batch), evaluate=evaluate_splits, lr=setup.schedule,
                   device=data.train_x.device, after_step=after_step, before_eval=lambda: setup.before_eval(setup),
                   after_eval=lambda: setup.after_eval(setup),
                   recalibrate=(lambda: setup.recalibrate(setup)) if setup.recalibrate is not None else lambda: None)


# what a checkpoint keeps of the result; the rest is the trial's definition, or set again on resuming
_RESUMED_FIELDS = ("curve", "steps", "train_s", "warmup_s", "eval_s", "final_val_acc", "final_test_acc", "best_val_acc",
                   "time_to_target_s", "steps_to_target", "step_losses", "resumed_from", "checkpoint_s")


def _checkpointable(setup: _Setup) -> bool:
    """Whether a checkpoint holds the whole training state: every torch optimizer, and a self-tuning one whose
    state is all in its state_dict (no averager called after each step, no weights swapped in to evaluate)."""
    return setup.after_step is None and setup.before_eval is _optimizer_eval and setup.after_eval is _optimizer_train


def _checkpoint_state(setup: _Setup, lookahead: Lookahead | None, loop: LoopState, result: TrialResult,
                      trial: str, wall_s: float) -> dict:
    cuda = loop.loss_sum.device.type == "cuda"
    return {
        "fingerprint": trial, "step": loop.step,
        "model": setup.model.state_dict(), "optimizer": setup.optimizer.state_dict(),
        "scheduler": {"last_epoch": setup.scheduler.last_epoch, "step_count": setup.scheduler._step_count,
                      "last_lr": list(setup.scheduler._last_lr)},
        "loader": setup.loader.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if cuda else []},
        "lookahead": [t.cpu() for t in lookahead.average] if lookahead is not None else None,
        "loop": {"best_loss": loop.best_loss[0], "loss_sum": loop.loss_sum.cpu(), "interval_steps": loop.interval_steps,
                 "step_losses": torch.stack(loop.step_losses).cpu() if loop.step_losses else None},
        "result": {k: copy.deepcopy(getattr(result, k)) for k in _RESUMED_FIELDS} | {"wall_s": wall_s},
    }


def _restore(state: dict, setup: _Setup, lookahead: Lookahead | None, result: TrialResult, dev: torch.device,
             plan: Plan) -> LoopState:
    """Put a checkpoint's state into a freshly built trial; returns the loop's state to go on from."""
    setup.model.load_state_dict(state["model"])
    setup.optimizer.load_state_dict(state["optimizer"])
    sched = state["scheduler"]
    setup.scheduler.last_epoch, setup.scheduler._step_count = sched["last_epoch"], sched["step_count"]
    setup.scheduler._last_lr = list(sched["last_lr"])
    setup.loader.load_state_dict(state["loader"])
    if (lookahead is None) != (state["lookahead"] is None):
        raise ValueError("lookahead on in one and off in the other")
    if lookahead is not None:
        with torch.no_grad():
            torch._foreach_copy_(lookahead.average, [t.to(dev) for t in state["lookahead"]])
    torch.set_rng_state(state["rng"]["torch"])
    if dev.type == "cuda" and state["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    saved = state["loop"]
    losses = saved["step_losses"]
    loop = LoopState(best_loss=[saved["best_loss"]], loss_sum=saved["loss_sum"].to(device=dev, dtype=plan.loss_dtype),
                     step=state["step"],
                 interval_steps=saved["interval_steps"], step_losses=list(losses.to(dev).unbind()) if losses is not None else [])
    for key, value in state["result"].items():
        setattr(result, key, value)
    result.resumed_from = [*result.resumed_from, loop.step]
    return loop


class ProgressBar:
    """`lrsearch train`'s progress: a bar on a terminal, and one log line per evaluation (see progress.py)."""

    def __init__(self, total: int, name: str):
        self.total, self.name = total, name
        self.bar = Bar(total, name)

    def update(self, step: int, loss: float, acc: float | None) -> None:
        info = f"loss {loss:.3f}" + (f"  test acc {acc:.3f}" if acc is not None else "")
        self.bar.update(completed=step, info=info)
        LOG.info("%s step %d/%d: %s", self.name, step, self.total, info, extra=PROGRESS)

    def close(self) -> None:
        self.bar.close()
