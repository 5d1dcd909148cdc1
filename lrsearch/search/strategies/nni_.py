"""NNI's tuners driven in-process (no NNI manager): generate_parameters / receive_trial_result.

NNI's advisors (Hyperband, BOHB) are left out: they only run behind NNI's manager and its
command channel, and are broken in NNI 3.0 (microsoft/nni#5263). `lrsearch nni-experiment`
runs a real NNI experiment instead.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random

import numpy as np

from lrsearch.search.strategies.base import AskTellStrategy, Option, Proposal, register
from lrsearch.search.strategies.space import SearchSpace
from lrsearch.training.progress import libraries_verbose


def nni_space(space: SearchSpace) -> dict:
    out = {}
    for d in space:
        if d.categorical:
            out[d.name] = {"_type": "choice", "_value": list(d.choices)}
        else:
            out[d.name] = {"_type": "loguniform" if d.log else "uniform", "_value": [d.low, d.high]}
    return out


class _NNI(AskTellStrategy):
    def tuner(self):
        raise NotImplementedError

    def _start(self, n_trials, in_flight):
        import nni  # noqa: F401  (its first import sets the `nni` logger to INFO: levels are set after it)
        for name in ("nni", "hyperopt"):  # their own lines only with --verbose
            logging.getLogger(name).setLevel(logging.INFO if libraries_verbose() else logging.WARNING)
        random.seed(self.seed)
        np.random.seed(self.seed)
        with _seeded_random_states(self.seed):
            self._tuner = self.tuner()
            self._tuner.update_search_space(nni_space(self.space))
        self._ids = itertools.count()

    def _ask(self):
        parameter_id = next(self._ids)
        params = self._tuner.generate_parameters(parameter_id)
        return Proposal(dict(params), None, (parameter_id, params))

    def _tell(self, proposal, evaluation):
        parameter_id, params = proposal.handle
        self._tuner.receive_trial_result(parameter_id, params, evaluation.value)


@register
class NNITPE(_NNI):
    name, summary = "nni-tpe", "NNI's TpeTuner, 10 random start-up trials like Optuna's TPE"
    # NNI's default is 20 (TpeArguments.n_startup_jobs): within budgets up to 20 it was random search,
    # proposal for proposal the same LRs as `random`.
    default_startup_trials = 10

    def tuner(self):
        from nni.algorithms.hpo.tpe_tuner import TpeTuner
        return TpeTuner(optimize_mode="maximize", seed=self.seed, tpe_args={"n_startup_jobs": self.startup_trials})


@register
class NNIEvolution(_NNI):
    name, summary = "nni-evolution", "NNI's EvolutionTuner (population of random points, then mutation)"
    options_spec = (Option("population_size", int, 8, "individuals; the first population is drawn at random"),)

    def tuner(self):
        from nni.algorithms.hpo.evolution_tuner import EvolutionTuner
        return EvolutionTuner(optimize_mode="maximize", population_size=self.startup_trials)

    @property
    def startup_trials(self) -> int:
        """Its first population is drawn at random; mutation starts after it."""
        return int(self.option("population_size"))


@register
class NNIAnneal(_NNI):
    name, summary = "nni-anneal", "NNI's anneal tuner (its Hyperopt-based simulated annealing)"

    def tuner(self):
        from nni.algorithms.hpo.hyperopt_tuner import HyperoptTuner
        return HyperoptTuner("anneal", optimize_mode="maximize")


@register
class NNIGP(_NNI):
    name, summary = "nni-gp", "NNI's GPTuner (Gaussian process), with its SciPy >= 1.11 bug patched"
    default_startup_trials = 5  # our choice; NNI's cold_start_num default is 10
    options_spec = (
        Option("selection_num_warm_up", int, 100_000, "random points the acquisition function is evaluated at "
               "(NNI's default)"),
        Option("selection_num_starting_points", int, 250, "L-BFGS starts of the acquisition search (NNI's default)"))

    def tuner(self):
        from nni.algorithms.hpo.gp_tuner import GPTuner, util
        _patch_gp_minimize(util)
        # The acquisition search's size is NNI's default (1e5 random points, 250 L-BFGS starts) unless
        # options say otherwise; replays of many seeds use a smaller one (experiments/budgets-replay.toml).
        return GPTuner(optimize_mode="maximize", cold_start_num=self.startup_trials,
                       selection_num_warm_up=self.option("selection_num_warm_up"),
                       selection_num_starting_points=self.option("selection_num_starting_points"))


@contextlib.contextmanager
def _seeded_random_states(seed: int):
    """NNI's evolution, GP and anneal tuners take no seed: each makes `np.random.RandomState()`
    from OS entropy while it is built and given its space. Meanwhile, give such argument-less
    calls seeds derived from ours, so a run repeats itself."""
    original = np.random.RandomState
    seeds = itertools.count(seed * 1000)

    class SeededRandomState(original):
        def __init__(self, seed=None):
            super().__init__(next(seeds) if seed is None else seed)

    np.random.RandomState = SeededRandomState
    try:
        yield
    finally:
        np.random.RandomState = original


def _patch_gp_minimize(util_module) -> None:
    """NNI 3.0's GPTuner passes x0 of shape (1, n) to scipy.optimize.minimize, which SciPy >= 1.11
    rejects ("'x0' must only have one dimension"). Flatten x0 and the objective's result."""
    minimize = util_module.minimize
    if getattr(minimize, "_lrsearch_patched", False):
        return

    def flat_minimize(fun, x0, *args, **kwargs):
        result = minimize(lambda x: float(np.ravel(fun(x))[0]), np.ravel(x0), *args, **kwargs)
        result.fun = np.atleast_1d(result.fun)  # NNI reads res.fun[0]
        return result

    flat_minimize._lrsearch_patched = True
    util_module.minimize = flat_minimize
