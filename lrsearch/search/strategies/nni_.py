"""NNI's tuners driven in-process (no NNI manager): generate_parameters / receive_trial_result.

NNI's advisors (Hyperband, BOHB) are left out: they only run behind NNI's manager and its
command channel, and are broken in NNI 3.0 (microsoft/nni#5263). `lrsearch nni-experiment`
runs a real NNI experiment instead.

A conditional dimension is NNI's nested choice, `{"_type": "choice", "_value": [{"_name": "cosine",
"final_lr_factor": {...}}, ...]}`, which the TPE, evolution and anneal tuners read (NNI's
`format_search_space` / `json2space`). The GP tuner takes neither nested choices nor strings: it
searches the flattened space (space.py), each categorical dimension as its choices' indices.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import logging
import random

import numpy as np

from lrsearch.search.strategies.base import AskTellStrategy, Option, Proposal, register
from lrsearch.search.strategies.common import WorstSoFar
from lrsearch.search.strategies.space import Dimension, SearchSpace
from lrsearch.training.progress import libraries_verbose


def nni_space(space: SearchSpace) -> dict:
    """The space in NNI's search-space format, a conditional dimension as a nested choice."""
    out = {}
    for d in space:
        if d.conditional:
            out[d.name] = {"_type": "choice", "_value": [{"_name": choice} | nni_space(sub)
                                                         for choice, sub in d.branches.items()]}
        else:
            out[d.name] = _nni_dimension(d, list(d.choices) if d.categorical else None)
    return out


def _nni_dimension(d: Dimension, choices: list | None) -> dict:
    if choices is not None:
        return {"_type": "choice", "_value": choices}
    return {"_type": "loguniform" if d.log else "uniform", "_value": [d.low, d.high]}


def from_nni(params: dict) -> dict:
    """NNI's parameters as flat params: a nested choice's `_name` is the choice, its sub-parameters merged in."""
    flat = {}
    for name, value in params.items():
        if isinstance(value, dict):
            flat[name] = value["_name"]
            flat.update(from_nni({k: v for k, v in value.items() if k != "_name"}))
        else:
            flat[name] = value
    return flat


class _NNI(AskTellStrategy):
    # NNI tells a tuner of a failed trial by trial_end(success=False) alone. The evolution tuner acts on it (it
    # replaces the individual by a random one); TPE, annealing and GP do nothing with it, so they get the worst
    # value seen so far instead (see _tell).
    impute_failures = True
    @abc.abstractmethod
    def tuner(self): ...

    def tuner_space(self) -> dict:
        """The space as this tuner takes it."""
        return nni_space(self.space)

    def params(self, generated: dict) -> dict:
        """The tuner's parameters as flat params on the space."""
        return self.space.active(from_nni(generated))

    def _start(self, n_trials, in_flight):
        import nni  # noqa: F401  (its first import sets the `nni` logger to INFO: levels are set after it)
        for name in ("nni", "hyperopt"):  # their own lines only with --verbose
            logging.getLogger(name).setLevel(logging.INFO if libraries_verbose() else logging.WARNING)
        random.seed(self.seed)
        np.random.seed(self.seed)
        with _seeded_random_states(self.seed):
            self._tuner = self.tuner()
            self._tuner.update_search_space(self.tuner_space())
        self._ids = itertools.count()
        self._worst = WorstSoFar()

    def _ask(self):
        parameter_id = next(self._ids)
        params = self._tuner.generate_parameters(parameter_id)
        return Proposal(self.params(params), None, (parameter_id, params))

    def _tell(self, proposal, evaluation):
        parameter_id, params = proposal.handle
        if evaluation.has_value:
            self._worst.see(evaluation.value)
            self._tuner.receive_trial_result(parameter_id, params, evaluation.value)
        elif self.impute_failures and self._worst.value is not None:
            # left out, NNI's TPE goes back to the failing region as unexplored (24 of 25 proposals after the
            # start-up on tests/test_value_contract.py's objective): it gets the worst value seen so far instead
            self._tuner.receive_trial_result(parameter_id, params, self._worst.value)
        self._tuner.trial_end(parameter_id, evaluation.has_value)


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
    impute_failures = False  # its trial_end(success=False) replaces the failed individual
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
    flattens_conditional = True  # its TargetSpace is a fixed box of named numbers
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

    def tuner_space(self):
        # NNI's GP reads choices as numbers (its TargetSpace refuses strings): a choice is its index
        return {d.name: _nni_dimension(d, list(range(len(d.choices))) if d.categorical else None)
                for d in self.space.flattened()}

    def params(self, generated):
        flat = {d.name: d.choices[min(max(round(generated[d.name]), 0), len(d.choices) - 1)] if d.categorical
                else generated[d.name] for d in self.space.flattened()}
        return self.space.from_flat(flat)

    def space_notes(self):
        categorical = [d.name for d in self.space.flattened() if d.categorical]
        return super().space_notes() + ([f"{self.name}: {', '.join(categorical)} searched as the index of the "
                                         "choice (NNI's GP takes numbers only)"] if categorical else [])


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
