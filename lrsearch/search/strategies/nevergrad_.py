"""Nevergrad's optimizers driven with ask/tell: `optimizer.ask()` -> a candidate, `optimizer.tell(candidate,
loss)`.

Nevergrad minimises a loss: it is told the negated value. The space is one `ng.p.Dict`: a log dimension
`ng.p.Log`, a linear one `ng.p.Scalar`, both bounded, a choice `ng.p.Choice(deterministic=True)` (the
objective is a deterministic function of the choice; Nevergrad's default, a softmax draw, would make it a
noisy one), and a conditional dimension a `Choice` among one `ng.p.Dict` per branch (the choice and its
sub-parameters), so proposals hold only the active sub-parameters. The seed is the parametrization's
random state, which Nevergrad's optimizers draw from.

`nevergrad-ngopt` is Nevergrad's wizard, NGOpt: it picks an algorithm from the space, the budget and the
workers (at 16 or 32 trials on continuous dimensions Cobyla; with a choice a chain of a CMA/PSO/DE
portfolio and a noisy (1+1)), so its proposals depend on the budget. `nevergrad-de` is differential
evolution with a population sized for these budgets.
"""

from __future__ import annotations

import abc
import builtins
import math

import numpy as np

from lrsearch.search.strategies.base import AskTellStrategy, Option, Proposal, register
from lrsearch.search.strategies.common import WorstSoFar, within_bounds
from lrsearch.search.strategies.space import Dimension, SearchSpace


def nevergrad_space(space: SearchSpace):
    """The space as one `ng.p.Dict`, a conditional dimension as a choice among its branches' Dicts."""
    import nevergrad as ng

    def parameter(d: Dimension):
        if d.categorical:
            return ng.p.Choice(list(d.choices), deterministic=True)
        if d.log:
            return ng.p.Log(lower=d.low, upper=d.high)
        return ng.p.Scalar(lower=d.low, upper=d.high)

    items = {}
    for d in space:
        if d.conditional:
            items[d.name] = ng.p.Choice([ng.p.Dict(**{d.name: choice}, **{s.name: parameter(s) for s in sub})
                                         for choice, sub in d.branches.items()], deterministic=True)
        else:
            items[d.name] = parameter(d)
    return ng.p.Dict(**items)


def from_nevergrad(space: SearchSpace, value: dict) -> dict:
    """A candidate's value as flat params: a conditional dimension's Dict (its choice and sub-parameters)
    merged in, each value plain and within its bounds."""
    merged = {}
    for name, v in value.items():
        merged.update(v if isinstance(v, dict) else {name: v})
    return {d.name: within_bounds(d, merged[d.name]) for d in space.active_dims(merged)}


def _patch_metamodel_float(metamodel) -> None:
    """Nevergrad 1.0.12's metamodel (which NGOpt picks at larger budgets, e.g. 64 trials on lr alone) calls
    `float()` on a regression's one-element prediction array (metamodel.py, `loss_function_sm`), which
    NumPy 2.4 refuses ("only 0-dimensional arrays can be converted to Python scalars"). Give that module a
    `float` that takes such an array's one element, the builtin for everything else."""
    if "float" in vars(metamodel):
        return

    def one_element_float(x=0.0):
        return builtins.float(x.item() if isinstance(x, np.ndarray) and x.size == 1 else x)

    metamodel.float = one_element_float


class _Nevergrad(AskTellStrategy):
    requires = (("nevergrad", "pip install -e '.[nevergrad]'"),)

    @abc.abstractmethod
    def optimizer(self, parametrization, budget: int, num_workers: int):
        """The Nevergrad optimizer on `parametrization`."""

    def _start(self, n_trials, in_flight):
        from nevergrad.optimization import metamodel
        _patch_metamodel_float(metamodel)
        parametrization = nevergrad_space(self.space)
        parametrization.random_state = np.random.RandomState(self.seed)
        self._optimizer = self.optimizer(parametrization, n_trials, in_flight)
        self._worst = WorstSoFar()

    def _ask(self):
        candidate = self._optimizer.ask()
        return Proposal(from_nevergrad(self.space, candidate.value), None, candidate)

    def _tell(self, proposal, evaluation):
        # Nevergrad has no failure state. Its ask and tell need not pair up for some optimizers (its maintainers,
        # nevergrad issue #1498), but not for the recast ones: NGOpt's Cobyla waits for the tell of its last
        # point, and its next ask blocked for good. So a failed candidate gets the worst loss seen so far, and
        # before any trial succeeded, inf (Nevergrad's own loss of an infeasible point: worse than any other).
        if evaluation.has_value:
            self._worst.see(evaluation.value)
        loss = -evaluation.value if evaluation.has_value else -self._worst.fill(-math.inf)
        self._optimizer.tell(proposal.handle, loss if math.isfinite(loss) else math.inf)


@register
class NevergradNGOpt(_Nevergrad):
    name = "nevergrad-ngopt"
    summary = "Nevergrad's NGOpt wizard (picks its algorithm from the space and the budget)"
    budget_aware = True  # NGOpt chooses its algorithm by the budget

    def optimizer(self, parametrization, budget, num_workers):
        import nevergrad as ng
        return ng.optimizers.NGOpt(parametrization=parametrization, budget=budget, num_workers=num_workers)


@register
class NevergradDE(_Nevergrad):
    name = "nevergrad-de"
    summary = "Nevergrad's differential evolution (DifferentialEvolution family), population 8"
    options_spec = (Option("population_size", int, 8, "individuals; the first population is drawn at random "
                           "(Nevergrad's default, 30, would be random search at these budgets)"),)

    def optimizer(self, parametrization, budget, num_workers):
        import nevergrad as ng
        family = ng.families.DifferentialEvolution(popsize=self.startup_trials)
        return family(parametrization=parametrization, budget=budget, num_workers=num_workers)

    @property
    def startup_trials(self) -> int:
        """Its first population is drawn at random; mutation and crossover start after it."""
        return int(self.option("population_size"))
