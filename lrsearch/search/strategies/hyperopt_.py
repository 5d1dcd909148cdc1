"""Hyperopt's algorithms through `fmin`."""

from __future__ import annotations

import functools
import math
import random

import numpy as np
from hyperopt import STATUS_OK, Trials, anneal, fmin, hp, rand, tpe

from lrsearch.search.strategies.base import Strategy, register
from lrsearch.search.strategies.space import SearchSpace


def hyperopt_space(space: SearchSpace) -> dict:
    out = {}
    for d in space:
        if d.categorical:
            out[d.name] = hp.choice(d.name, list(d.choices))
        elif d.log:
            out[d.name] = hp.loguniform(d.name, math.log(d.low), math.log(d.high))
        else:
            out[d.name] = hp.uniform(d.name, d.low, d.high)
    return out


class _Hyperopt(Strategy):
    algorithm = None  # a hyperopt `suggest` function, wrapped in staticmethod

    def suggest(self):
        return self.algorithm

    def _search(self, objective, n_trials):
        def fn(params: dict) -> dict:
            return {"loss": -objective(params, None).value, "status": STATUS_OK}

        fmin(fn, hyperopt_space(self.space), algo=self.suggest(), max_evals=n_trials, trials=Trials(),
             rstate=np.random.default_rng(self.seed), show_progressbar=False)


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
