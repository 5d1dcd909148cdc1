"""Optunity's solvers (particle swarm, Nelder-Mead, Sobol, CMA-ES), each built and sized to the budget as
`optunity.maximize` builds it.

Optunity searches a box: every dimension is searched as u in [0, 1] and mapped back through the
space (log-uniform, uniform, or a choice), as the random strategy maps its draws. Optunity draws
from Python's global `random` (its CMA-ES, through DEAP, from numpy's), so a run seeds both.

A solver may stop before its budget: Nelder-Mead converges, optunity does not evaluate a point
twice, and CMA-ES proposes whole generations only. The strategy then restarts the solver on the
rest of the budget, its random state moved on, so every run uses its budget in full; each trial
records its restart in `extra`. A solver is asked for at least MIN_EVALS evaluations (CMA-ES
proposes nothing for fewer than a generation) and the run stops at its budget. A restart that
proposes nothing new would end the run with the rest of the budget unused, recorded as
`budget_unused` in the last trial's `extra` (the runs table shows n_trials below the budget).

A conditional space is searched flattened (space.py): one box dimension for the choice and one for each
sub-parameter of any branch, the inactive ones dropped. Optunity's own conditional spaces
(`optunity.search_spaces.SearchTree`) are that same box, with no log scale; ours keeps it.
"""

from __future__ import annotations

import math
import random
import warnings

import numpy as np

from lrsearch.search.strategies.base import Strategy, register
from lrsearch.search.strategies.common import WorstSoFar

MIN_EVALS = 8


class _Optunity(Strategy):
    solver_name = ""
    solver_options: dict = {}  # set on the solver beyond what optunity suggests for the budget
    requires = (("optunity", "optunity==1.1.1"),)
    budget_aware = True  # optunity sizes its solvers (particles, generations, Sobol points) to num_evals
    flattens_conditional = True

    def _search(self, objective, n_trials):
        import optunity  # imported here: the other strategies need neither optunity nor DEAP

        random.seed(self.seed)
        np.random.seed(self.seed)
        dims = list(self.space.flattened())
        box = {f"u{i}": [0.0, 1.0] for i in range(len(dims))}
        restart = 0
        worst = WorstSoFar()

        def f(**units) -> float:
            # a simplex may step outside the box: such a point is evaluated at the box's edge
            params = {d.name: d.from_unit(min(max(units[f"u{i}"], 0.0), 1.0 - 1e-12)) for i, d in enumerate(dims)}
            evaluation = objective(self.space.from_flat(params), None)
            evaluation.extra["restart"] = restart
            if evaluation.has_value:
                worst.see(evaluation.value)
                return evaluation.value
            # Optunity has no failure state and must get a number back: the worst value seen so far (never better
            # than a result; a failed trial's placeholder, 0.0, would beat every negative one), else -inf
            return worst.fill(-math.inf)

        while len(objective.evaluations) < n_trials:
            before = len(objective.evaluations)
            num_evals = max(n_trials - before, MIN_EVALS)
            optunity.optimize(self._solver(optunity, num_evals, box, restart), f, maximize=True, max_evals=num_evals)
            if len(objective.evaluations) == before:  # nothing new proposed: the rest of the budget stays unused
                if objective.evaluations:
                    objective.evaluations[-1].extra["budget_unused"] = n_trials - before
                return
            restart += 1

    def _solver(self, optunity, num_evals: int, box: dict, restart: int):
        """The solver `optunity.maximize` would build for this budget and box. Solvers that start from one
        point (Nelder-Mead, CMA-ES) start from the box's centre, as optunity's do, and a restart from a
        random point (a restart from the centre would retrace the first run)."""
        solver_class = optunity.solvers.solver_registry.get(self.solver_name)
        if restart and hasattr(solver_class, "suggest_from_seed"):
            suggestion = solver_class.suggest_from_seed(num_evals, **{k: random.random() for k in box})
            suggestion["solver_name"] = self.solver_name
        else:
            suggestion = optunity.suggest_solver(num_evals, self.solver_name, **box)
        return optunity.make_solver(**(suggestion | self.solver_options))


@register
class OptunityPSO(_Optunity):
    name, summary, solver_name = "optunity-pso", "Optunity's particle swarm optimisation", "particle swarm"


@register
class OptunityNelderMead(_Optunity):
    name, solver_name = "optunity-nelder-mead", "nelder-mead"
    summary = "Optunity's Nelder-Mead simplex, restarted on the rest of the budget when it converges"


@register
class OptunitySobol(_Optunity):
    name, summary, solver_name = "optunity-sobol", "Optunity's Sobol quasi-random sequence", "sobol"


@register
class OptunityCMAES(_Optunity):
    name, summary, solver_name = "optunity-cmaes", "Optunity's CMA-ES (through DEAP)", "cma-es"
    # optunity's default initial step, sigma 1, spans the whole unit box (most proposals land on its edge);
    # a quarter of the range is the usual start for CMA-ES (Hansen's pycma documentation).
    solver_options = {"sigma": 0.25}
    requires = (("optunity", "optunity==1.1.1"), ("deap", "deap"))

    def _search(self, objective, n_trials):
        with warnings.catch_warnings():  # DEAP re-creates its fitness classes on every run, and says so
            warnings.filterwarnings("ignore", message="A class named", category=RuntimeWarning)
            super()._search(objective, n_trials)
