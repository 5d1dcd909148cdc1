"""Grid and random search, without a library."""

from __future__ import annotations

import itertools
import math

import numpy as np

from lrsearch.search.strategies.base import AskTellStrategy, Proposal, register


@register
class GridSearch(AskTellStrategy):
    name = "grid"
    summary = "log-spaced grid sized to the budget (a product grid for several parameters), in ascending order"
    budget_aware = True

    def _start(self, n_trials, in_flight):
        # k points on each numeric axis, every choice on each categorical one, k^d * choices <= budget
        n_choices = math.prod(len(d.choices) for d in self.space if d.categorical)
        n_numeric = sum(not d.categorical for d in self.space)
        per_dim = max(1, math.floor((n_trials / n_choices) ** (1 / max(n_numeric, 1)) + 1e-9))
        axes = []
        for dim in self.space:
            if dim.categorical:
                axes.append(list(dim.choices))
            elif per_dim == 1:
                axes.append([dim.from_unit(0.5)])  # one point: the middle of the range (geometric if log)
            else:
                axes.append([dim.from_unit(i / (per_dim - 1)) for i in range(per_dim)])
        self._points = itertools.islice(itertools.product(*axes), n_trials)

    def _ask(self):
        point = next(self._points, None)
        return None if point is None else Proposal(dict(zip(self.space.names, point)))

    def _tell(self, proposal, evaluation):
        pass  # a grid does not learn


@register
class RandomSearch(AskTellStrategy):
    name = "random"
    summary = "independent draws, log-uniform where the space says log (seeded numpy generator)"

    def _start(self, n_trials, in_flight):
        self._rng = np.random.default_rng(self.seed)

    def _ask(self):
        return Proposal({d.name: d.from_unit(self._rng.random()) for d in self.space})

    def _tell(self, proposal, evaluation):
        pass  # independent draws
