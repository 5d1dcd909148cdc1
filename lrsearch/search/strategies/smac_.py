"""SMAC3's facades driven with ask/tell (`smac.ask()` -> TrialInfo, `smac.tell(info, TrialValue(cost))`).

SMAC minimises a cost: it is told the negated value. The space is ConfigSpace's (configspace_.py), a
conditional dimension with its own conditions, so SMAC proposes only the active sub-parameters. SMAC's
random forest, random interleaving and acquisition search are its facades' defaults; what lrsearch sets:
one evaluation per configuration (`deterministic=True`: a trial with the run's seed repeats itself), the
initial design's size (`n_startup_trials`, SMAC's would be 10 per hyperparameter, capped at a quarter of
the budget), and a scratch output folder (SMAC writes its run history to disk; lrsearch's store keeps
the trials).

`smac-hyperband` is the MultiFidelityFacade: the random forest proposes, SMAC's Hyperband intensifier
decides each trial's fidelity, in evaluations (common.py): a trial below the top fidelity stops after
that many evaluations and is recorded as pruned; a promotion trains again from the start.
"""

from __future__ import annotations

import abc
import logging

from lrsearch.search.strategies.base import AskTellStrategy, Proposal, register
from lrsearch.search.strategies.common import MultiFidelity, WorstSoFar, scratch_folder, stop_after
from lrsearch.search.strategies.configspace_ import configuration_space, from_configuration
from lrsearch.training.progress import libraries_verbose


def _never_called(config, seed: int = 0) -> float:
    """SMAC's facades want a target function (its signature checked against the scenario: with a budget for
    the multi-fidelity one, below); ask/tell never calls it, lrsearch runs the trials."""
    raise RuntimeError("SMAC is driven with ask/tell here: trials run through lrsearch's objective")


def _never_called_at_budget(config, seed: int = 0, budget: float = 0.0) -> float:
    return _never_called(config, seed)


class _SMAC(AskTellStrategy):
    requires = (("smac", "pip install -e '.[smac]'"),)
    default_startup_trials = 10  # as Optuna's TPE and GP

    def scenario_fidelities(self) -> dict:
        """Scenario arguments for the fidelity range (none for a single fidelity)."""
        return {}

    @abc.abstractmethod
    def facade(self, scenario):
        """The SMAC facade for `scenario`, its initial design sized to `startup_trials`."""

    def _start(self, n_trials, in_flight):
        from smac import Scenario
        # n_trials only sizes the initial design here, and that is set explicitly: with the budget or
        # without, the same proposals, so a run at a smaller budget is the first trials of a larger one.
        scenario = Scenario(configuration_space(self.space, self.seed), deterministic=True,
                            n_trials=max(n_trials, self.startup_trials), seed=self.seed,
                            output_directory=scratch_folder(self, "lrsearch-smac-"), **self.scenario_fidelities())
        self._smac = self.facade(scenario)
        self._worst = WorstSoFar()

    def _logging_level(self) -> bool:
        """False: SMAC's own logging set-up would replace the root logger's handlers and level (a dictConfig of
        smac/logging.yml). Its lines go through the process's logging instead, INFO only with --verbose."""
        logging.getLogger("smac").setLevel(logging.INFO if libraries_verbose() else logging.WARNING)
        return False

    def _ask(self):
        info = self._smac.ask()
        return Proposal(from_configuration(self.space, info.config), self.report_hook(info), info)

    def report_hook(self, info):
        """The trial's report hook: none, at a single fidelity."""
        return None

    def _tell(self, proposal, evaluation):
        from smac.runhistory.dataclasses import TrialValue
        from smac.runhistory.enumerations import StatusType
        if evaluation.has_value:
            self._worst.see(evaluation.value)
            self._smac.tell(proposal.handle, TrialValue(cost=-evaluation.value), save=False)
        elif self._worst.value is not None:
            # SMAC's own failure state, CRASHED, at a crash cost. Its default crash_cost (inf) turns the random
            # forest's targets into NaN ("Input y contains NaN"), so the cost is the worst one seen so far.
            value = TrialValue(cost=-self._worst.value, status=StatusType.CRASHED)
            self._smac.tell(proposal.handle, value, save=False)
        # before any trial succeeded there is no cost to give: the crashed trial is left out


@register
class SMACBO(_SMAC):
    name = "smac-bo"
    summary = ("SMAC3's HyperparameterOptimizationFacade (random-forest Bayesian optimisation), "
               "10 Sobol start-up trials like Optuna's TPE")

    def facade(self, scenario):
        from smac import HyperparameterOptimizationFacade as HPO
        return HPO(scenario, _never_called, overwrite=True, logging_level=self._logging_level(),
                   initial_design=HPO.get_initial_design(scenario, n_configs=self.startup_trials, max_ratio=1.0),
                   intensifier=HPO.get_intensifier(scenario, max_config_calls=1))


@register
class SMACHyperband(MultiFidelity, _SMAC):
    name = "smac-hyperband"
    summary = ("SMAC3's MultiFidelityFacade: random forest + Hyperband over each trial's evaluations (a trial "
               "below the top fidelity stops early, pruned; a promotion trains again from the start)")

    def scenario_fidelities(self):
        return {"min_budget": self.option("min_fidelity"), "max_budget": self.option("max_fidelity")}

    def facade(self, scenario):
        from smac import MultiFidelityFacade as MF
        return MF(scenario, _never_called_at_budget, overwrite=True, logging_level=self._logging_level(),
                  initial_design=MF.get_initial_design(scenario, n_configs=self.startup_trials, max_ratio=1.0),
                  intensifier=MF.get_intensifier(scenario, eta=self.option("eta")))

    def report_hook(self, info):
        return stop_after(info.budget, self.option("max_fidelity"))
