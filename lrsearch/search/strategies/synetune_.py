"""Syne Tune's BORE searcher driven directly, with no Syne Tune scheduler or backend: `searcher.suggest()`
-> a config, `searcher.on_trial_complete(trial_id, config, metric)`.

BORE (Tiao et al., ICML 2021, "Bayesian optimization by density-ratio estimation") labels the best quarter
of the results (`gamma` = 0.25) and fits a classifier to tell them from the rest; its predicted
probability is the acquisition, maximised over 500 random candidates (Syne Tune's defaults, and its
default classifier, XGBoost). BORE minimises: it is told the negated value. The space is Syne Tune's
config-space dict, fixed keys, so a conditional space is searched flattened (space.py): `loguniform`,
`uniform`, `choice`. Its first `init_random` proposals are random; XGBoost's default `min_child_weight` (1)
lets it split on 8 results or more only, so below that its proposals are random too. Each proposal scores
its candidates one at a time: a median 1.8 s a proposal on 2 busy CPU cores with 500 candidates
(results/budgets-replay-slow/tables/budget_overhead.csv).

Randomness: BORE draws its random configurations and candidates from numpy's global generator (the
domains' `sample()` without a random state), which is this run's own while BORE runs
(common.own_numpy_state), so a seeded run repeats itself.
"""

from __future__ import annotations

import itertools

from lrsearch.search.strategies.base import AskTellStrategy, Option, Proposal, register
from lrsearch.search.strategies.common import own_numpy_state, within_bounds
from lrsearch.search.strategies.space import Dimension, SearchSpace

CLASSIFIERS = ("xgboost", "logreg", "rf", "mlp")  # Syne Tune's Bore(classifier=...)


def synetune_space(space: SearchSpace) -> dict:
    from syne_tune.config_space import choice, loguniform, uniform

    def domain(d: Dimension):
        if d.categorical:
            return choice(list(d.choices))
        return (loguniform if d.log else uniform)(d.low, d.high)

    return {d.name: domain(d) for d in space}


@register
class SyneTuneBORE(AskTellStrategy):
    name = "synetune-bore"
    summary = "Syne Tune's BORE searcher (density-ratio estimation by an XGBoost classifier), 10 random start-up trials"
    requires = (("syne_tune", "pip install -e '.[synetune]' && pip install --no-deps syne-tune==0.16.0"),)
    default_startup_trials = 10  # as Optuna's TPE and GP (Syne Tune's own default: 6)
    flattens_conditional = True  # its config space is a dict of fixed keys
    options_spec = (
        Option("classifier", str, "xgboost", "the classifier that estimates the density ratio (Syne Tune's default)",
               choices=CLASSIFIERS),
        Option("acq_candidates", int, 500, "random candidates the classifier scores per proposal (Syne Tune's "
               "default; scored one at a time, most of a proposal's seconds)"),
    )

    def _start(self, n_trials, in_flight):
        from syne_tune.optimizer.schedulers.searchers.bore import Bore
        self._flat = self.space.flattened()
        self._numpy = own_numpy_state(self.seed)
        with self._numpy:
            self._searcher = Bore(synetune_space(self._flat), random_seed=self.seed, init_random=self.startup_trials,
                                  classifier=self.option("classifier"), feval_acq=self.option("acq_candidates"))
        self._ids = itertools.count()

    def _ask(self):
        with self._numpy:
            config = self._searcher.suggest()
        flat = {d.name: within_bounds(d, config[d.name]) for d in self._flat}
        return Proposal(self.space.from_flat(flat), None, (next(self._ids), config))

    def _tell(self, proposal, evaluation):
        trial_id, config = proposal.handle
        with self._numpy:
            if evaluation.has_value:
                self._searcher.on_trial_complete(trial_id, config, -evaluation.value)
            else:  # Syne Tune's searcher API for a trial whose evaluation failed
                self._searcher.on_trial_error(trial_id)
