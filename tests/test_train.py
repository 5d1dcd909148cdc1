"""The trainer on the real (shared) CIFAR-10 data, with the smoke task."""

import math

import pytest

from lrsearch.training.tasks import get_task, schedule_spec
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


def test_failure_is_recorded():
    r = train(get_task("smoke", model="nonexistent"), {"lr": 0.05})
    assert r.status == "failed" and "nonexistent" in r.error and r.value == 0.0


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

    task = get_task("gpu", train_subset=1200, val_size=200, test_subset=200, epochs=4, eval_every=4, batch_size=250)
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
