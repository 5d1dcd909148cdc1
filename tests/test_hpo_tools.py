"""The adapters of SMAC3, HEBO, DEHB, Nevergrad, scikit-optimize and Syne Tune (issue 25), on cheap synthetic
objectives: the shared contract (exact budget, within bounds, repeatable with the seed, near the optimum of a
known bump), start-up proposals that ignore results, Hyperband's decisions on hand-made learning curves, and
the adapters' promises to the process (global generators and torch threads left as they were).

`make install` installs every one of these libraries (the hpo extra; HEBO, DEHB and Syne Tune with `--no-deps`,
see pyproject.toml), so a missing one fails its tests, naming it: the one policy for a missing library here."""

import math
import subprocess
import sys

import numpy as np
import pytest
from test_strategies import BRANCH_PARAMS, CONDITIONAL, SPACE, SPACE_3D, bump, bump_3d, by_schedule

from lrsearch.search.strategies import REGISTRY, Evaluation, get_strategy, parse_space, search
from lrsearch.search.strategies.base import OptionError

LIBRARY = {"smac-bo": "smac", "smac-hyperband": "smac", "hebo": "hebo", "dehb": "dehb", "nevergrad-ngopt": "nevergrad",
           "nevergrad-de": "nevergrad", "skopt-gp": "skopt", "synetune-bore": "syne_tune"}
NEW = list(LIBRARY)
# HEBO's acquisition search at 2 generations instead of 100 (about 6 s a proposal on two cores, 1 s here);
# BORE scoring 50 random candidates instead of 500 (scored one by one: 3 s a proposal). The search is smaller,
# the code path the same.
FAST = {"hebo": {"acq_generations": 2}, "synetune-bore": {"acq_candidates": 50}}
MODEL_BASED = [n for n in NEW if REGISTRY[n].default_startup_trials is not None]


def needs(name: str) -> dict:
    """Fail, naming it, where `name`'s library is not installed (`make install` installs it); else the options that
    keep its test fast."""
    missing = REGISTRY[name].missing_packages()
    if missing:
        pytest.fail(f"{name}: {', '.join(missing)} not installed, though `make install` installs it", pytrace=False)
    return FAST.get(name, {})


def test_every_adapter_is_registered_and_imports_without_its_library():
    """lrsearch imports on a machine without these libraries: the adapters import them inside their methods, and a
    missing one is named with the extra to install."""
    blocked = sorted(set(LIBRARY.values()) | {"ConfigSpace"})
    code = (f"import sys\nfor name in {blocked!r}: sys.modules[name] = None  # an import of it fails\n"
            "from lrsearch.search.strategies import REGISTRY, get_strategy, strategy_names\n"
            f"for name in {NEW!r}:\n"
            "    get_strategy(name, {'lr': {'low': 1e-4, 'high': 1.0, 'log': True}})  # built without the library\n"
            "    print(name, REGISTRY[name].missing_packages())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install -e '.[smac]'" in out and "'.[synetune]'" in out and "--no-deps hebo==0.3.6" in out
    assert len(out.splitlines()) == len(NEW) and all("[]" not in line for line in out.splitlines())


@pytest.mark.parametrize("name", NEW)
def test_budget_bounds_and_optimum(name):
    options = needs(name)
    trials = search(name, bump, SPACE, n_trials=16, seed=0, **options)
    assert len(trials) == 16 and all(set(p) == {"lr"} and isinstance(p["lr"], float) and 1e-4 <= p["lr"] <= 1.0
                                     for p, _ in trials)
    if name != "nevergrad-ngopt":  # NGOpt picks Cobyla here: it starts at the centre and draws nothing
        assert search(name, bump, SPACE, n_trials=4, seed=1, **options) != trials[:4]  # another seed, others


@pytest.mark.parametrize("name", [n for n in NEW if n != "nevergrad-de"])  # DE: its first population of
def test_proposals_after_the_start_up_close_in_on_the_optimum(name):  # 16+ ignores results (test below)
    """The library sees the values, with the right sign, and uses them: over trials 9 to 16 the median distance to
    the bump's optimum (0.05) is under 0.6 decades, and over 0.9 decades when the values reach it negated (a sign
    error: it then seeks the edges). Random search has a median of about 0.9 either way (seed 0: 0.89), so it fails
    the first; each adapter here gave 0.03 to 0.58 against 1.05 to 2.03 negated (seed 0, 2026-12-03)."""
    options = needs(name)

    def late_error(objective):
        trials = search(name, objective, SPACE, n_trials=16, seed=0, **options)
        return float(np.median([abs(math.log10(p["lr"] / 0.05)) for p, _ in trials[8:]]))

    assert late_error(bump) < 0.6
    assert late_error(lambda params: -bump(params)) > NEGATED_FLOOR.get(name, 0.9)


# SMAC3's proposals past about 10 trials depend on Python's hash seed (PYTHONHASHSEED: the same seed in two processes
# can differ; the Makefile fixes it at 0). Under Hyperband a share of each bracket's configurations is drawn at
# random, so with the values negated its late error sits near random's 0.9: 0.96 to 1.16 in 14 processes and 0.846
# in one CI run (2026-12-04), against 0.11 to 0.15 with the right sign (9 hash seeds). A sign error would bring it
# under 0.6.
NEGATED_FLOOR = {"smac-hyperband": 0.7}


@pytest.mark.parametrize("name", NEW)
def test_contract_on_a_3d_and_a_conditional_space(name):
    """Past the start-up too (the model-based ones with a proposal after it), every proposal is on the space:
    exactly the active parameters, each within its branch's bounds; and the same seed repeats the run."""
    options = needs(name)
    for space, objective, budget in ((SPACE_3D, bump_3d, 6), (CONDITIONAL, by_schedule, 8)):
        startup = {"n_startup_trials": budget - 1} if name in MODEL_BASED else {}
        trials = search(name, objective, space, n_trials=budget, seed=0, **options, **startup)
        assert len(trials) == budget and all(parse_space(space).contains(p) for p, _ in trials)
    assert all(set(p) == {"lr", "schedule"} | BRANCH_PARAMS[p["schedule"]] for p, _ in trials)
    assert trials == search(name, by_schedule, CONDITIONAL, n_trials=8, seed=0, **options, **startup)


@pytest.mark.parametrize("name", NEW)
def test_flattening_is_declared(name):
    """HEBO, scikit-optimize and Syne Tune take fixed sets of parameters: they say they flatten a conditional
    space. SMAC and DEHB (ConfigSpace conditions) and Nevergrad (a choice among Dicts) search it natively."""
    strategy = get_strategy(name, CONDITIONAL)
    assert strategy.flattens_space == (name in {"hebo", "skopt-gp", "synetune-bore"})
    assert not get_strategy(name, SPACE_3D).flattens_space


@pytest.mark.parametrize("name", [n for n in NEW if not REGISTRY[n].budget_aware])
def test_a_run_at_a_small_budget_is_the_first_trials_of_a_larger_run(name):
    """What the replay relies on (budget_aware = False): proposals do not depend on the budget."""
    options = needs(name)
    assert search(name, bump, SPACE, n_trials=5, seed=3, **options) == \
        search(name, bump, SPACE, n_trials=12, seed=3, **options)[:5]


# ------------------------------------------------------------ start-up proposals


def _lrs(name: str, objective, n_trials: int, **options) -> list[float]:
    return [p["lr"] for p, _ in search(name, objective, SPACE, n_trials=n_trials, seed=0, **options)]


def _distinct(values: list) -> list:
    return list(dict.fromkeys(values))


@pytest.mark.parametrize("name", MODEL_BASED)
def test_n_startup_trials_reaches_the_library(name):
    """With n_startup_trials = k the first k proposals ignore the results: two objectives with opposite optima get
    the same k proposals, and the model's proposals after them differ. Where the library holds back longer:
    BORE's XGBoost classifier (min_child_weight 1) cannot split on fewer than 8 results, so k = 10 (its default)
    there. SMAC's Hyperband promotes some of its first configurations, by their results, before all k are
    tried, and its forest's first proposals come several trials after them: its first k *new* configurations,
    and a difference within 18 trials."""
    options = needs(name)
    k, n_trials = {"synetune-bore": (10, 13), "smac-hyperband": (4, 18)}.get(name, (4, 7))
    low = _lrs(name, lambda p: -math.log10(p["lr"]), n_trials, n_startup_trials=k, **options)  # best at 1e-4
    high = _lrs(name, lambda p: math.log10(p["lr"]), n_trials, n_startup_trials=k, **options)  # best at 1.0
    if name == "smac-hyperband":
        low, high = _distinct(low), _distinct(high)
    assert low[:k] == high[:k]
    assert low[k:] != high[k:]
    assert get_strategy(name, SPACE, n_startup_trials=k, **options).startup_trials == k


def test_nevergrad_de_first_population_ignores_results():
    needs("nevergrad-de")
    low = _lrs("nevergrad-de", lambda p: -math.log10(p["lr"]), 10, population_size=5)
    high = _lrs("nevergrad-de", lambda p: math.log10(p["lr"]), 10, population_size=5)
    assert low[:5] == high[:5] and low[5:] != high[5:]


# ------------------------------------------------------------ multi-fidelity: Hyperband over evaluations

FULL = 9  # evaluations of a full trial in these tests: rungs at 1, 3 and 9 evaluations (eta = 3)


def _curves(trials: list):
    """A learning curve per configuration whose ranking is the same at every evaluation: the quality q = bump(lr)
    scaled by a rising curve, so a bad configuration is clearly low from its first evaluation. Successive halving's
    right decision is known: promote the best 1/eta of each rung."""
    def objective(params, report):
        for k in range(1, FULL + 1):
            value = bump(params) * (0.6 + 0.4 * k / FULL)
            if report is not None and k < FULL and report(k, value):
                trials.append((params["lr"], k))
                return Evaluation(params, value, status="pruned", train_s=k)
        trials.append((params["lr"], FULL))
        return Evaluation(params, value, train_s=FULL)
    return objective


@pytest.mark.parametrize("name", ["smac-hyperband", "dehb"])
def test_hyperband_prunes_the_bad_and_finishes_the_best(name):
    needs(name)
    trials: list[tuple[float, int]] = []
    evaluations = get_strategy(name, SPACE, seed=0, max_fidelity=FULL).run(_curves(trials), 16)
    assert len(evaluations) == 16
    for e, (_, evals) in zip(evaluations, trials):
        assert (e.status == "pruned") == (evals < FULL) and e.train_s == evals  # stopped at its fidelity
    assert sum(evals for _, evals in trials) < 16 * FULL / 2  # pruning saved most of the training
    # The first bracket: a rung of trials at 1 evaluation, then the promotions at 3, then at 9.
    rungs, start = [], 0
    for fidelity in (1, 3, FULL):
        end = start
        while end < len(trials) and trials[end][1] == fidelity:
            end += 1
        rungs.append(evaluations[start:end])
        start = end
    assert [len(r) for r in rungs] == [9, 3, 1], [len(r) for r in rungs]
    for lower, promoted in zip(rungs, rungs[1:]):
        best_of_lower = sorted(lower, key=lambda e: e.value, reverse=True)[:len(promoted)]
        assert {e.params["lr"] for e in promoted} == {e.params["lr"] for e in best_of_lower}
    (finished,) = rungs[2]
    assert finished.status == "ok" and finished.params["lr"] == max(rungs[0], key=lambda e: e.value).params["lr"]


@pytest.mark.parametrize("name", ["smac-hyperband", "dehb"])
def test_fidelity_options_are_checked(name):
    with pytest.raises(OptionError, match=r"max_fidelity = 1: expected more than min_fidelity \(1\)"):
        get_strategy(name, SPACE, max_fidelity=1)
    with pytest.raises(OptionError, match="eta = 1: expected at least 2"):
        get_strategy(name, SPACE, eta=1)


# ------------------------------------------------------------ robustness and the process around them


@pytest.mark.parametrize("name", NEW)
def test_a_run_where_every_trial_diverges_still_spends_its_budget(name):
    """Diverged trials score 0.0 and are told so: all equal results (no best quarter for BORE, no power transform
    for HEBO) must not stop a run."""
    options = needs(name) | ({"n_startup_trials": 3} if name in MODEL_BASED else {})
    evaluations = get_strategy(name, SPACE, seed=0, **options).run(
        lambda params, report: Evaluation(params, 0.0, status="diverged"), 4)
    assert len(evaluations) == 4 and all(parse_space(SPACE).contains(e.params) for e in evaluations)


@pytest.mark.parametrize("name", ["hebo", "synetune-bore"])
def test_global_generators_and_torch_threads_are_left_as_they_were(name):
    """HEBO and BORE draw from numpy's global generator (HEBO from torch's too): the adapter gives them their own,
    so the trainer's draws are the same with or without a search in between; HEBO's one torch thread is its own."""
    import torch

    options = needs(name) | {"n_startup_trials": 3}
    np.random.seed(7)
    torch.manual_seed(7)
    threads = torch.get_num_threads()
    search(name, bump, SPACE, n_trials=4, seed=0, **options)
    after = (np.random.random(), torch.rand(1).item())
    np.random.seed(7)
    torch.manual_seed(7)
    assert after == (np.random.random(), torch.rand(1).item())
    assert torch.get_num_threads() == threads


def test_ngopt_at_64_trials_gets_past_nevergrads_metamodel_bug():
    """At 64 trials on lr alone NGOpt picks its metamodel, which calls float() on a one-element array: NumPy 2.4
    raises there (TypeError) without the adapter's patch."""
    needs("nevergrad-ngopt")
    trials = search("nevergrad-ngopt", bump, SPACE, n_trials=64, seed=0)
    assert len(trials) == 64 and abs(math.log10(max(trials, key=lambda t: t[1])[0]["lr"] / 0.05)) < 0.2


def test_smac_leaves_the_root_logger_as_it_was():
    """SMAC's own logging set-up (`logging_level` other than False) would replace the root logger's handlers and
    level; the adapter leaves it off and sets the `smac` logger's level only."""
    import logging

    needs("smac-bo")
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    search("smac-bo", bump, SPACE, n_trials=2, seed=0)
    assert (root.level, list(root.handlers)) == before
