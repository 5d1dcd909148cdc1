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
