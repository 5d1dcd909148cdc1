"""Every strategy on cheap synthetic objectives: accuracy is a noisy bump in log10(lr), on an lr-only space,
a 3-D space and a conditional one (a schedule choice with its own sub-parameters)."""

import math

import numpy as np
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
from lrsearch.training.errors import InputError

OPTIMUM = 0.05
SPACE = {"lr": {"low": 1e-4, "high": 1.0, "log": True}}
# The range tests need a trainer; the self-tuning optimizers search nothing (one trial of their own: tested in
# tests/test_self_tuning.py). The registry is read whole, whichever test file registered the optional families.
strategy_names()
# The HPO tools of issue 25 (SMAC3, HEBO, DEHB, Nevergrad, skopt, Syne Tune) have the same contract in
# tests/test_hpo_tools.py, with their multi-fidelity and library-specific checks.
HPO_TOOLS = ("smac-", "hebo", "dehb", "nevergrad-", "skopt-", "synetune-")
LIBRARY_STRATEGIES = [n for n in REGISTRY if not n.startswith("lr-range") and not n.startswith(HPO_TOOLS)
                      and not getattr(REGISTRY[n], "self_tuning", False)]
# NNI's GP searches its acquisition function at the slow replay's size (experiments/budgets-replay-slow.toml):
# at its default (1e5 points, 250 L-BFGS starts) one 16-trial run takes a minute on two cores.
FAST = {"nni-gp": {"selection_num_warm_up": 1000, "selection_num_starting_points": 5}}


def bump(params: dict) -> float:
    x = math.log10(params["lr"] / OPTIMUM)
    noise = 0.01 * math.sin(params["lr"] * 1e4)  # deterministic "noise", so repeats are exact
    return 0.9 * math.exp(-x * x / 0.5) + noise


@pytest.mark.parametrize("name", LIBRARY_STRATEGIES)
def test_strategy_budget_bounds_seed_and_optimum(name):
    trials = search(name, bump, SPACE, n_trials=16, seed=0, **FAST.get(name, {}))
    assert len(trials) == 16  # exactly the budget
    assert all(1e-4 <= p["lr"] <= 1.0 and set(p) == {"lr"} for p, _ in trials)
    assert all(isinstance(p["lr"], float) for p, _ in trials)  # plain floats, not numpy scalars
    assert trials == search(name, bump, SPACE, n_trials=16, seed=0, **FAST.get(name, {}))  # same seed, same proposals
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
    ({"learning-rate": {"low": 0.1, "high": 1.0}}, r"space\.learning-rate: not a Python identifier"),
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


# The shared contract on a 3-D space and on a conditional one. Every registered library strategy keeps to its
# budget exactly, proposes within bounds (space.contains), and repeats itself with its seed.

SPACE_3D = {"lr": {"low": 1e-4, "high": 1.0, "log": True}, "weight_decay": {"low": 1e-5, "high": 1e-2, "log": True},
            "one_minus_momentum": {"low": 1e-3, "high": 0.5, "log": True}}
SCHEDULES = {"schedule": {"choices": {
    "constant": {},
    "cosine": {"final_lr_factor": {"low": 1e-3, "high": 0.5, "log": True}},
    "one_cycle": {"pct_start": {"low": 0.1, "high": 0.5}, "final_lr_factor": {"low": 1e-4, "high": 0.1, "log": True}}}}}
CONDITIONAL = {"lr": {"low": 1e-4, "high": 1.0, "log": True}} | SCHEDULES
BRANCH_PARAMS = {"constant": set(), "cosine": {"final_lr_factor"}, "one_cycle": {"pct_start", "final_lr_factor"}}
# the strategies whose library takes a fixed set of parameters: they search a conditional space flattened
FLATTENING = {"optuna-gp", "optuna-cmaes", "optuna-qmc", "optuna-ga", "nni-gp", "optunity-pso", "optunity-nelder-mead",
              "optunity-sobol", "optunity-cmaes"}


def bump_3d(params: dict) -> float:
    x = math.log10(params["weight_decay"] / 5e-4) ** 2 + math.log10(params["one_minus_momentum"] / 0.1) ** 2
    return bump(params) * math.exp(-x / 4)


HEIGHT = {"constant": 0.6, "cosine": 0.9, "one_cycle": 0.7}  # cosine is the best branch, at any lr


def by_schedule(params: dict) -> float:
    return HEIGHT[params["schedule"]] * bump(params)


@pytest.mark.parametrize("name", LIBRARY_STRATEGIES)
def test_contract_on_a_3d_space(name):
    trials = search(name, bump_3d, SPACE_3D, n_trials=8, seed=0, **FAST.get(name, {}))
    assert len(trials) == 8  # exactly the budget (grid: 2 x 2 x 2)
    assert all(parse_space(SPACE_3D).contains(p) for p, _ in trials)
    assert trials == search(name, bump_3d, SPACE_3D, n_trials=8, seed=0, **FAST.get(name, {}))


@pytest.mark.parametrize("name", LIBRARY_STRATEGIES)
def test_contract_on_a_conditional_space(name):
    trials = search(name, by_schedule, CONDITIONAL, n_trials=16, seed=0, **FAST.get(name, {}))
    assert len(trials) == 16  # exactly the budget (grid: 2 lr x (1 + 3 + 2 x 2) schedule points)
    assert all(set(p) == {"lr", "schedule"} | BRANCH_PARAMS[p["schedule"]] for p, _ in trials)  # only the active ones
    assert all(parse_space(CONDITIONAL).contains(p) for p, _ in trials)  # within the branch's own bounds
    assert trials == search(name, by_schedule, CONDITIONAL, n_trials=16, seed=0, **FAST.get(name, {}))


@pytest.mark.parametrize("name", ["optuna-tpe", "nni-tpe"])
def test_model_based_strategy_finds_the_best_branch(name):
    """After 8 random start-up trials, TPE proposes the best branch (cosine) more often than chance (1/3),
    and its best trial is in it."""
    shares, best = [], []
    for seed in range(4):
        trials = search(name, by_schedule, CONDITIONAL, n_trials=30, seed=seed, n_startup_trials=8)
        shares.append(sum(p["schedule"] == "cosine" for p, _ in trials[8:]) / 22)
        best.append(max(trials, key=lambda t: t[1])[0]["schedule"])
    assert sum(shares) / 4 > 0.5, shares
    assert best.count("cosine") >= 3, best


def test_optuna_takes_a_shared_name_of_another_kind_in_each_branch():
    """Optuna refuses one name with a log scale in one trial and a linear one in another: the adapter names a
    sub-parameter that branches share with other bounds `<choice>.<name>` inside the study."""
    space = {"schedule": {"choices": {"cosine": {"final_lr_factor": {"low": 1e-3, "high": 0.5, "log": True}},
                                      "linear": {"final_lr_factor": {"low": 0.0, "high": 0.5}}}}}
    trials = search("optuna-tpe", lambda p: p["final_lr_factor"], space, n_trials=12, seed=0)
    assert len(trials) == 12 and all(parse_space(space).contains(p) for p, _ in trials)
    assert {p["schedule"] for p, _ in trials} == {"cosine", "linear"}


def test_search_takes_any_parameter_name():
    space = {"learning_rate": {"low": 1e-4, "high": 1.0, "log": True}, "beta2": {"low": 0.9, "high": 0.999}}
    trials = search("random", lambda p: p["beta2"], space, n_trials=3)
    assert all(set(p) == {"learning_rate", "beta2"} for p, _ in trials)


@pytest.mark.parametrize("budget, per_axis, note", [
    (8, [2, 2, 2], "grid: 2 x 2 x 2 = 8 points (budget 8)"),
    (12, [3, 2, 2], "grid: 3 x 2 x 2 = 12 points (budget 12)"),  # one axis more where the budget allows
    (27, [3, 3, 3], "grid: 3 x 3 x 3 = 27 points (budget 27)"),  # budget^(1/3) on each axis
    (30, [3, 3, 3], "grid: 3 x 3 x 3 = 27 points (budget 30)"),  # 4 x 3 x 3 = 36 would not fit
])
def test_grid_uses_about_the_dth_root_of_the_budget_per_axis_and_says_so(budget, per_axis, note):
    strategy = get_strategy("grid", SPACE_3D)
    evaluations = strategy.run(lambda params, report=None: Evaluation(params, 0.0), budget)
    assert [len({e.params[n] for e in evaluations}) for n in SPACE_3D] == per_axis
    assert len(evaluations) == math.prod(per_axis) and strategy.space_notes() == [note]
    assert not strategy.flattens_space
    lrs = sorted({e.params["lr"] for e in evaluations})
    assert lrs[0] == 1e-4 and lrs[-1] == 1.0  # the axis spans the bounds


def test_grid_on_a_conditional_space_enumerates_branches_times_their_sub_grids():
    strategy = get_strategy("grid", CONDITIONAL)
    evaluations = strategy.run(lambda params, report=None: Evaluation(params, 0.0), 16)
    assert strategy.space_notes() == ["grid: 2 x (1 + 3 + 2 x 2) = 16 points (budget 16)"]
    per_branch = {b: [e.params for e in evaluations if e.params["schedule"] == b] for b in BRANCH_PARAMS}
    assert [len(v) for v in per_branch.values()] == [2, 2 * 3, 2 * 4]
    assert len({p["final_lr_factor"] for p in per_branch["cosine"]}) == 3
    assert {(p["pct_start"], p["final_lr_factor"]) for p in per_branch["one_cycle"]} == {
        (0.1, 1e-4), (0.1, 0.1), (0.5, 1e-4), (0.5, 0.1)}  # one_cycle's own bounds, not cosine's


def test_grid_says_which_axis_the_budget_leaves_at_one_point():
    strategy = get_strategy("grid", SPACE_3D)
    evaluations = strategy.run(lambda params, report=None: Evaluation(params, 0.0), 4)
    assert len(evaluations) == 4 and len({e.params["one_minus_momentum"] for e in evaluations}) == 1
    assert strategy.flattens_space and "one_minus_momentum" in strategy.space_notes()[1]


def test_grid_with_given_points_per_axis_is_the_product_tabular_benchmarks_use():
    strategy = get_strategy("grid", SPACE_3D, points={"lr": 8, "weight_decay": 3, "one_minus_momentum": 2})
    assert strategy.grid_size(10**6) == 48
    evaluations = strategy.run(lambda params, report=None: Evaluation(params, 0.0), 48)
    assert [len({e.params[n] for e in evaluations}) for n in SPACE_3D] == [8, 3, 2]
    assert len({tuple(e.params.values()) for e in evaluations}) == 48
    assert strategy.space_notes() == ["grid: 8 x 3 x 2 = 48 points (budget 48)"]
    lrs = sorted({e.params["lr"] for e in evaluations})
    assert lrs == pytest.approx(list(np.geomspace(lrs[0], lrs[-1], 8)))  # log-spaced over the bounds


@pytest.mark.parametrize("points, says", [
    ({"lr": 8, "weight_decay": 3}, "no count for one_minus_momentum"),
    ({"lr": 8, "weight_decay": 3, "one_minus_momentum": 2, "momentum": 2}, "'momentum' is not a numeric axis"),
    ({"lr": 0, "weight_decay": 3, "one_minus_momentum": 2}, "options.grid.points.lr: 0"),
])
def test_grid_points_that_do_not_fit_the_space_stop_with_the_axis_named(points, says):
    with pytest.raises(InputError, match=says):
        get_strategy("grid", SPACE_3D, points=points)


@pytest.mark.parametrize("name", LIBRARY_STRATEGIES)
def test_a_strategy_says_when_it_flattens_a_conditional_space(name):
    strategy = get_strategy(name, CONDITIONAL, **FAST.get(name, {}))
    flattened = [note for note in strategy.space_notes() if "conditional space flattened" in note]
    assert strategy.flattens_space == (name in FLATTENING) == bool(flattened)
    assert all(note.startswith(f"{name}: ") for note in strategy.space_notes())
    plain = get_strategy(name, SPACE_3D, **FAST.get(name, {}))
    assert not plain.flattens_space and not any("flattened" in note for note in plain.space_notes())


def test_cmaes_says_it_draws_a_choice_at_random():
    assert get_strategy("optuna-cmaes", SPACE_3D).space_notes() == []
    notes = get_strategy("optuna-cmaes", SPACE | SCHEDULES).space_notes()
    assert get_strategy("optuna-cmaes", SPACE | SCHEDULES).flattens_space and "schedule drawn at random" in notes[-1]


@pytest.mark.parametrize("name", [n for n in strategy_names() if n.startswith("lr-range")])
def test_range_tests_say_they_search_lr_only(name):
    assert get_strategy(name, SPACE).space_notes() == [] and not get_strategy(name, SPACE).flattens_space
    strategy = get_strategy(name, SPACE_3D | SCHEDULES)
    (note,) = strategy.space_notes()
    assert strategy.flattens_space and note.startswith(f"{name}: searches lr only")
    assert all(n in note for n in ("weight_decay", "one_minus_momentum", "schedule", "pct_start", "final_lr_factor"))
