"""Grid and random search, without a library."""

from __future__ import annotations

import itertools
import math

import numpy as np

from lrsearch.search.strategies.base import AskTellStrategy, Option, Proposal, register
from lrsearch.search.strategies.space import Dimension, SearchSpace
from lrsearch.training.errors import InputError


def grid_counts(space: SearchSpace, budget: int) -> dict[tuple[str, str], int]:
    """Points on each numeric axis, keyed (choice, name) (choice "" for a top-level axis): k on every axis,
    the largest k whose grid fits the budget (about budget^(1/d) on d axes), then k + 1 on each axis in
    turn where the grid still fits (so 12 trials on 3 axes are 3 x 2 x 2, not 2 x 2 x 2)."""
    axes = [("", d.name) for d in space if not d.categorical]
    axes += [(choice, s.name) for d in space if d.conditional for choice, sub in d.branches.items()
             for s in sub if not s.categorical]
    k = 1
    while axes and _grid_size(space, dict.fromkeys(axes, k + 1)) <= budget:
        k += 1
    counts = dict.fromkeys(axes, k)
    for axis in axes:
        counts[axis] = k + 1
        if _grid_size(space, counts) > budget:
            counts[axis] = k
    return counts


def _grid_size(space: SearchSpace, counts: dict) -> int:
    return math.prod(len(_axis(d, counts, "")) if not d.conditional else
                     sum(math.prod(len(_axis(s, counts, c)) for s in sub) for c, sub in d.branches.items())
                     for d in space)


def _axis(dim: Dimension, counts: dict, choice: str) -> list:
    """The grid's values on one dimension, ascending: k points spaced evenly (log-spaced on a log scale),
    the middle of the range for k = 1 (geometric if log), every choice of a categorical one."""
    if dim.categorical:
        return list(dim.choices)
    k = counts[(choice, dim.name)]
    return [dim.from_unit(0.5)] if k == 1 else [dim.from_unit(i / (k - 1)) for i in range(k)]


def _grid_note(space: SearchSpace, counts: dict, budget: int) -> str:
    """e.g. "grid: 3 x 2 x 2 = 12 points (budget 12)"; a conditional dimension as the sum of its branches'
    sub-grids, e.g. "grid: 2 x (1 + 3 + 2 x 2) = 16 points (budget 16)"."""
    factors = []
    for d in space:
        if d.conditional:
            terms = [" x ".join(str(len(_axis(s, counts, c))) for s in sub) or "1" for c, sub in d.branches.items()]
            factors.append(f"({' + '.join(terms)})")
        else:
            factors.append(str(len(_axis(d, counts, ""))))
    size = _grid_size(space, counts)
    cut = f", the first {budget} of them" if size > budget else ""
    return f"grid: {' x '.join(factors)} = {size} points (budget {budget}{cut})"


@register
class GridSearch(AskTellStrategy):
    name = "grid"
    summary = ("log-spaced grid sized to the budget (a product grid for several parameters, a conditional "
               "choice as the sum of its branches' grids), in ascending order")
    budget_aware = True
    options_spec = (Option("points", dict, None, "points on each numeric axis, e.g. {lr = 8, weight_decay = 3} (a "
                           "branch's axis as \"choice.name\"); every axis named. Default: sized to the budget"),)

    def __init__(self, space, seed=0, **options):
        super().__init__(space, seed, **options)
        if self.option("points") is not None:
            self._given_counts()  # a misnamed axis stops here, before any trial

    def _given_counts(self) -> dict[tuple[str, str], int]:
        """The `points` option as grid_counts' keys; every numeric axis named, each at least 1 point."""
        points = self.option("points")
        axes = {("", d.name) for d in self.space if not d.categorical}
        axes |= {(c, s.name) for d in self.space if d.conditional for c, sub in d.branches.items()
                 for s in sub if not s.categorical}
        counts = {}
        for key, k in points.items():
            choice, _, name = key.rpartition(".")
            if (choice, name) not in axes:
                raise InputError(f"options.grid.points: {key!r} is not a numeric axis of the space; "
                                 f"the axes are {', '.join(sorted(f'{c}.{n}' if c else n for c, n in axes))}")
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise InputError(f"options.grid.points.{key}: {k!r}; give a whole number of points >= 1")
            counts[(choice, name)] = k
        missing = sorted(f"{c}.{n}" if c else n for c, n in axes - set(counts))
        if missing:
            raise InputError(f"options.grid.points: no count for {', '.join(missing)}; name every numeric axis")
        return counts

    def grid_size(self, n_trials: int) -> int:
        """The number of grid points a run at this budget visits (at most the budget)."""
        counts = self._given_counts() if self.option("points") is not None else grid_counts(self.space, n_trials)
        return min(n_trials, _grid_size(self.space, counts))

    def _start(self, n_trials, in_flight):
        counts = self._given_counts() if self.option("points") is not None else grid_counts(self.space, n_trials)
        self._note = _grid_note(self.space, counts, n_trials)
        self._fixed = [f"{choice}.{name}" if choice else name for (choice, name), k in counts.items() if k == 1]
        # each top-level dimension's partial proposals; a conditional one's are a choice with a point of its sub-grid
        axes = []
        for d in self.space:
            if d.conditional:
                axes.append([{d.name: c} | dict(zip(sub.names, point)) for c, sub in d.branches.items()
                             for point in itertools.product(*(_axis(s, counts, c) for s in sub))])
            else:
                axes.append([{d.name: v} for v in _axis(d, counts, "")])
        self._points = itertools.islice(itertools.product(*axes), n_trials)

    def _ask(self):
        point = next(self._points, None)
        return None if point is None else Proposal({k: v for part in point for k, v in part.items()})

    def _tell(self, proposal, evaluation):
        pass  # a grid does not learn

    def space_notes(self):
        """Its shape once run (it depends on the budget), and each axis the budget left at one point."""
        if not hasattr(self, "_note"):
            return []
        fixed = [f"grid: one point (the middle of the range) on {', '.join(self._fixed)}: the budget allows no more"]
        return [self._note] + (fixed if self._fixed else [])

    @property
    def flattens_space(self):
        return bool(getattr(self, "_fixed", []))


@register
class RandomSearch(AskTellStrategy):
    name = "random"
    summary = ("independent draws, log-uniform where the space says log (seeded numpy generator); a conditional "
               "choice first, then its branch's parameters")

    def _start(self, n_trials, in_flight):
        self._rng = np.random.default_rng(self.seed)

    def _ask(self):
        params = {}
        for d in self.space:
            params[d.name] = d.from_unit(self._rng.random())
            for s in d.branch(params[d.name]):
                params[s.name] = s.from_unit(self._rng.random())
        return Proposal(params)

    def _tell(self, proposal, evaluation):
        pass  # independent draws
