"""DEHB (differential evolution + Hyperband) driven with ask/tell: `dehb.ask()` -> a job (configuration,
fidelity, bracket), `dehb.tell(job, {"fitness": ..., "cost": ...})`.

DEHB minimises a fitness: it is told the negated value. The space is ConfigSpace's (configspace_.py): DEHB
evolves every hyperparameter as a number in [0, 1] and hands back a configuration with the inactive ones
removed, so a conditional space is searched natively. The fidelity is the trial's evaluations (common.py):
a job below the top fidelity stops after that many evaluations, recorded as pruned; a promotion (the
same configuration at a higher fidelity) trains again from the start. DEHB has no random start-up count to
set: each bracket's first rung is its initial population, drawn at random for the first bracket.

DEHB 0.1.2 writes a log file and, on a new incumbent, its state to `output_path`; here a scratch folder,
saved only at the end of its own `run()` (never called). Its logger (loguru) prints warnings only unless
--verbose.
"""

from __future__ import annotations

import contextlib
import sys
import warnings

from lrsearch.search.strategies.base import AskTellStrategy, Proposal, register
from lrsearch.search.strategies.common import MultiFidelity, WorstSoFar, scratch_folder, stop_after
from lrsearch.search.strategies.configspace_ import configuration_space, from_configuration
from lrsearch.training.progress import libraries_verbose


@register
class DEHBStrategy(MultiFidelity, AskTellStrategy):
    name = "dehb"
    summary = ("DEHB: differential evolution within Hyperband brackets over each trial's evaluations (a trial "
               "below the top fidelity stops early, pruned; a promotion trains again from the start)")
    requires = (("dehb", "pip install -e '.[dehb]' && pip install --no-deps dehb==0.1.2"),)

    def _start(self, n_trials, in_flight):
        from dehb import DEHB
        with _quiet():
            self._dehb = DEHB(cs=configuration_space(self.space, self.seed), min_fidelity=self.option("min_fidelity"),
                              max_fidelity=self.option("max_fidelity"), eta=self.option("eta"), n_workers=1,
                              seed=self.seed, output_path=scratch_folder(self, "lrsearch-dehb-"), save_freq="end",
                              log_level="INFO" if libraries_verbose() else "WARNING")
        self._worst = WorstSoFar()

    def _ask(self):
        with _quiet():
            job = self._dehb.ask()
        report = stop_after(job["fidelity"], self.option("max_fidelity"))
        return Proposal(from_configuration(self.space, job["config"]), report, job)

    def _tell(self, proposal, evaluation):
        with _quiet():
            # DEHB has no failure state and needs every asked job told to fill its brackets. Its own "no result"
            # fitness, inf, breaks its promotions when a whole bracket failed (IndexError in dehb.py), so a failed
            # job gets the worst fitness seen so far, else the largest finite one: never better than a result.
            if evaluation.has_value:
                self._worst.see(evaluation.value)
                fitness = -evaluation.value
            else:
                fitness = -self._worst.fill(-sys.float_info.max)
            self._dehb.tell(proposal.handle, {"fitness": fitness, "cost": evaluation.train_s})


@contextlib.contextmanager
def _quiet():
    """DEHB 0.1.2 calls ConfigSpace functions that ConfigSpace 1.x deprecates (`get_hyperparameters`,
    `get_dictionary`): one DeprecationWarning per proposal, about DEHB's code, not the user's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield
