"""Optuna samplers and pruners, driven with ask/tell."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from lrsearch.search.strategies.base import AskTellStrategy, Option, Proposal, register
from lrsearch.search.strategies.space import SearchSpace
from lrsearch.training.progress import libraries_verbose


def _distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    return {d.name: (optuna.distributions.CategoricalDistribution(d.choices) if d.categorical
                     else optuna.distributions.FloatDistribution(d.low, d.high, log=d.log)) for d in space}


class _Optuna(AskTellStrategy):
    def sampler(self, in_flight: int = 1) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    def _start(self, n_trials, in_flight):
        # Optuna's own per-trial lines only with --verbose: lrsearch logs one line per trial itself
        optuna.logging.set_verbosity(optuna.logging.INFO if libraries_verbose() else optuna.logging.WARNING)
        # A fixed study name: Optuna's HyperbandPruner assigns trials to brackets by a hash of the study
        # name, and the default name is a fresh UUID, which would make a seeded run prune differently.
        self._study = optuna.create_study(study_name=f"lrsearch-{self.name}-seed{self.seed}", direction="maximize",
                                          sampler=self.sampler(in_flight), pruner=self.pruner())
        self._distributions = _distributions(self.space)

    def _ask(self):
        trial = self._study.ask(self._distributions)

        def report(step: int, value: float) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        return Proposal(dict(trial.params), report if self.prunes else None, trial)

    def _tell(self, proposal, evaluation):
        if evaluation.status == "pruned":
            self._study.tell(proposal.handle, state=TrialState.PRUNED)
        else:
            self._study.tell(proposal.handle, evaluation.value)


@register
class OptunaTPE(_Optuna):
    name, summary = "optuna-tpe", "Optuna's TPESampler (Bayesian, tree-structured Parzen estimator)"
    default_startup_trials = 10  # Optuna's default

    def sampler(self, in_flight=1):
        # With trials in flight, the constant liar (Optuna's advice for parallel TPE) counts the running
        # ones as bad results, so that the next proposals spread out instead of repeating them.
        return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.startup_trials,
                                          constant_liar=in_flight > 1)


@register
class OptunaGP(_Optuna):
    name, summary = "optuna-gp", "Optuna's GPSampler (Gaussian-process Bayesian optimisation)"
    default_startup_trials = 10  # Optuna's default

    def sampler(self, in_flight=1):
        return optuna.samplers.GPSampler(seed=self.seed, n_startup_trials=self.startup_trials)


@register
class OptunaCMAES(_Optuna):
    name, summary = "optuna-cmaes", "Optuna's CmaEsSampler (evolution strategy, via the cmaes package)"
    default_startup_trials = 1  # Optuna's default

    def sampler(self, in_flight=1):
        return optuna.samplers.CmaEsSampler(seed=self.seed, n_startup_trials=self.startup_trials,
                                            warn_independent_sampling=False)


@register
class OptunaQMC(_Optuna):
    name, summary = "optuna-qmc", "Optuna's QMCSampler (scrambled Sobol quasi-random points)"

    def sampler(self, in_flight=1):
        return optuna.samplers.QMCSampler(seed=self.seed, scramble=True)


@register
class OptunaGA(_Optuna):
    name, summary = "optuna-ga", "Optuna's NSGAIISampler, a genetic algorithm, on the one objective"
    options_spec = (Option("population_size", int, 4, "individuals per generation; the first is drawn at random "
                           "(Optuna's 50 would be random search at these budgets)"),)

    def sampler(self, in_flight=1):
        return optuna.samplers.NSGAIISampler(population_size=self.startup_trials, seed=self.seed)

    @property
    def startup_trials(self) -> int:
        """Its first generation is drawn at random; selection, crossover and mutation start after it.
        `population_size` (default 4, Optuna's 50 would be random search at these budgets)."""
        return int(self.option("population_size"))


@register
class OptunaTPEASHA(OptunaTPE):
    name = "optuna-tpe-asha"
    summary = "TPE with Optuna's SuccessiveHalvingPruner (asynchronous successive halving)"
    prunes = True
    parallel = False  # its pruner decides during a trial, from the study in this process: one trial at a time
    options_spec = (Option("reduction_factor", int, 3, "successive halving keeps 1 / reduction_factor of the trials "
                           "at each rung (Optuna's default)"),)

    def pruner(self):
        return optuna.pruners.SuccessiveHalvingPruner(reduction_factor=self.option("reduction_factor"))


@register
class OptunaTPEHyperband(OptunaTPE):
    name = "optuna-tpe-hyperband"
    summary = "TPE with Optuna's HyperbandPruner (several successive-halving brackets)"
    prunes = True
    parallel = False  # as optuna-tpe-asha
    options_spec = (Option("reduction_factor", int, 3, "each bracket keeps 1 / reduction_factor of its trials at "
                           "each rung (Optuna's default)"),)

    def pruner(self):
        return optuna.pruners.HyperbandPruner(reduction_factor=self.option("reduction_factor"))
