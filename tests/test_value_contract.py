"""One value contract: a trial's outcome is a status plus a value that exists only when the status is usable. A
diverged or failed trial reaches each library as that library's own failure (Optuna TrialState.FAIL, Hyperopt
STATUS_FAIL, SMAC CRASHED, NNI trial_end(success=False), Syne Tune on_trial_error) or is left out (HEBO,
scikit-optimize, Nevergrad), never as a number."""

import math

import numpy as np
import pytest

from lrsearch.search.strategies import Evaluation, get_strategy, search

SPACE = {"lr": {"low": 1e-4, "high": 1.0, "log": True}}


def negative_with_a_failing_region(params: dict) -> float | None:
    """Maximised, negative everywhere (best -1 at lr 0.01); every trial above lr 0.1 fails. Read as 0.0, a failure
    would be the best value a search had seen, and a search would be drawn into the failing region."""
    x = math.log10(params["lr"])
    return None if x > -1 else -1.0 - (x + 2.0) ** 2


@pytest.mark.parametrize("name", ["optuna-tpe", "hyperopt-tpe", "nni-tpe"])
def test_tpe_does_not_crowd_into_failures_and_the_best_is_never_a_failed_trial(name):
    trials = search(name, negative_with_a_failing_region, SPACE, n_trials=30, seed=0, n_startup_trials=5)
    late = trials[5:]  # after the random start-up, whose draws fail a quarter of the time (1 decade of 4)
    failed = sum(value is None for _, value in late)
    assert failed <= 5, f"{failed} of {len(late)} proposals after the start-up in the failing region"
    best_params, best = max(((p, v) for p, v in trials if v is not None), key=lambda t: t[1])
    assert best > -1.2 and abs(math.log10(best_params["lr"]) + 2) < 0.5


def _minimised_with_failures(params: dict, report=None) -> Evaluation:
    """A minimised metric as the runner hands it over: its negative, and a failure at the workload's floor for a
    minimised metric (Workload.score(None) = -1e300), which no library may see."""
    x = math.log10(params["lr"])
    if x > -1.5:
        return Evaluation(params, -1e300, status="failed")
    return Evaluation(params, -(0.2 + (x + 2.5) ** 2))


def test_hebos_observations_never_hold_a_failed_trials_placeholder():
    strategy = get_strategy("hebo", SPACE, seed=0, n_startup_trials=4, acq_generations=2)
    evaluations = strategy.run(_minimised_with_failures, 14)
    assert any(not e.has_value for e in evaluations) and any(e.has_value for e in evaluations)
    observed = np.asarray(strategy._hebo.y).ravel()
    assert len(observed) == sum(e.has_value for e in evaluations)  # the failed points were left out
    assert np.all(np.abs(observed) < 10)


def test_smac_gets_failures_as_crashed_at_the_worst_cost_seen():
    """SMAC's own failure state, CRASHED; at the worst cost seen so far, since its default crash cost (inf) makes
    its random forest fail on NaN targets."""
    from smac.runhistory.enumerations import StatusType

    strategy = get_strategy("smac-bo", SPACE, seed=0, n_startup_trials=4)
    evaluations = strategy.run(_minimised_with_failures, 14)
    first_ok = next(i for i, e in enumerate(evaluations) if e.has_value)
    values = list(strategy._smac.runhistory.values())
    crashed = [v for v in values if v.status == StatusType.CRASHED]
    succeeded = [v.cost for v in values if v.status == StatusType.SUCCESS]
    assert len(crashed) == sum(not e.has_value for e in evaluations[first_ok:]) > 0
    assert all(v.cost in succeeded for v in crashed)  # the worst successful cost at the time it crashed
    assert all(abs(v.cost) < 10 for v in values) and not any(abs(v.cost) == 1e300 for v in values)


@pytest.mark.parametrize("name", ["skopt-gp", "nevergrad-ngopt", "nevergrad-de", "dehb", "synetune-bore", "optuna-gp",
                                  "optuna-cmaes", "optuna-ga", "hyperopt-atpe", "hyperopt-anneal", "nni-evolution",
                                  "nni-anneal", "optunity-pso", "optunity-nelder-mead", "smac-hyperband", "random",
                                  "grid"])
def test_every_other_adapter_goes_on_past_failures_and_spends_its_budget(name):
    """Each library takes its failures (its own state, or left out) and goes on: the budget is spent."""
    options = {"synetune-bore": {"acq_candidates": 50}}.get(name, {})
    trials = search(name, negative_with_a_failing_region, SPACE, n_trials=12, seed=0, **options)
    assert len(trials) == 12
    assert any(v is not None for _, v in trials)


def test_a_run_where_every_trial_fails_still_spends_its_budget():
    for name in ("optuna-tpe", "hyperopt-tpe", "nni-tpe", "smac-bo", "dehb", "optunity-pso"):
        assert [v for _, v in search(name, lambda params: None, SPACE, n_trials=6, seed=0)] == [None] * 6, name


def test_worst_so_far_is_the_lowest_finite_result_and_nothing_before_any():
    from lrsearch.search.strategies.common import WorstSoFar

    worst = WorstSoFar()
    assert worst.value is None and worst.fill(-7.0) == -7.0  # nothing seen yet: the adapter's own default
    for value in (0.4, -0.25, 0.9, -math.inf, math.nan):  # a non-finite value is no number to tell a library
        worst.see(value)
    assert worst.value == -0.25 and worst.fill(-7.0) == -0.25
    # in a minimising library's sign (SMAC's cost, DEHB's fitness, Nevergrad's loss) the worst is the largest
    assert -worst.fill(-math.inf) == max(-v for v in (0.4, -0.25, 0.9))
