"""Hyperopt's algorithms through `fmin`. A conditional dimension is Hyperopt's own nested form: an
`hp.choice` among dicts, one per branch, holding the choice and that branch's sub-parameters (labelled
`<choice>.<name>`, since Hyperopt's labels are unique across the whole space)."""

from __future__ import annotations

import functools
import math
import random

import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, Trials, anneal, fmin, hp, rand, tpe
from hyperopt.exceptions import AllTrialsFailed

from lrsearch.search.strategies.base import Strategy, register
from lrsearch.search.strategies.common import WorstSoFar
from lrsearch.search.strategies.space import Dimension, SearchSpace


def hyperopt_space(space: SearchSpace) -> dict:
    out = {}
    for d in space:
        if d.conditional:
            out[d.name] = hp.choice(d.name, [{d.name: choice} | {s.name: _expression(f"{choice}.{s.name}", s) for s in sub}
                                             for choice, sub in d.branches.items()])
        else:
            out[d.name] = _expression(d.name, d)
    return out


def _expression(label: str, d: Dimension):
    if d.categorical:
        return hp.choice(label, list(d.choices))
    if d.log:
        return hp.loguniform(label, math.log(d.low), math.log(d.high))
    return hp.uniform(label, d.low, d.high)


def from_hyperopt(sample: dict) -> dict:
    """Hyperopt's sample as flat params: a conditional dimension's dict (its choice and sub-parameters) merged in
    (`SearchSpace.active` puts them in the space's order)."""
    params = {}
    for name, value in sample.items():
        params.update(value if isinstance(value, dict) else {name: value})
    return params


class _Hyperopt(Strategy):
    algorithm = None  # a hyperopt `suggest` function, wrapped in staticmethod

    def suggest(self):
        return self.algorithm

    def _search(self, objective, n_trials):
        worst = WorstSoFar()

        def fn(params: dict) -> dict:
            evaluation = objective(self.space.active(from_hyperopt(params)), None)
            if not evaluation.has_value:
                # Hyperopt's own failure state: TPE and annealing learn from STATUS_OK trials only. Adaptive TPE
                # reads every trial's loss (hyperopt/atpe.py), so a failed one carries the worst loss seen so far.
                return {"status": STATUS_FAIL, "loss": -worst.fill(0.0)}
            worst.see(evaluation.value)
            return {"loss": -evaluation.value, "status": STATUS_OK}

        try:
            fmin(fn, hyperopt_space(self.space), algo=self.suggest(), max_evals=n_trials, trials=Trials(),
                 rstate=np.random.default_rng(self.seed), show_progressbar=False)
        except AllTrialsFailed:  # raised after the budget was spent, when not one trial succeeded
            pass


@register
class HyperoptTPE(_Hyperopt):
    name, summary = "hyperopt-tpe", "Hyperopt's TPE (tpe.suggest), 10 random start-up trials like Optuna's TPE"
    # Hyperopt's default is 20 start-up trials: at the budgets compared here TPE would be random search.
    default_startup_trials = 10

    def suggest(self):
        return functools.partial(tpe.suggest, n_startup_jobs=self.startup_trials)


@register
class HyperoptAnneal(_Hyperopt):
    name, summary, algorithm = "hyperopt-anneal", "Hyperopt's simulated annealing (anneal.suggest)", staticmethod(anneal.suggest)


@register
class HyperoptRandom(_Hyperopt):
    name, summary, algorithm = "hyperopt-random", "Hyperopt's random search (rand.suggest)", staticmethod(rand.suggest)


@register
class HyperoptATPE(_Hyperopt):
    name, summary = "hyperopt-atpe", "Hyperopt's adaptive TPE (atpe.suggest; needs lightgbm and scikit-learn)"
    requires = (("lightgbm", "lightgbm"), ("sklearn", "scikit-learn"))

    def suggest(self):
        from hyperopt import atpe
        return atpe.suggest

    def _search(self, objective, n_trials):
        # ATPE ignores fmin's rstate and draws from the global generators: seed those, after the
        # first import of its dependencies (which draws from them too). atpe.suggest imports
        # lightgbm and scikit-learn on its first call, so import them here, before seeding.
        import lightgbm  # noqa: F401
        import sklearn.preprocessing  # noqa: F401
        self.suggest()
        random.seed(self.seed)
        np.random.seed(self.seed)
        super()._search(objective, n_trials)
