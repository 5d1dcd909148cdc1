"""Optuna samplers and pruners, driven with ask/tell."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from lrsearch.strategies.base import Strategy, register
from lrsearch.strategies.space import SearchSpace


def _distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    return {d.name: (optuna.distributions.CategoricalDistribution(d.choices) if d.categorical
                     else optuna.distributions.FloatDistribution(d.low, d.high, log=d.log)) for d in space}


class _Optuna(Strategy):
    def sampler(self) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    def _search(self, objective, n_trials):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # A fixed study name: Optuna's HyperbandPruner assigns trials to brackets by a hash of the study
        # name, and the default name is a fresh UUID, which would make a seeded run prune differently.
        study = optuna.create_study(study_name=f"lrsearch-{self.name}-seed{self.seed}", direction="maximize",
                                    sampler=self.sampler(), pruner=self.pruner())
        distributions = _distributions(self.space)
        for _ in range(n_trials):
            trial = study.ask(distributions)

            def report(step: int, value: float, trial=trial) -> bool:
                trial.report(value, step)
                return trial.should_prune()

            evaluation = objective(dict(trial.params), report if self.prunes else None)
            if evaluation.status == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, evaluation.value)


@register
class OptunaTPE(_Optuna):
    name, summary = "optuna-tpe", "Optuna's TPESampler (Bayesian, tree-structured Parzen estimator)"

    def sampler(self):
        return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.options.get("n_startup_trials", 10))


@register
class OptunaGP(_Optuna):
    name, summary = "optuna-gp", "Optuna's GPSampler (Gaussian-process Bayesian optimisation)"

    def sampler(self):
        return optuna.samplers.GPSampler(seed=self.seed, n_startup_trials=self.options.get("n_startup_trials", 10))


@register
class OptunaCMAES(_Optuna):
    name, summary = "optuna-cmaes", "Optuna's CmaEsSampler (evolution strategy, via the cmaes package)"

    def sampler(self):
        return optuna.samplers.CmaEsSampler(seed=self.seed, n_startup_trials=self.options.get("n_startup_trials", 1),
                                            warn_independent_sampling=False)


@register
class OptunaQMC(_Optuna):
    name, summary = "optuna-qmc", "Optuna's QMCSampler (scrambled Sobol quasi-random points)"

    def sampler(self):
        return optuna.samplers.QMCSampler(seed=self.seed, scramble=True)


@register
class OptunaTPEASHA(OptunaTPE):
    name = "optuna-tpe-asha"
    summary = "TPE with Optuna's SuccessiveHalvingPruner (asynchronous successive halving)"
    prunes = True

    def pruner(self):
        return optuna.pruners.SuccessiveHalvingPruner(reduction_factor=self.options.get("reduction_factor", 3))


@register
class OptunaTPEHyperband(OptunaTPE):
    name = "optuna-tpe-hyperband"
    summary = "TPE with Optuna's HyperbandPruner (several successive-halving brackets)"
    prunes = True

    def pruner(self):
        return optuna.pruners.HyperbandPruner(reduction_factor=self.options.get("reduction_factor", 3))
