"""The trainer on the real (shared) CIFAR-10 data, with the smoke task."""

import math

import pytest

from lrsearch.training.loop import chance_loss, diverged
from lrsearch.training.schedules import make_schedule
from lrsearch.training.tasks import OPTIMIZER_NAMES, TRIAL_PARAMETERS, get_task, schedule_spec, trial_settings
from lrsearch.training.trainer import train

pytestmark = pytest.mark.usefixtures("jpeg_data")


@pytest.fixture(autouse=True)
def _data(monkeypatch):
    from conftest import JPEG
    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))


def test_smoke_trial_learns_and_measures_time():
    task = get_task("smoke")
    r = train(task, {"lr": 0.05}, seed=0)
    assert r.status == "ok", r.error
    assert r.final_test_acc > 0.2  # chance is 0.1
    assert r.steps == 40 and [row["step"] for row in r.curve] == [10, 20, 30, 40]
    assert all(0 < row["train_s"] <= row["wall_s"] for row in r.curve)
    train_s = [row["train_s"] for row in r.curve]
    assert train_s == sorted(train_s) and r.train_s == pytest.approx(train_s[-1])
    first = next(row for row in r.curve if row["val_acc"] >= task.target_acc)
    assert r.steps_to_target == first["step"] and r.time_to_target_s == pytest.approx(first["train_s"])


def test_huge_lr_is_recorded_as_diverged_without_raising():
    r = train(get_task("smoke"), {"lr": 50.0}, seed=0)
    assert r.status == "diverged" and r.value == 0.0
    assert r.curve and r.steps < 40 and "loss" in r.error


def test_same_seed_same_curve_other_seed_other_curve():
    task = get_task("smoke", epochs=1)
    a, b, c = (train(task, {"lr": 0.05}, seed=s) for s in (3, 3, 4))
    strip = lambda r: [(row["train_loss"], row["val_acc"], row["test_acc"]) for row in r.curve]  # noqa: E731
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_budgets_in_steps_epochs_and_seconds():
    assert train(get_task("smoke", epochs=None, steps=25), {"lr": 0.05}).steps == 25
    assert train(get_task("smoke", epochs=1.5), {"lr": 0.05}).steps == 30  # 20 steps per epoch
    r = train(get_task("smoke", epochs=50, seconds=0.3), {"lr": 0.05})
    assert r.status == "ok" and r.train_s >= 0.3 and r.steps < 1000


def test_report_hook_prunes():
    calls = []
    r = train(get_task("smoke"), {"lr": 0.05}, report=lambda step, acc: calls.append(step) or step >= 20)
    assert r.status == "pruned" and calls == [10, 20] and r.steps == 20


def test_failure_is_recorded_and_an_unknown_param_names_itself_and_the_allowed_ones():
    r = train(get_task("smoke"), {"lr": 0.05, "lrr": 0.1})
    assert r.status == "failed" and r.value == 0.0 and r.curve == []
    assert "'lrr'" in r.error and all(name in r.error for name in TRIAL_PARAMETERS)
    r = train(get_task("smoke", batch_size=5000), {"lr": 0.05})  # fewer images than one batch
    assert r.status == "failed" and "fewer than one batch" in r.error


def test_a_named_schedule_family_trains_and_follows_its_formula():
    """The documented categorical `schedule = {choices = [...]}` hands the trainer a string."""
    r = train(get_task("smoke", epochs=1), {"lr": 0.05, "schedule": "cosine", "final_lr_factor": 0.1}, seed=0)
    assert r.status == "ok", r.error
    # a row's lr is the one its interval's last step used (step s - 1 of 20, 0-based): SGDR's formula
    expected = [0.005 + (0.05 - 0.005) * (1 + math.cos(math.pi * (s - 1) / 20)) / 2 for s in (10, 20)]
    assert [row["lr"] for row in r.curve] == pytest.approx(expected)


def test_trial_params_resolve_against_the_task():
    task = get_task("smoke", momentum=0.8)
    assert trial_settings(task, {}).momentum == 0.8
    assert trial_settings(task, {"one_minus_momentum": 0.05}).momentum == pytest.approx(0.95)
    assert trial_settings(task, {"momentum": 0.5}).momentum == 0.5
    with pytest.raises(ValueError, match="not both"):
        trial_settings(task, {"momentum": 0.5, "one_minus_momentum": 0.5})
    s = trial_settings(task, {"weight_decay": 0.1, "label_smoothing": 0.2, "backbone_lr_mult": 0.3, "steps": 7})
    assert (s.weight_decay, s.label_smoothing, s.backbone_lr_mult, s.steps) == (0.1, 0.2, 0.3, 7)
    n = 100

    def lrs(params, on=task, end=n):
        schedule = make_schedule(schedule_spec(on, params), n)
        return [schedule(it) for it in range(end)]

    # final_lr_factor: each family ends at the peak times the factor (cosine and linear decay at step n,
    # one-cycle at its last step n - 1, as torch's CosineAnnealingLR and OneCycleLR)
    for family in ("cosine", "one_cycle", "linear_decay"):
        curve = lrs({"lr": 0.2, "schedule": family, "final_lr_factor": 0.25}, end=n + 1)
        peak = curve.index(max(curve))
        assert curve[peak] == pytest.approx(0.2) and min(curve[peak:]) == pytest.approx(0.05), family
    assert lrs({"lr": 0.2, "schedule": "one_cycle", "final_lr_factor": 0.0})[-1] == 0.0
    assert lrs({"lr": 0.2, "schedule": "constant", "final_lr_factor": 0.25}) == [0.2] * n  # nothing to set
    # pct_start: one-cycle peaks at step pct_start * n - 1 (torch's OneCycleLR)
    curve = lrs({"lr": 0.2, "schedule": "one_cycle", "pct_start": 0.4})
    assert curve.index(max(curve)) == 39
    # warmup_frac: linear from 0 over that fraction of the steps, in front of the schedule (with_warmup)
    curve = lrs({"lr": 0.2, "schedule": "cosine", "warmup_frac": 0.1})
    cosine = [0.1 * (1 + math.cos(math.pi * it / n)) for it in range(n)]
    assert curve == pytest.approx([c * min(1.0, it / 10) for it, c in enumerate(cosine)])
    # a family string on a task whose template is of that family keeps the template's settings
    cpu = get_task("cpu")
    assert schedule_spec(cpu, {"lr": 0.3, "schedule": "one_cycle"}) == schedule_spec(cpu, {"lr": 0.3})
    with pytest.raises(ValueError, match="schedule 'sawtooth'.*constant, cosine, one_cycle, linear_decay"):
        schedule_spec(task, {"schedule": "sawtooth"})


def test_invalid_task_fields_stop_when_the_task_is_built():
    for field, value, allowed in [("optimizer", "adamx", "adamw"), ("model", "resnet", "resnet8"),
                                  ("normalization", "per_pixel", "pixel_mean"), ("flip", "never", "alternating"),
                                  ("schedule", "sawtooth", "one_cycle"), ("schedule", {"name": "saw"}, "cyclic")]:
        with pytest.raises(ValueError, match=f"task 'smoke': {field} {value!r}: expected .*{allowed}"):
            get_task("smoke", **{field: value})
    with pytest.raises(ValueError, match="pretrain .*unknown key.*epoch"):
        get_task("smoke", pretrain={"epoch": 3})
    with pytest.raises(ValueError, match="classes"):
        get_task("smoke", classes=(3, 3))
    assert get_task("smoke", schedule="cosine").schedule == {"name": "cosine", "base_lr": "$lr", "min_lr": 0.0}


def test_registries_and_the_tasks_name_tables_agree():
    from lrsearch.training.trainer import OPTIMIZERS

    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES


def test_adamw_decouples_weight_decay_and_adam_adds_it_to_the_gradient():
    import torch

    from lrsearch.training.trainer import make_optimizer

    def one_step(name):
        p = torch.nn.Parameter(torch.ones(1))
        opt = make_optimizer(get_task("smoke", optimizer=name), [{"params": [p], "weight_decay": 0.01}], 0.1, 0.9)
        p.grad = torch.zeros(1)  # only the decay moves it
        opt.step()
        return p.item()

    assert one_step("adamw") == pytest.approx(1 - 0.1 * 0.01)  # p -= lr * wd * p (Loshchilov & Hutter)
    assert one_step("adam") == pytest.approx(1 - 0.1, rel=1e-4)  # grad = wd * p, normalised by Adam to a step of lr


def test_betas_and_backbone_lr_come_from_the_trial():
    from lrsearch.training.trainer import trial_parts

    task = get_task("smoke", optimizer="adamw", beta2=0.99, eps=1e-6, backbone_lr_mult=0.5)
    setup, _ = trial_parts(task, {"lr": 0.01, "one_minus_momentum": 0.05})
    group = setup.optimizer.param_groups[0]
    assert group["betas"] == (pytest.approx(0.95), 0.99) and group["eps"] == 1e-6
    head = {id(p) for p in setup.model.head.parameters()}
    for group in setup.optimizer.param_groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1 and group["lr"] == pytest.approx(0.01 if in_head == {True} else 0.005)
    setup, _ = trial_parts(task, {"lr": 0.01, "backbone_lr_mult": 0.0})
    assert sorted(g["lr"] for g in setup.optimizer.param_groups) == [0.0, 0.01]


def test_divergence_rule_is_fastais_four_times_the_best_from_chance_level():
    chance = chance_loss(10)
    assert chance == pytest.approx(2.302585, rel=1e-6)
    assert not diverged(4 * chance, chance, 4.0) and diverged(4 * chance + 1e-9, chance, 4.0)
    assert diverged(0.9, 0.2, 4.0) and not diverged(0.8, 0.2, 4.0)
    assert diverged(float("nan"), chance, 4.0) and diverged(float("inf"), chance, 4.0)


def test_evaluation_hooks_switch_an_optimizer_to_its_evaluation_weights(monkeypatch):
    """Schedule-free's protocol: optimizer.eval() before each evaluation, .train() after it (not after the last)."""
    import torch

    from lrsearch.training import trainer

    calls = []

    class RecordingSGD(torch.optim.SGD):
        def eval(self):
            calls.append("eval")

        def train(self):
            calls.append("train")

    monkeypatch.setitem(trainer.OPTIMIZERS, "sgd", (RecordingSGD, trainer.OPTIMIZERS["sgd"][1]))
    r = train(get_task("smoke", epochs=1.5), {"lr": 0.05})  # evaluations at steps 10, 20, 30
    assert r.status == "ok" and calls == ["eval", "train", "eval", "train", "eval"]


def test_lr_fills_the_schedule_template():
    spec = schedule_spec(get_task("cpu"), {"lr": 0.3})
    assert spec["max_lr"] == 0.3 and spec["name"] == "one_cycle"
    r = train(get_task("smoke", epochs=1, schedule={"name": "linear_decay", "start_lr": "$lr", "end_lr": 0.0}),
              {"lr": 0.1})
    assert [row["lr"] for row in r.curve] == pytest.approx([0.1 * (1 - 9 / 20), 0.1 * (1 - 19 / 20)])
    assert math.isfinite(r.curve[-1]["train_loss"])


def test_lookahead_follows_airbench94s_rule():
    import torch

    from lrsearch.training.trainer import Lookahead

    model = torch.nn.Linear(3, 2)
    start = [t.clone() for t in model.state_dict().values()]
    lookahead = Lookahead(model, every=5, total_steps=20)
    assert lookahead.decay(20) == pytest.approx(0.95 ** 5) and lookahead.decay(10) == pytest.approx(0.95 ** 5 / 8)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    moved = [t.clone() for t in model.state_dict().values()]
    lookahead.step(4)  # not a multiple of 5: nothing happens
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), moved))
    lookahead.step(10)
    d = 0.95 ** 5 * (10 / 20) ** 3
    for now, s, m in zip(model.state_dict().values(), start, moved):
        assert torch.allclose(now, d * s + (1 - d) * m)  # the model takes the average
    with torch.no_grad():
        model.weight.add_(5.0)
    lookahead.finish()  # back to the average, the last moves dropped
    assert torch.allclose(model.weight, d * start[0] + (1 - d) * moved[0])


def test_test_time_augmentation_averages_airbench94s_views():
    import torch
    import torch.nn.functional as F

    from lrsearch.training.trainer import _tta_logits

    torch.manual_seed(0)
    head = torch.nn.Linear(3 * 8 * 8, 4)

    def model(v):
        return head(v.flatten(1))

    x = torch.randn(5, 3, 8, 8)

    def mirror(v):
        return (model(v) + model(v.flip(3))) / 2

    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    expected = mirror(x) / 2 + (mirror(padded[:, :, :8, :8]) + mirror(padded[:, :, 2:, 2:])) / 4
    with torch.no_grad():
        assert torch.allclose(_tta_logits(model, x, 0), model(x))
        assert torch.allclose(_tta_logits(model, x, 1), mirror(x), atol=1e-6)
        assert torch.allclose(_tta_logits(model, x, 2), expected, atol=1e-6)


def test_gpu_task_runs_on_a_cpu_with_decoupled_decay_and_a_frozen_whitening_bias():
    """The gpu task's whole recipe (fast net, alternating flips, lookahead, TTA at the end) on a few images."""
    import torch

    from lrsearch.training.trainer import _setup, prepare_data

    task = get_task("gpu", train_subset=700, val_size=100, test_subset=200, epochs=4, eval_every=4, batch_size=150)
    setup = _setup(task, {"lr": 0.8}, 0, torch.device("cpu"), prepare_data(task, torch.device("cpu")))
    setup.new_optimizer(task)
    peak = max(setup.schedule(i) for i in range(setup.n_steps))
    assert peak == pytest.approx(0.8)
    for group in setup.optimizer.param_groups:  # the same shrink per step at the peak, whatever the group's LR
        assert group["weight_decay"] * group["lr_mult"] * peak == pytest.approx(task.weight_decay)
    (whiten,) = [g for g in setup.optimizer.param_groups if "frozen_from" in g]
    assert whiten["frozen_from"] == 3 * 4  # 3 epochs of 4 steps

    r = train(task, {"lr": 0.8}, seed=0)
    assert r.status == "ok", r.error
    assert r.steps == 16 and r.final_test_acc > 0.15 and r.eval_s > 0 and r.train_s > 0
    assert [row["step"] for row in r.curve] == [4, 8, 12, 16]


def test_finetune_pretrains_once_for_two_workers_caches_and_starts_from_the_backbone(tmp_path, monkeypatch):
    import threading
    import time

    import torch

    from lrsearch.training import pretrain, trainer
    from lrsearch.training.data import resolve_source
    from lrsearch.training.models import head_parameter_names

    monkeypatch.setenv("LRSEARCH_PRETRAINED", str(tmp_path))
    small = {"classes": (0, 1, 2, 3, 4), "train_subset": 600, "val_size": 100, "test_subset": 200, "epochs": 1,
             "eval_every": 5, "lr": 0.05, "augment": False, "seed": 0}
    task = get_task("finetune", train_subset=600, val_size=100, test_subset=500, epochs=1, eval_every=5, pretrain=small)
    trained, real = [], trainer._train

    def slow_train(*args, **kwargs):  # long enough that the second worker arrives while the first trains
        trained.append(args[0].name)
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "_train", slow_train)
    prepared = []
    workers = [threading.Thread(target=lambda: prepared.append(trainer.prepare_task(task))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert trained == ["finetune/pretrain"] and prepared[0].pretrained == prepared[1].pretrained
    path = prepared[0].pretrained
    record = pretrain.read_record(path)
    assert path.parent == tmp_path and record["status"] == "ok" and record["task"]["classes"] == [0, 1, 2, 3, 4]
    assert prepared[0].pretrain_s == record["train_s"] > 0
    source = resolve_source(None)
    assert pretrain.weights_path(task, source, "cpu") == path
    assert pretrain.weights_path(get_task("finetune", pretrain=small | {"seed": 1}), source, "cpu") != path
    assert pretrain.weights_path(get_task("finetune", pretrain=small | {"lr": 0.1}), source, "cpu") != path

    monkeypatch.setattr(trainer, "_train", real)
    setup, data = trainer.trial_parts(task, {"lr": 0.05}, seed=1)
    assert len(data.test_y) == 500 and set(data.test_y.tolist()) == {0, 1, 2, 3, 4}  # classes 5-9, relabelled
    weights, head = pretrain.load(path), head_parameter_names(setup.model)
    assert head == {"head.weight", "head.bias"}
    for name, value in setup.model.state_dict().items():  # the pretrained backbone, a fresh head
        assert torch.equal(value, weights[name]) == (name not in head), name
    made = path.stat().st_mtime_ns
    r = train(task, {"lr": 0.05, "backbone_lr_mult": 0.1})
    assert r.status == "ok" and r.final_val_acc > 0.2 and path.stat().st_mtime_ns == made  # loaded, not remade
