"""Tasks: a model + data + batch size + budget + evaluation interval + target accuracy +
optimiser defaults. A trial is a task trained under one set of params and a seed.

The learning rate enters through the task's schedule template: any value "$lr" in it
is replaced by the trial's `lr` (so `{"name": "one_cycle", "max_lr": "$lr"}` searches the
one-cycle peak). A trial may also name a schedule family (`"schedule": "cosine"`) or pass a
whole `schedule` spec. `TRIAL_PARAMETERS` lists every param a trial may set.

This module imports no torch (configs are validated without it); the name tables below are the
trainer's registries' keys, kept equal by the tests (test_models, test_train, test_schedules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from lrsearch.training.errors import InputError

# What a trial's params may hold: name -> meaning. Anything else fails the trial with a ValueError naming it.
TRIAL_PARAMETERS: dict[str, str] = {
    "lr": "peak learning rate: fills every \"$lr\" in the task's schedule template or a named family's spec",
    "momentum": "SGD's momentum, or Adam's / AdamW's beta1 (default: the task's `momentum`)",
    "one_minus_momentum": "1 - momentum (AlgoPerf's form, searched on a log scale); not together with momentum",
    "weight_decay": "weight decay: L2 for sgd/adam/rmsprop/adagrad/adadelta, decoupled for adamw",
    "label_smoothing": "label smoothing of the cross-entropy loss, 0 to 1",
    "warmup_frac": "fraction of the trial's steps in linear warm-up from 0, in front of any schedule "
                   "(schedules.with_warmup)",
    "pct_start": "one-cycle's (and warmup_linear_decay's) fraction of steps rising to the peak; others ignore it",
    "final_lr_factor": "final LR as a fraction of the peak: cosine's min_lr, one_cycle's last value, linear "
                       "decay's end_lr, warmup_linear_decay's end_factor; schedules without a final value ignore it",
    "schedule": "a family name (constant, cosine, one_cycle, linear_decay, or the task template's own), built "
                "from lr and the params above, or a whole spec dict for schedules.make_schedule",
    "backbone_lr_mult": "the backbone's LR = lr x this, the head's = lr (fastai's discriminative LRs)",
    "steps": "internal: this trial's budget in optimizer steps instead of the task's (range tests, budgets)",
    "optimizer": "the optimizer this trial trains with instead of the task's: a torch one (OPTIMIZER_NAMES) or one "
                 "that sets its own step size (SELF_TUNING_OPTIMIZERS, whose recommended lr and schedule it then "
                 "takes unless the trial gives its own)",
}

# A trial's `"schedule": "<family>"` starts from the task's template when it is of that family (keeping its
# settings), else from these. Peak at "$lr"; the ends at 0 unless final_lr_factor says otherwise.
SCHEDULE_FAMILIES: dict[str, dict] = {
    "constant": {"name": "constant", "lr": "$lr"},
    "cosine": {"name": "cosine", "base_lr": "$lr", "min_lr": 0.0},
    "one_cycle": {"name": "one_cycle", "max_lr": "$lr"},
    "linear_decay": {"name": "linear_decay", "start_lr": "$lr", "end_lr": 0.0},
}

# The keys of the trainer's registries (models.MODELS, trainer.OPTIMIZERS, schedules.SCHEDULES + "staged").
MODEL_NAMES = ("caffe_cifar10_full", "caffe_cifar10_full_sigmoid_bn", "fast", "tiny", "resnet8", "plain")
OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")
# Optimizers that set their own step size (built by training/self_tuning.py; their libraries are the `selftuning`
# extra), name -> the trial params their authors recommend. A trial that names one gets these where it gives
# none; the self-tuning strategies pass them all, so that the store records them. "lr" is a scale of the
# method's own step size, not a learning rate to tune; without "schedule" the task's own shape multiplies it.
SELF_TUNING_OPTIMIZERS: dict[str, dict] = {
    # schedulefree's README: no schedule needed; SGDScheduleFree's defaults lr=1.0, momentum=0.9
    "schedulefree-sgd": {"lr": 1.0, "schedule": "constant", "momentum": 0.9},
    # AdamWScheduleFree's defaults: lr=0.0025, betas=(0.9, 0.999)
    "schedulefree-adamw": {"lr": 0.0025, "schedule": "constant", "momentum": 0.9},
    # prodigyopt's README: "We recommend using lr=1.", and no scheduler or cosine annealing over the whole run
    "prodigy": {"lr": 1.0, "schedule": "cosine", "momentum": 0.9},
    # dadaptation's README: "Set the LR parameter to 1.0", "Use the same learning rate scheduler you would normally
    # use on the problem"; DAdaptSGD with the task's momentum, DAdaptAdam with its default betas (0.9, 0.999)
    "dadapt-sgd": {"lr": 1.0},
    "dadapt-adam": {"lr": 1.0, "momentum": 0.9},
    # dog's README: lr "The default value is 1.0 and changing it is not recommended"; no step-size decay (iterate
    # averaging instead)
    "dog": {"lr": 1.0, "schedule": "constant"},
    # mechanic's README: mechanize(torch.optim.SGD)(params, lr=1.0), "with any pytorch optimizer and schedule"
    "mechanic": {"lr": 1.0},
}
SCHEDULE_NAMES = ("constant", "multistep", "exponential", "linear_decay", "cosine", "one_cycle", "cyclic",
                  "warmup_linear_decay", "staged")
_CHOICES = {"model": MODEL_NAMES, "optimizer": OPTIMIZER_NAMES, "normalization": ("channel", "pixel_mean"),
            "flip": ("random", "alternating"), "precision": ("fp32", "bf16"), "tta_level": (0, 1, 2)}


@dataclass(frozen=True)
class Task:
    name: str
    model: str
    batch_size: int
    epochs: float | None = None  # training budget in epochs, or
    steps: int | None = None  # in optimizer steps (one of the two is required)
    seconds: float | None = None  # optional cap on training seconds (`train_s`), checked at evaluations
    eval_every: int = 100  # steps between evaluations (and divergence checks); the last step is always evaluated
    target_acc: float = 0.5  # the accuracy that `time_to_target_s` measures
    classes: tuple[int, ...] | None = None  # train/val/test restricted to these CIFAR-10 classes, relabelled 0..k-1
    train_subset: int | None = None  # stratified subset of the (class-restricted) training images, None = all
    val_size: int = 5000  # stratified validation split held out of the training images (0 = none)
    test_subset: int | None = None  # stratified subset of the test images, None = all
    split_seed: int = 0  # fixes the subset and validation split for every trial of the task
    lr: float = 0.01  # default learning rate when params give none
    momentum: float = 0.9  # SGD's momentum; Adam's and AdamW's beta1
    beta2: float = 0.999  # Adam's and AdamW's beta2 (torch's default)
    eps: float = 1e-8  # Adam's and AdamW's eps (torch's default)
    weight_decay: float = 5e-4
    nesterov: bool = False
    # sgd, adam, adamw, rmsprop, adagrad or adadelta (torch.optim). "adam" is torch's Adam, whose weight decay is
    # L2 (added to the gradient, then scaled by Adam's step); "adamw" decouples it (Loshchilov & Hutter 2019).
    optimizer: str = "sgd"
    label_smoothing: float = 0.0
    backbone_lr_mult: float = 1.0  # every parameter but the model's head trains at lr x this
    # pretraining for fine-tuning tasks: Task field overrides for the pretraining run (e.g. classes, epochs, lr,
    # schedule) and its "seed"; made once by trainer.prepare_task and cached on disk (see training/pretrain.py).
    # A trial then starts from those weights with a fresh head.
    pretrain: dict | None = None
    augment: bool = False  # random translation and horizontal flip, on the device (see data.DeviceLoader)
    translate: int = 4  # augmentation: shift by up to this many pixels (crop of the reflect-padded image)
    flip: str = "random"  # augmentation: "random" per image and epoch, or "alternating" (airbench94)
    tta_level: int = 0  # test-time augmentation at the last evaluation: 0 none, 1 mirror, 2 mirror + 1-pixel shifts
    lookahead_every: int = 0  # airbench's lookahead/EMA of the weights every this many steps (0 = off)
    decoupled_wd: bool = False  # weight_decay = each step's shrink at the schedule's peak, whatever the LR
    normalization: str = "channel"  # "channel" (mean/std per channel) or "pixel_mean" (Caffe's mean image)
    precision: str = "fp32"  # "fp32" or "bf16" (autocast on CUDA)
    channels_last: bool = False
    compile: bool = False  # torch.compile the model (CUDA only)
    eval_batch_size: int = 2000
    # a spec for schedules.make_schedule ("$lr" filled by the trial's lr), or a family name of SCHEDULE_FAMILIES
    schedule: dict = field(default_factory=lambda: {"name": "constant", "lr": "$lr"})
    diverge_factor: float = 4.0  # interval-mean loss above this multiple of its best = diverged (fastai uses 4)
    description: str = ""

    def __post_init__(self) -> None:
        """Checks every field whose wrong value can be seen without training, so that a typo in a config
        stops there (the message names the field, the value and what is allowed), not in every trial."""
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                self._invalid(name, f"expected one of {', '.join(map(str, allowed))}")
        if isinstance(self.schedule, str):
            if self.schedule not in SCHEDULE_FAMILIES:
                self._invalid("schedule", f"expected a spec dict or one of {', '.join(SCHEDULE_FAMILIES)}")
            object.__setattr__(self, "schedule", dict(SCHEDULE_FAMILIES[self.schedule]))
        elif not isinstance(self.schedule, dict) or self.schedule.get("name") not in SCHEDULE_NAMES:
            self._invalid("schedule", f"expected a dict whose name is one of {', '.join(SCHEDULE_NAMES)}")
        if self.epochs is None and self.steps is None:
            self._invalid("epochs", "give a training budget in `epochs` or `steps`")
        for name, low, high in (("batch_size", 1, math.inf), ("eval_every", 1, math.inf), ("beta2", 0.0, 1.0),
                                ("label_smoothing", 0.0, 1.0), ("backbone_lr_mult", 0.0, math.inf)):
            if not low <= getattr(self, name) < high:
                self._invalid(name, f"expected {low} <= {name} < {high}")
        if self.classes is not None:
            classes = tuple(int(c) for c in self.classes)
            if len(classes) < 2 or len(set(classes)) != len(classes) or not all(0 <= c < 10 for c in classes):
                self._invalid("classes", "expected at least two distinct CIFAR-10 labels 0..9")
            object.__setattr__(self, "classes", classes)
        if self.pretrain is not None:
            allowed = sorted({f.name for f in fields(self)} - {"name", "pretrain", "description"} | {"seed"})
            unknown = sorted(set(self.pretrain) - set(allowed))
            if unknown:
                self._invalid("pretrain", f"unknown key(s) {', '.join(unknown)}; expected Task fields or seed")
            pretrain_task(self)  # its own fields checked as any task's

    def _invalid(self, name: str, expected: str) -> None:
        raise InputError(f"task {self.name!r}: {name} {getattr(self, name)!r}: {expected}")

    def with_overrides(self, **overrides) -> Task:
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise InputError(f"task {self.name!r}: unknown field(s) {', '.join(sorted(unknown))}")
        return replace(self, **overrides)


def pretrain_task(task: Task) -> Task:
    """The task a fine-tuning task's pretraining trains: the task itself, its `pretrain` overrides applied. Its
    budget is the overrides' own (`epochs` or `steps`, no `seconds` cap unless given), never the fine-tuning's."""
    overrides = {k: v for k, v in task.pretrain.items() if k != "seed"}
    budget = {"steps": None, "epochs": None, "seconds": None} if {"epochs", "steps"} & set(overrides) else {}
    return replace(task, **({"name": f"{task.name}/pretrain", "pretrain": None, "backbone_lr_mult": 1.0} | budget
                            | overrides))


TASKS: dict[str, Task] = {
    "smoke": Task(
        name="smoke", model="tiny", batch_size=100, epochs=2, eval_every=10, target_acc=0.25,
        train_subset=2500, val_size=500, test_subset=1000, lr=0.05,
        description="tiny CNN, 2,000 train / 500 val / 1,000 test images, 2 epochs: seconds per trial on a CPU; for tests"),
    "cpu": Task(
        name="cpu", model="tiny", batch_size=100, epochs=3, eval_every=45, target_acc=0.45,
        train_subset=5500, val_size=1000, test_subset=1000, lr=0.05, augment=True,
        schedule={"name": "one_cycle", "max_lr": "$lr", "pct_start": 0.25, "anneal_strategy": "linear"},
        description="tiny CNN, 4,500 train / 1,000 val / 1,000 test images, 3 epochs one-cycle with augmentation: about 4 s per trial on 2 cores"),
    # airbench94's recipe (Jordan 2024: 94.01% in 9.9 epochs on 50,000 images). Its per-1024-examples
    # hyperparameters in our form (mean loss, torch SGD): lr 11.5 / (1 + 1 / (1 - 0.85)) = 1.5, weight
    # decay 0.0153 / (1 + 1 / (1 - 0.85)) per step, decoupled from the LR. 45,000 images train, 5,000
    # are the validation split the searches see (results/fast-net-gpu measures what that costs).
    # target_acc from data (results/fast-net-gpu, H200): the validation accuracy that 90% of 5 seeds reach at
    # the best LR, 90.44%, rounded down to 0.5 points. (airbench94 itself reaches 90.7% on this JPEG copy.)
    "gpu": Task(
        name="gpu", model="fast", batch_size=1024, epochs=10, eval_every=43, target_acc=0.90,
        val_size=5000, lr=1.5, momentum=0.85, nesterov=True, weight_decay=0.0153 / (1 + 1 / (1 - 0.85)),
        decoupled_wd=True, label_smoothing=0.2, augment=True, translate=2, flip="alternating", tta_level=2,
        lookahead_every=5, precision="bf16", channels_last=True, eval_batch_size=5000,
        schedule={"name": "warmup_linear_decay", "lr": "$lr", "pct_start": 0.23, "start_factor": 0.2,
                  "end_factor": 0.07},
        description="airbench94's fast net and recipe on CIFAR-10 (45,000 train / 5,000 val), 10 epochs, bf16, "
                    "TTA at the end"),
    "clr-paper": Task(
        name="clr-paper", model="caffe_cifar10_full", batch_size=100, steps=70_000, eval_every=1000,
        target_acc=0.814, val_size=0, lr=0.001, momentum=0.9, weight_decay=0.004, normalization="pixel_mean",
        eval_batch_size=10_000,
        schedule={"name": "multistep", "base_lr": "$lr", "milestones": [60_000, 65_000], "gamma": 0.1},
        description="the CLR paper's Caffe CIFAR-10 'full' net on all 50,000 training images, batch 100"),
    # Caffe's cifar10_full_sigmoid_solver_bn.prototxt: base_lr 0.001, momentum 0.9, no weight decay (commented
    # out there), a constant LR ("step" with gamma 1), 60,000 iterations, batch 111 (its train_test prototxt).
    "clr-paper-sigmoid-bn": Task(
        name="clr-paper-sigmoid-bn", model="caffe_cifar10_full_sigmoid_bn", batch_size=111, steps=60_000,
        eval_every=1000, target_acc=0.608, val_size=0, lr=0.001, momentum=0.9, weight_decay=0.0,
        normalization="pixel_mean", eval_batch_size=10_000, schedule={"name": "constant", "lr": "$lr"},
        description="the CLR paper's Caffe CIFAR-10 net with sigmoid units and batch normalisation, batch 111"),
    # ---- CPU workloads that differ in what makes the LR hard, each out of the noise (issue 34): 5,000 validation
    # images (a reading's standard error at most 0.7 points), 2 or 3 evaluations, at most about 8 s of training on one
    # core (seconds: steps x results/calibration's seconds per step, one torch thread, Intel Xeon, 2026-12-03).
    # Each target is the one reporting/noise.py suggests from the workload's table (results/tables/<task>: 32
    # log-spaced LRs x 10 seeds, `lrsearch tabulate experiments/tables/<task>.toml`): the highest, to 0.5 points,
    # at least 3 standard errors below the best LR's mean and reached there by at least 90% of seeds; with it the
    # median LR falls short (results/tables/README.md). Results recorded before 2026-12-03 (results/suite-cpu,
    # results/<task>-table) were trained under the earlier, shorter definitions with 500 validation images.
    # resnet-adamw: best mean 0.458 (lr 0.0035), target 0.435
    "resnet-adamw": Task(
        name="resnet-adamw", model="resnet8", batch_size=100, epochs=3, eval_every=40, target_acc=0.435,
        train_subset=9000, val_size=5000, test_subset=500, lr=0.003, optimizer="adamw", momentum=0.9,
        weight_decay=0.05, schedule={"name": "cosine", "base_lr": "$lr", "min_lr": 0.0, "warmup_frac": 0.1},
        description=("ResNet-8 (BatchNorm, 78k params), AdamW (decoupled weight decay 0.05 on conv/linear weights), 10% "
                     "linear warm-up then cosine to 0; 4,000 train / 5,000 val / 500 test images, 3 epochs (120 steps, "
                     "about 8.0 s on one core), 3 evaluations")),
    # caffe-cpu: lengthened from 17 steps (best mean 18.5%, chance 10%: it did not measure the LR) to 60; best mean
    # 0.255 (lr 0.0062), target 0.235
    "caffe-cpu": Task(
        name="caffe-cpu", model="caffe_cifar10_full", batch_size=100, epochs=1, eval_every=30, target_acc=0.235,
        train_subset=11000, val_size=5000, test_subset=500, lr=0.001, momentum=0.9, weight_decay=0.004,
        normalization="pixel_mean", schedule={"name": "constant", "lr": "$lr"},
        description=("the CLR paper's Caffe CIFAR-10 'full' net at the paper's setting (SGD, momentum 0.9, weight decay "
                     "0.004, a fixed LR, Caffe's mean image); 6,000 train / 5,000 val / 500 test images, 1 epoch (60 "
                     "steps of 100, about 7.9 s on one core), 2 evaluations")),
    # nobn: best mean 0.455 (lr 0.044), target 0.430
    "nobn": Task(
        name="nobn", model="plain", batch_size=100, epochs=3, eval_every=50, target_acc=0.43,
        train_subset=10000, val_size=5000, test_subset=500, lr=0.01, momentum=0.9, weight_decay=5e-4,
        schedule={"name": "constant", "lr": "$lr"},
        description=("a plain conv net without BatchNorm (TinyNet's convolutions, 34k params), SGD momentum 0.9, constant "
                     "LR; 5,000 train / 5,000 val / 500 test images, 3 epochs (150 steps, about 6.4 s on one core), 3 "
                     "evaluations")),
    # finetune: best mean 0.723 (lr 0.116), target 0.700
    "finetune": Task(
        name="finetune", model="tiny", batch_size=100, epochs=2.6, eval_every=65, target_acc=0.70,
        classes=(5, 6, 7, 8, 9), train_subset=10000, val_size=5000, test_subset=500, lr=0.05, momentum=0.9,
        weight_decay=5e-4, backbone_lr_mult=0.1, schedule={"name": "constant", "lr": "$lr"},
        pretrain={"classes": (0, 1, 2, 3, 4), "train_subset": 10_000, "val_size": 500, "test_subset": 500, "epochs": 3,
                  "eval_every": 95, "lr": 0.1, "augment": True,
                  "schedule": {"name": "one_cycle", "max_lr": "$lr", "pct_start": 0.25, "anneal_strategy": "linear"},
                  "seed": 0},
        description=("TinyNet pretrained on CIFAR classes 0-4 (9,500 images, 3 epochs one-cycle with augmentation, once "
                     "per machine by prepare_task, cached in .cache/pretrained/: ~2 minutes at half speed), fine-tuned on "
                     "classes 5-9 with a fresh head, the backbone at backbone_lr_mult (0.1) x the LR, SGD momentum 0.9, "
                     "constant LR; 5,000 train / 5,000 val / 500 test images, 2.6 epochs (130 steps, about 7.6 s on one "
                     "core), 2 evaluations")),
}


def get_task(name: str, **overrides) -> Task:
    if name not in TASKS:
        raise InputError(f"task {name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[name].with_overrides(**overrides) if overrides else TASKS[name]


@dataclass(frozen=True)
class TrialSettings:
    """What one trial trains with beyond the task: its params resolved against the task's defaults."""
    schedule: dict  # a spec for schedules.make_schedule
    momentum: float  # SGD's momentum, Adam's beta1
    weight_decay: float
    label_smoothing: float
    backbone_lr_mult: float
    steps: int | None  # the trial's own budget in steps, None = the task's
    optimizer: str  # the task's, or the trial's own (a torch name or a SELF_TUNING_OPTIMIZERS one)


def trial_settings(task: Task, params: dict) -> TrialSettings:
    """Resolve a trial's params (see TRIAL_PARAMETERS) against `task`. ValueError for an unknown name, an unknown
    optimizer, or momentum given twice; the trainer records it as the trial's failure. A self-tuning optimizer's
    recommended params (SELF_TUNING_OPTIMIZERS) fill what the trial leaves out."""
    unknown = sorted(set(params) - set(TRIAL_PARAMETERS))
    if unknown:
        raise InputError(f"trial params: unknown {', '.join(map(repr, unknown))}; the trainer understands "
                         f"{', '.join(TRIAL_PARAMETERS)}")
    if "momentum" in params and "one_minus_momentum" in params:
        raise InputError("trial params: give momentum or one_minus_momentum, not both")
    optimizer = params.get("optimizer", task.optimizer)
    if optimizer not in OPTIMIZER_NAMES and optimizer not in SELF_TUNING_OPTIMIZERS:
        raise InputError(f"trial params: optimizer {optimizer!r}: expected one of "
                         f"{', '.join([*OPTIMIZER_NAMES, *SELF_TUNING_OPTIMIZERS])}")
    recommended = dict(SELF_TUNING_OPTIMIZERS.get(optimizer, {}))
    if "one_minus_momentum" in params:
        recommended.pop("momentum", None)
    params = recommended | params
    momentum = 1.0 - float(params["one_minus_momentum"]) if "one_minus_momentum" in params else float(
        params.get("momentum", task.momentum))
    return TrialSettings(schedule_spec(task, params), momentum,
                         float(params.get("weight_decay", task.weight_decay)),
                         float(params.get("label_smoothing", task.label_smoothing)),
                         float(params.get("backbone_lr_mult", task.backbone_lr_mult)),
                         int(params["steps"]) if "steps" in params else None, optimizer)


# The parameter each family's final_lr_factor sets, as a function of the spec (peak at the family's LR key).
def _final_value(spec: dict, factor: float) -> dict:
    name = spec["name"]
    if name == "cosine":
        return {"min_lr": spec["base_lr"] * factor}
    if name == "linear_decay":
        return {"end_lr": spec["start_lr"] * factor}
    if name == "warmup_linear_decay":
        return {"end_factor": factor}
    if name == "one_cycle":  # torch's OneCycleLR ends at max_lr / (div_factor * final_div_factor)
        return {"final_div_factor": math.inf if factor == 0 else 1.0 / (spec.get("div_factor", 25.0) * factor)}
    return {}  # constant, multistep, exponential, cyclic, staged: no final value to set


def schedule_spec(task: Task, params: dict) -> dict:
    """The trial's schedule spec: params["schedule"] (a family name or a whole spec) if given, else the task's
    template; every "$lr" filled with the trial's lr; then pct_start, final_lr_factor and warmup_frac applied
    where the schedule takes them (TRIAL_PARAMETERS says which)."""
    chosen = params.get("schedule", task.schedule)
    if isinstance(chosen, str):
        if chosen == task.schedule.get("name"):
            chosen = task.schedule
        elif chosen in SCHEDULE_FAMILIES:
            chosen = SCHEDULE_FAMILIES[chosen]
        else:
            raise InputError(f"trial params: schedule {chosen!r}: expected a spec dict or one of "
                             f"{', '.join(dict.fromkeys([*SCHEDULE_FAMILIES, task.schedule['name']]))}")
    lr = float(params.get("lr", task.lr))
    spec = {k: (lr if v == "$lr" else v) for k, v in dict(chosen).items()}
    if "pct_start" in params and spec["name"] in ("one_cycle", "warmup_linear_decay"):
        spec["pct_start"] = float(params["pct_start"])
    if "final_lr_factor" in params:
        spec |= _final_value(spec, float(params["final_lr_factor"]))
    if "warmup_frac" in params:
        spec.pop("warmup_iters", None)
        spec["warmup_frac"] = float(params["warmup_frac"])
    return spec
