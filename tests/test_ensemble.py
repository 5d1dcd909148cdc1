"""Seeds trained as one stacked model (training.ensemble) against the one-model trainer, seed by seed."""

import pytest

from lrsearch.training.ensemble import train_seeds
from lrsearch.training.tasks import get_task
from lrsearch.training.trainer import train

SCHEDULE = {"name": "cyclic", "base_lr": 0.001, "max_lr": 0.006, "step_size": 10, "mode": "triangular"}


@pytest.mark.usefixtures("jpeg_data")
# Adam's update divides by the gradient's own scale, so the rounding differences of near-zero gradients grow
# into different steps within a few iterations at these LRs: it is compared over its first 4 steps.
@pytest.mark.parametrize("task_name, optimizer, steps, eval_every", [
    ("clr-paper", "sgd", 20, 10), ("clr-paper", "adam", 4, 2), ("clr-paper-sigmoid-bn", "sgd", 20, 10)])
def test_each_seed_matches_the_one_model_trainer(monkeypatch, task_name, optimizer, steps, eval_every):
    from conftest import JPEG

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    task = get_task(task_name, steps=steps, eval_every=eval_every, train_subset=1000, test_subset=500, optimizer=optimizer)
    stacked = train_seeds(task, {"schedule": SCHEDULE}, [3, 7])
    for result, seed in zip(stacked, [3, 7]):
        alone = train(task, {"schedule": SCHEDULE}, seed=seed)
        assert result.seed == seed and result.status == alone.status == "ok", result.error
        assert [r["step"] for r in result.curve] == [r["step"] for r in alone.curve] == [eval_every, steps]
        assert [r["lr"] for r in result.curve] == pytest.approx([r["lr"] for r in alone.curve])
        # the same model, batches and updates: only the order of floating-point sums differs
        assert [r["train_loss"] for r in result.curve] == pytest.approx([r["train_loss"] for r in alone.curve], rel=1e-3)
        assert [r["test_acc"] for r in result.curve] == pytest.approx([r["test_acc"] for r in alone.curve], abs=0.01)
    assert stacked[0].curve[-1]["train_loss"] != stacked[1].curve[-1]["train_loss"]  # two models, not one twice


@pytest.mark.usefixtures("jpeg_data")
def test_a_diverging_model_is_recorded_and_unsupported_tasks_fail_with_the_reason(monkeypatch):
    from conftest import JPEG

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    task = get_task("clr-paper", steps=40, eval_every=10, train_subset=1000, test_subset=500)
    results = train_seeds(task, {"lr": 5.0}, [0, 1])
    assert [r.status for r in results] == ["diverged", "diverged"] and all(r.final_test_acc is None for r in results)
    assert all(r.curve[-1]["test_acc"] is None and r.steps < 40 for r in results)
    failed = train_seeds(get_task("gpu", steps=2), {}, [0, 1])
    assert [r.status for r in failed] == ["failed", "failed"]
    assert "lookahead_every" in failed[0].error and "use train()" in failed[0].error
