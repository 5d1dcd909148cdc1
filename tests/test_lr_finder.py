"""LR range test: the rules on synthetic curves with known knees, the loss rule on a problem
with a known largest stable LR, and the test itself on the smoke task."""

import numpy as np
import pandas as pd
import pytest

from lrsearch.search.lr_finder import (
    clean,
    minimum,
    range_schedule,
    slide,
    steep,
    steepest_gradient,
    suggest_range,
    valley,
)

LRS = np.geomspace(1e-5, 10, 200)


def _acc_curve(seed=0, noise=0.01):
    """Accuracy at chance until 1e-3, a sigmoid rise to 0.8 centred at 3e-3 (over ~1 decade), flat, falling after 0.1."""
    x = np.log10(LRS)
    acc = 0.1 + 0.7 / (1 + np.exp(-(x - np.log10(3e-3)) * 5))
    acc = np.where(LRS > 0.1, acc - 2 * (x - 1 + 2) ** 2 * (LRS > 0.1), acc)
    return np.clip(acc + np.random.default_rng(seed).normal(0, noise, len(LRS)), 0, 1)


def _loss_curve(seed=0, noise=0.02):
    """Loss at 2.3 until ~1e-4, falling to 0.5 by ~3e-2 (steepest near 2e-3), then blowing up after 0.1; NaN at the end."""
    x = np.log10(LRS)
    loss = 0.5 + 1.8 / (1 + np.exp((x - np.log10(2e-3)) * 3)) + np.where(LRS > 0.1, 50 * (x + 1) ** 2, 0)
    loss = loss + np.random.default_rng(seed).normal(0, noise, len(LRS))
    loss[-5:] = np.nan
    return loss


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_range_rule_finds_the_knees(seed):
    base, top = suggest_range(LRS, _acc_curve(seed), "acc")
    assert 5e-4 < base < 2e-3  # rise starts: 10% of the rise happens near 1e-3
    assert 1e-2 < top < 0.1  # flattening before the fall
    assert base < top


@pytest.mark.parametrize("seed", range(5))
def test_loss_rules_on_a_known_curve(seed):
    losses = _loss_curve(seed)
    base, top = suggest_range(LRS, losses, "loss")
    assert 1e-4 < base < 1e-3  # 10% of the fall
    assert 3e-2 < top <= 0.1  # the end of the bottom, where the loss turns up (the blow-up starts at 0.1)
    assert 2e-4 < steep(LRS, losses) < 1e-2  # steepest fall near 2e-3
    assert 2e-4 < steepest_gradient(LRS, losses) < 2e-2
    assert 5e-3 < minimum(LRS, losses) < 1.5e-2  # lr of the minimum / 10
    assert 1e-4 < valley(LRS, losses) < 0.1  # inside the long fall
    assert 1e-4 < slide(LRS, losses) < 0.15  # left of where the loss turns up


def _knee_curve(lrs, fall_from, minimum_at, flat_until=None, top=2.3, bottom=0.6):
    """Loss flat at `top` until `fall_from`, falling log-linearly to `bottom` at `minimum_at`, flat there
    until `flat_until` (if given), then exploding (x10 per quarter decade); NaN past 4x `top`, as a range
    test stops."""
    x = np.log10(lrs)
    a, b = np.log10(fall_from), np.log10(minimum_at)
    c = np.log10(flat_until) if flat_until else b
    loss = np.where(x < a, top, np.where(x < b, top - (top - bottom) * (x - a) / (b - a),
                                         np.where(x < c, bottom, bottom * 10 ** (4 * (x - c)))))
    return np.where(loss > 4 * top, np.nan, loss)


KNEE_LRS = np.geomspace(1e-5, 1, 200)


@pytest.mark.parametrize("fall_from, minimum_at", [(1e-3, 2e-2), (1e-3, 1e-2), (1e-4, 3e-3)])
def test_loss_range_is_where_the_loss_starts_to_fall_and_just_before_it_rises(fall_from, minimum_at):
    losses = _knee_curve(KNEE_LRS, fall_from, minimum_at)
    base, top = suggest_range(KNEE_LRS, losses, "loss")
    assert fall_from / 1.5 < base < fall_from * 1.5
    assert minimum_at / 1.5 < top <= minimum_at  # just before the minimum, not minimum / 10
    assert valley(KNEE_LRS, losses) < top  # fastai's training LR lies inside Smith's range


@pytest.mark.parametrize("seed", range(5))
def test_loss_range_on_a_noisy_knee(seed):
    losses = _knee_curve(KNEE_LRS, 1e-3, 2e-2) + np.random.default_rng(seed).normal(0, 0.03, len(KNEE_LRS))
    base, top = suggest_range(KNEE_LRS, losses, "loss")
    assert 1e-3 / 1.5 < base < 1e-3 * 1.5
    assert 2e-2 / 1.5 < top <= 2e-2 and top > 1e-2  # measured over 200 seeds: 0.0165 to 0.0185


@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_loss_max_lr_is_the_end_of_a_flat_bottom(noise):
    # falls from 1e-3 to 1e-2, flat over a decade, explodes after 0.1
    losses = _knee_curve(KNEE_LRS, 1e-3, 1e-2, flat_until=0.1) + np.random.default_rng(0).normal(0, noise, len(KNEE_LRS))
    base, top = suggest_range(KNEE_LRS, losses, "loss")
    assert 1e-3 / 1.5 < base < 1e-3 * 1.5
    assert 0.1 / 2 < top <= 0.1  # where the loss turns up, not where the bottom begins (1e-2); 200 seeds: >= 0.052


def test_loss_range_on_the_articles_example():
    # as the seed article's plot: flat until 1e-3, a fast fall that slows into a minimum at 0.1, then the blow-up
    x = np.log10(KNEE_LRS)
    losses = np.where(x < -3, 2.3, 0.8 + 1.5 * np.exp(-(x + 3) / 0.5))
    losses = np.where(x < -1, losses, (0.8 + 1.5 * np.exp(-4)) * 10 ** (4 * (x + 1)))
    base, top = suggest_range(KNEE_LRS, np.where(losses > 9.2, np.nan, losses), "loss")
    assert 1e-3 / 1.5 < base < 1e-3 * 1.5  # the article: base_lr ~ 0.001
    assert 0.1 / 1.5 < top <= 0.1  # the article: max_lr ~ 0.1


def test_the_figure_marks_fastais_rules_and_smiths_loss_range(tmp_path):
    from lrsearch.search.lr_finder import RangeTest, ema, plot_range_test

    losses = _knee_curve(KNEE_LRS, 1e-3, 2e-2)
    n = int(np.isfinite(losses).sum())
    table = pd.DataFrame({"step": np.arange(1, n + 1), "lr": KNEE_LRS[:n], "train_loss": losses[:n],
                          "smoothed_loss": ema(losses[:n]), "val_acc": np.nan})
    figure = plot_range_test(RangeTest(table, "diverged", "diverged", 1.0, 1.0, "exp", n), tmp_path / "f.png")
    assert (tmp_path / "f.png").exists()
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    base, top = suggest_range(table["lr"], table["train_loss"], "loss")
    for rule in ("valley", "steep", "minimum", "slide"):
        assert any(label.startswith(f"{rule} ") and label.endswith("(fastai)") for label in labels), (rule, labels)
    assert f"base_lr {base:.3g} (Smith, loss)" in labels and f"max_lr {top:.3g} (Smith, loss)" in labels


def test_clean_cuts_at_first_nan_and_skips():
    lrs, v = clean([1, 2, 3, 4, 5, 6], [5, 4, np.inf, 2, np.nan, 1], skip_start=1)
    assert lrs.tolist() == [2] and v.tolist() == [4]


def test_no_rise_is_a_clear_error():
    with pytest.raises(ValueError, match="never rises"):
        suggest_range(LRS, np.full(len(LRS), 0.1) - LRS * 1e-3, "acc")


def _gd_range_test(seed, steps):
    """Exponential LR sweep of full-batch gradient descent on least squares, where GD is stable
    exactly below 2/L (L the largest eigenvalue of the Hessian X^T X / n)."""
    rng = np.random.default_rng(seed)
    n, d = 200, 20
    X = rng.normal(size=(n, d)) * np.linspace(0.2, 3, d)
    y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)
    limit = 2 / np.linalg.eigvalsh(X.T @ X / n).max()
    lrs = np.geomspace(limit / 1000, limit * 10, steps)
    w, losses = np.zeros(d), []
    with np.errstate(over="ignore", invalid="ignore"):
        for lr in lrs:
            r = X @ w - y
            losses.append(0.5 * np.mean(r**2))
            w = w - lr * X.T @ r / n
    return lrs, np.array(losses), limit


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("steps", [100, 300, 1000])
def test_loss_max_lr_overshoots_the_largest_stable_lr_less_on_longer_sweeps(seed, steps):
    lrs, losses, limit = _gd_range_test(seed, steps)
    base, top = suggest_range(lrs, losses, "loss")
    # below 2/L every step shrinks the loss, so it cannot start to rise before 2/L; the rise shows
    # some steps later (measured: 4.75, 2.5 to 2.58 and 1.44 to 1.47 times 2/L)
    assert limit < top < {100: 6, 300: 3.5, 1000: 2}[steps] * limit
    assert base < top


def test_range_schedule_rises_from_min_to_max():
    from lrsearch.training.schedules import make_schedule

    for mode in ("linear", "exp"):
        fn = make_schedule(range_schedule(1e-4, 1.0, 50, mode), 50)
        assert fn(0) == pytest.approx(1e-4) and fn(49) == pytest.approx(1.0)
        assert all(fn(i) < fn(i + 1) for i in range(49))
    with pytest.raises(ValueError, match="min_lr < max_lr"):
        range_schedule(1.0, 0.1, 50, "linear")


@pytest.mark.usefixtures("jpeg_data")
def test_range_test_on_the_smoke_task(monkeypatch, tmp_path):
    from conftest import JPEG

    from lrsearch.cli import main
    from lrsearch.search.lr_finder import range_test
    from lrsearch.training.tasks import get_task

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    test = range_test(get_task("smoke", train_subset=5500, val_size=500), 1e-3, 10.0, steps=150, mode="exp", n_evals=15)
    assert list(test.table.columns) == ["step", "lr", "lr_group0", "train_loss", "smoothed_loss", "val_acc"]
    assert test.table["lr"].is_monotonic_increasing and test.table["lr"].equals(test.table["lr_group0"])
    assert test.stop_reason.startswith("diverged") or test.stop_reason == "completed"
    base, top = test.suggest_range("acc")
    assert 1e-3 <= base < top <= 10.0
    # a huge range diverges, and the test stops early and says why
    blown = range_test(get_task("smoke"), 1.0, 1e6, steps=40, mode="exp")
    assert blown.stop_reason.startswith("diverged") and len(blown.table) < 40
    # the CLI writes the table and the figure
    assert main(["lr-find", "--task", "smoke", "--steps", "40", "--min-lr", "1e-3", "--max-lr", "3",
                 "--out", str(tmp_path)]) == 0
    assert len(pd.read_csv(tmp_path / "lr_find_smoke_exp.csv")) == 40 and (tmp_path / "lr_find_smoke_exp.png").exists()


@pytest.mark.usefixtures("jpeg_data")
@pytest.mark.parametrize("name, schedule", [("lr-range-clr", "cyclic"), ("lr-range-1cycle", "one_cycle"),
                                            ("lr-range-fixed", "constant")])
def test_range_test_strategies_through_the_common_interface(monkeypatch, name, schedule):
    from conftest import JPEG

    from lrsearch.search.objective import TrainingObjective
    from lrsearch.search.strategies import get_strategy
    from lrsearch.training.tasks import get_task

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    objective = TrainingObjective(get_task("smoke", epochs=4), seed=0)
    evaluations = get_strategy(name, {"lr": {"low": 1e-3, "high": 3.0, "log": True}}).run(objective, n_trials=5)
    test, final = evaluations  # the range test is a trial; then one training run
    assert test.extra["kind"] == "range_test" and test.train_s > 0 and test.value == 0.0
    assert final.params["schedule"]["name"] == schedule and final.status == "ok" and final.value > 0.15
    if name == "lr-range-clr":
        spec, note = final.params["schedule"], test.extra["suggestion"]
        assert spec["mode"] == "triangular2" and spec["base_lr"] < spec["max_lr"]
        assert final.params["steps"] == 2 * spec["step_size"] * note["cycles"]  # ends at the end of a cycle
    with pytest.raises(ValueError, match="numeric `lr`"):
        get_strategy(name, {"momentum": {"low": 0.5, "high": 0.9}}).run(objective, n_trials=2)
