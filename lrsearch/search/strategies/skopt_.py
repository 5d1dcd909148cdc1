"""scikit-optimize's `Optimizer` driven with ask/tell: `optimizer.ask()` -> a point (a list in the
dimensions' order), `optimizer.tell(point, loss)`.

scikit-optimize minimises: it is told the negated value. Its space is a fixed list of dimensions, so a
conditional space is searched flattened (space.py): `Real(prior="log-uniform")` for a log dimension,
`Real` for a linear one, `Categorical` for a choice. The model is a Gaussian process
(`base_estimator="GP"`, its Matern kernel and acquisition, `gp_hedge`, are scikit-optimize's defaults);
the first `n_initial_points` proposals are random draws from its seeded generator.
"""

from __future__ import annotations

from lrsearch.search.strategies.base import AskTellStrategy, Proposal, register
from lrsearch.search.strategies.common import within_bounds
from lrsearch.search.strategies.space import Dimension


def _skopt_dimension(d: Dimension):
    from skopt.space import Categorical, Real
    if d.categorical:
        return Categorical(list(d.choices), name=d.name)
    return Real(d.low, d.high, prior="log-uniform" if d.log else "uniform", name=d.name)


@register
class SkoptGP(AskTellStrategy):
    name = "skopt-gp"
    summary = "scikit-optimize's Optimizer with a Gaussian process (gp_hedge acquisition), 10 random start-up trials"
    requires = (("skopt", "pip install -e '.[skopt]'"),)
    default_startup_trials = 10  # as Optuna's TPE and GP (scikit-optimize's own default)
    flattens_conditional = True  # its space is a fixed list of dimensions
    # Past its start-up, `ask()` returns the one point the last `tell` chose until the next `tell`: trials
    # in flight would all be that point. One trial at a time.
    parallel = False

    def _start(self, n_trials, in_flight):
        from skopt import Optimizer
        self._flat = self.space.flattened()
        self._optimizer = Optimizer([_skopt_dimension(d) for d in self._flat], base_estimator="GP",
                                    n_initial_points=self.startup_trials, random_state=self.seed)

    def _ask(self):
        point = self._optimizer.ask()
        flat = {d.name: within_bounds(d, v) for d, v in zip(self._flat, point)}
        return Proposal(self.space.from_flat(flat), None, point)

    def _tell(self, proposal, evaluation):
        if evaluation.has_value:  # scikit-optimize has no failure state: a failed point is left out
            self._optimizer.tell(proposal.handle, -evaluation.value)
