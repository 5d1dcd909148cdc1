"""The noise checks a table must pass (reporting/noise.py), on tables with known answers, and on a committed one."""

import math

import pandas as pd
import pytest

from lrsearch.reporting.noise import check_table, noise_checks


def _table(values_by_lr: dict[float, list[float]]) -> pd.DataFrame:
    rows = [{"kind": "train", "params": {"lr": lr}, "lr": lr, "value": v}
            for lr, values in values_by_lr.items() for v in values]
    return pd.DataFrame(rows)


def test_a_table_out_of_the_noise_passes_every_check():
    # best LR 0.1: mean 0.60 on 5,000 images -> SE sqrt(.6 * .4 / 5000) = 0.693 points; target 0.57 is 4.3 SE below
    table = _table({0.001: [0.30] * 10, 0.01: [0.45] * 10, 0.1: [0.59, 0.61] * 5, 1.0: [math.nan] * 10})
    checks, configs = noise_checks(table, n_val=5000, target=0.57)
    assert [c.passed for c in checks] == [True, True, True, True], [c.measured for c in checks]
    assert "0.69 points" in checks[0].measured and "4.3 standard errors" in checks[1].measured
    assert "3 of 4 configurations never diverge" in checks[3].measured and "0.450" in checks[3].measured  # 1.0 diverges


@pytest.mark.parametrize("n_val, target, values, failing", [
    (500, 0.57, {0.1: [0.60] * 10, 0.01: [0.3] * 10}, {"reading noise", "target margin"}),  # SE 2.2 points
    (5000, 0.59, {0.1: [0.60] * 10, 0.01: [0.3] * 10}, {"target margin"}),  # 1.4 SE below
    (5000, 0.55, {0.1: [0.60] * 8 + [math.nan] * 2, 0.01: [0.3] * 10}, {"target reached"}),  # 80% of seeds
    (5000, 0.55, {0.1: [0.60] * 10, 0.01: [0.58] * 10, 0.03: [0.59] * 10}, {"the learning rate matters"}),
])
def test_each_check_fails_on_its_own_case(n_val, target, values, failing):
    checks, _ = noise_checks(_table(values), n_val=n_val, target=target)
    assert {c.name for c in checks if not c.passed} == failing


def test_the_old_nobn_sweep_was_not_out_of_the_noise():
    """500 validation images and its target (0.33) 0.7 standard errors below the best mean: the issue's finding."""
    checks, text = check_table("results/nobn-table", target=0.33)
    assert {c.name for c in checks if not c.passed} == {"reading noise", "target margin"}
    assert "NOT out of the noise" in text and "2.13 points" in text


@pytest.mark.parametrize("workload", ["nobn", "resnet-adamw", "finetune", "caffe-cpu"])
def test_every_finished_table_passes_every_check_at_its_tasks_target(workload):
    from lrsearch.training.tasks import TASKS

    checks, text = check_table(f"results/tables/{workload}")
    assert all(c.passed for c in checks), text
    assert f"target {TASKS[workload].target_acc:.3f}" in text and "x 10 seeds" in text


def test_the_suggested_target_is_the_highest_that_passes_margin_and_reach():
    from lrsearch.reporting.noise import suggest_target

    table = _table({0.001: [0.30] * 10, 0.01: [0.45] * 10, 0.1: [0.59, 0.61] * 5})
    # 0.60 - 3 x 0.693 points = 0.5792 (below 0.59, which 90% of the seeds reach), rounded down to 0.5 points
    assert suggest_target(table, 5000) == 0.575
    diverging = _table({0.1: [0.60] * 8 + [math.nan, 0.40], 0.01: [0.3] * 10})  # the 9th best seed: 0.40
    assert suggest_target(diverging, 5000) == 0.4


def test_reading_noise_is_judged_at_one_decimal_as_the_check_states_it():
    """5,000 images at 50% give 0.707 points: "at most 0.7 points (about 5,000 images)"; 4,000 give 0.79."""
    table = _table({0.1: [0.50] * 10, 0.01: [0.2] * 10})
    assert noise_checks(table, n_val=5000, target=0.45)[0][0].passed
    assert not noise_checks(table, n_val=4000, target=0.45)[0][0].passed
