"""Every strategy on a cheap synthetic objective: accuracy is a noisy bump in log10(lr)."""

import math

import pytest

from lrsearch.search.strategies import (
    REGISTRY,
    Evaluation,
    SpaceError,
    get_strategy,
    parse_space,
    search,
    strategy_names,
)

OPTIMUM = 0.05
SPACE = {"lr": {"low": 1e-4, "high": 1.0, "log": True}}
LIBRARY_STRATEGIES = [n for n in REGISTRY if not n.startswith("lr-range")]


def bump(params: dict) -> float:
    x = math.log10(params["lr"] / OPTIMUM)
    noise = 0.01 * math.sin(params["lr"] * 1e4)  # deterministic "noise", so repeats are exact
    return 0.9 * math.exp(-x * x / 0.5) + noise


@pytest.mark.parametrize("name", LIBRARY_STRATEGIES)
def test_strategy_budget_bounds_seed_and_optimum(name):
    trials = search(name, bump, SPACE, n_trials=16, seed=0)
    assert len(trials) == 16  # exactly the budget
    assert all(1e-4 <= p["lr"] <= 1.0 and set(p) == {"lr"} for p, _ in trials)
    assert all(isinstance(p["lr"], float) for p, _ in trials)  # plain floats, not numpy scalars
    assert trials == search(name, bump, SPACE, n_trials=16, seed=0)  # same seed, same proposals
    best_lr = max(trials, key=lambda t: t[1])[0]["lr"]
    assert abs(math.log10(best_lr / OPTIMUM)) < 0.5, best_lr  # within ~3x of the optimum


@pytest.mark.parametrize("name", ["random", "optuna-tpe", "hyperopt-tpe", "nni-tpe", "nni-evolution"])
def test_other_seed_other_proposals(name):
    assert search(name, bump, SPACE, n_trials=6, seed=0) != search(name, bump, SPACE, n_trials=6, seed=1)


@pytest.mark.parametrize("name", ["grid", "random", "optuna-tpe", "hyperopt-anneal", "nni-anneal", "optuna-cmaes",
                                  "optuna-ga", "optunity-pso", "optunity-nelder-mead"])
def test_multi_dimensional_space(name):
    space = {"lr": {"low": 1e-3, "high": 1.0, "log": True}, "momentum": {"low": 0.5, "high": 0.99},
             "schedule": {"choices": ["constant", "one_cycle"]}}
    trials = search(name, lambda p: bump(p) * p["momentum"], space, n_trials=9, seed=0)
    assert len(trials) == (8 if name == "grid" else 9)  # a product grid 2 x 2 x 2 fits in 9, never more
    assert all(parse_space(space).contains(p) for p, _ in trials)


def test_grid_is_log_spaced_and_product():
    lrs = [p["lr"] for p, _ in search("grid", bump, SPACE, n_trials=5)]
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    space = {"lr": {"low": 0.01, "high": 1.0, "log": True}, "momentum": {"low": 0.8, "high": 0.9}}
    points = [tuple(p.values()) for p, _ in search("grid", bump, space, n_trials=9)]
    assert len(set(points)) == 9 and {round(p[1], 6) for p in points} == {0.8, 0.85, 0.9}


def _staged_objective(calls):
    def objective(params, report):
        value = bump(params)
        for step in range(1, 10):
            calls.append(params["lr"])
            if report is not None and report(step * 10, value * step / 9):
                return Evaluation(params, value * step / 9, status="pruned", train_s=step)
        return Evaluation(params, value, train_s=9)
    return objective


@pytest.mark.parametrize("name", ["optuna-tpe-asha", "optuna-tpe-hyperband"])
def test_pruning_strategies_stop_trials_early(name):
    calls = []
    evaluations = get_strategy(name, SPACE, seed=0).run(_staged_objective(calls), n_trials=20)
    assert len(evaluations) == 20  # pruned trials count against the budget
    pruned = [e for e in evaluations if e.status == "pruned"]
    assert pruned and all(e.train_s < 9 for e in pruned)
    assert len(calls) < 20 * 9


def test_time_budget_and_overhead_are_kept():
    calls = []
    evaluations = get_strategy("random", SPACE).run(_staged_objective(calls), n_trials=100, time_budget_s=30)
    assert len(evaluations) == 4  # 9 s each: stops once 30 s are spent (never a trial more)
    assert all(e.overhead_s >= 0 for e in evaluations)


@pytest.mark.parametrize("space, match", [
    ({"lr": {"low": 1.0, "high": 0.1}}, r"space\.lr: low \(1.0\) must be below high"),
    ({"lr": {"low": 0.0, "high": 1.0, "log": True}}, r"space\.lr: a log scale needs low > 0"),
    ({"lr": {"low": 0.1, "high": 1.0, "scale": "log"}}, r"space\.lr: unknown key\(s\) scale"),
    ({"learning_rate": {"low": 0.1, "high": 1.0}}, r"space\.learning_rate: unknown parameter"),
    ({"lr": {"low": 0.1}}, r"space\.lr: needs both low and high"),
])
def test_malformed_space_is_a_clear_error(space, match):
    with pytest.raises(SpaceError, match=match):
        parse_space(space)


def test_unknown_strategy_names_the_list():
    with pytest.raises(ValueError, match="unknown strategy 'optuna-foo'.*optuna-tpe"):
        get_strategy("optuna-foo")
    assert {"grid", "random", "optuna-gp", "hyperopt-anneal", "nni-gp"} <= set(strategy_names())


MODEL_BASED = ["optuna-tpe", "optuna-gp", "optuna-cmaes", "optuna-tpe-asha", "optuna-tpe-hyperband", "hyperopt-tpe",
               "nni-tpe", "nni-gp"]


@pytest.mark.parametrize("name", MODEL_BASED)
def test_model_based_strategies_take_their_start_up_from_the_options(name):
    assert get_strategy(name, SPACE).startup_trials >= 1
    assert get_strategy(name, SPACE, n_startup_trials=3).startup_trials == 3
    assert get_strategy("random", SPACE).startup_trials is None


def test_nni_tpe_leaves_its_random_start_up_when_told():
    """NNI's TpeTuner draws its start-up proposals exactly as `random` does (same seed, same LRs), for 20 trials
    unless told otherwise: at a budget of 8 it was random search under another name. The option reaches it."""
    def lrs(name, **options):
        return [p["lr"] for p, _ in search(name, bump, SPACE, n_trials=8, seed=0, **options)]

    assert lrs("nni-tpe", n_startup_trials=20) == lrs("random")
    told = lrs("nni-tpe", n_startup_trials=4)
    assert told[:4] == lrs("random")[:4] and all(a != b for a, b in zip(told[4:], lrs("random")[4:]))


def test_optunity_nelder_mead_restarts_on_the_rest_of_its_budget():
    """On a smooth peak Nelder-Mead converges long before a budget of 24 (as optunity.maximize alone stops):
    the strategy restarts it, from a random point, until the budget is used; each trial names its restart."""
    space = {"lr": {"low": 1e-5, "high": 10.0, "log": True}}

    def wrapped(params, report):
        return Evaluation(params, -(math.log10(params["lr"]) + 1.3) ** 2)

    evaluations = get_strategy("optunity-nelder-mead", space, seed=0).run(wrapped, 24)
    restarts = [e.extra["restart"] for e in evaluations]
    assert len(evaluations) == 24 and restarts[0] == 0 and restarts[-1] >= 1 and restarts == sorted(restarts)
    first_run = [e.params["lr"] for e in evaluations if e.extra["restart"] == 0]
    assert len(first_run) < 24 and abs(math.log10(max(evaluations, key=lambda e: e.value).params["lr"]) + 1.3) < 0.05
    restart_start = next(e.params["lr"] for e in evaluations if e.extra["restart"] == 1)
    assert abs(math.log10(restart_start) - math.log10(first_run[0])) > 0.5  # not the first run's start again


def test_genetic_algorithms_first_generation_is_its_start_up():
    assert get_strategy("optuna-ga", SPACE).startup_trials == 4
    assert get_strategy("optuna-ga", SPACE, population_size=6).startup_trials == 6
