"""Optuna samplers and pruners, driven with ask/tell.

Define-by-run: each trial suggests the top-level parameters, then the sub-parameters of the branch its
choice activates. A sub-parameter name that several branches share with different bounds is suggested as
`<choice>.<name>` (Optuna refuses one name with another log scale, or other choices, and TPE would pool
values from other bounds) and handed to the objective under its own name. The samplers that model the
parameters every trial has (Optuna's intersection search space: GP, CMA-ES, QMC, NSGA-II) would draw a
branch's parameters at random; they search the flattened space instead (space.py).
"""

from __future__ import annotations

import abc

import optuna
from optuna.trial import TrialState

from lrsearch.search.strategies.base import AskTellStrategy, Option, Proposal, register
from lrsearch.search.strategies.common import WorstSoFar
from lrsearch.search.strategies.space import Dimension, SearchSpace
from lrsearch.training.progress import libraries_verbose


def optuna_names(space: SearchSpace) -> dict[tuple[str, str], str]:
    """(choice, name) -> the name Optuna knows a sub-parameter by: `<choice>.<name>` where branches share
    the name with different bounds, else the name itself."""
    names = {}
    for d in space:
        if not d.conditional:
            continue
        variants: dict[str, set[Dimension]] = {}
        for sub in d.branches.values():
            for s in sub:
                variants.setdefault(s.name, set()).add(s)
        for choice, sub in d.branches.items():
            for s in sub:
                names[(choice, s.name)] = f"{choice}.{s.name}" if len(variants[s.name]) > 1 else s.name
    return names


def _suggest(trial: optuna.Trial, name: str, dim: Dimension):
    if dim.categorical:
        return trial.suggest_categorical(name, dim.choices)
    return trial.suggest_float(name, dim.low, dim.high, log=dim.log)


class _Optuna(AskTellStrategy):
    # How a diverged or failed trial reaches Optuna. TrialState.FAIL by default: the samplers leave such trials out.
    # TPE, leaving them out, sees the failing region as unexplored and goes back to it: on a negative objective
    # failing above lr 0.1, 23 to 25 of 25 proposals after 5 start-up trials fell there (seeds 0-2), against about
    # 7 for random search. So TPE gets them as Optuna 5's infeasible trials instead (Trial.set_constraint): TPE
    # ranks an infeasible trial by its violation alone, below every feasible one, and study.best_trial skips it;
    # 4 or 5 of 25 then (tests/test_value_contract.py). Its value is a placeholder TPE never reads.
    failures_as_infeasible = False

    @abc.abstractmethod
    def sampler(self, in_flight: int = 1) -> optuna.samplers.BaseSampler: ...

    def pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    def _start(self, n_trials, in_flight):
        # Optuna's own per-trial lines only with --verbose: lrsearch logs one line per trial itself
        optuna.logging.set_verbosity(optuna.logging.INFO if libraries_verbose() else optuna.logging.WARNING)
        # A fixed study name: Optuna's HyperbandPruner assigns trials to brackets by a hash of the study
        # name, and the default name is a fresh UUID, which would make a seeded run prune differently.
        self._study = optuna.create_study(study_name=f"lrsearch-{self.name}-seed{self.seed}", direction="maximize",
                                          sampler=self.sampler(in_flight), pruner=self.pruner())
        self._space = self.space.flattened() if self.flattens_conditional else self.space
        self._names = optuna_names(self._space)
        self._worst = WorstSoFar()  # an infeasible trial's placeholder, never better than a result

    def _ask(self):
        trial = self._study.ask()
        params = {}
        for d in self._space:
            params[d.name] = _suggest(trial, d.name, d)
            for s in d.branch(params[d.name]):
                params[s.name] = _suggest(trial, self._names[(params[d.name], s.name)], s)
        if self.flattens_conditional:
            params = self.space.from_flat(params)

        def report(step: int, value: float) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        return Proposal(params, report if self.prunes else None, trial)

    def _tell(self, proposal, evaluation):
        if evaluation.status == "pruned":
            self._study.tell(proposal.handle, state=TrialState.PRUNED)
        elif not evaluation.has_value and not self.failures_as_infeasible:  # diverged or failed (see above)
            self._study.tell(proposal.handle, state=TrialState.FAIL)
        elif not evaluation.has_value:
            proposal.handle.set_constraint("failed", 1.0)
            self._study.tell(proposal.handle, self._worst.fill(0.0))
        else:
            if self.failures_as_infeasible:
                proposal.handle.set_constraint("failed", 0.0)
            self._worst.see(evaluation.value)
            self._study.tell(proposal.handle, evaluation.value)


@register
class OptunaTPE(_Optuna):
    name, summary = "optuna-tpe", "Optuna's TPESampler (Bayesian, tree-structured Parzen estimator)"
    default_startup_trials = 10  # Optuna's default
    failures_as_infeasible = True

    def sampler(self, in_flight=1):
        # With trials in flight, the constant liar (Optuna's advice for parallel TPE) counts the running
        # ones as bad results, so that the next proposals spread out instead of repeating them.
        return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.startup_trials,
                                          constant_liar=in_flight > 1)


@register
class OptunaGP(_Optuna):
    name, summary = "optuna-gp", "Optuna's GPSampler (Gaussian-process Bayesian optimisation)"
    default_startup_trials = 10  # Optuna's default
    flattens_conditional = True  # the GP models the intersection search space

    def sampler(self, in_flight=1):
        return optuna.samplers.GPSampler(seed=self.seed, n_startup_trials=self.startup_trials)


@register
class OptunaCMAES(_Optuna):
    name, summary = "optuna-cmaes", "Optuna's CmaEsSampler (evolution strategy, via the cmaes package)"
    default_startup_trials = 1  # Optuna's default
    flattens_conditional = True  # CMA-ES models the intersection search space

    def sampler(self, in_flight=1):
        return optuna.samplers.CmaEsSampler(seed=self.seed, n_startup_trials=self.startup_trials,
                                            warn_independent_sampling=False)

    def space_notes(self):
        categorical = [d.name for d in self.space.flattened() if d.categorical]
        if not categorical:
            return super().space_notes()
        return super().space_notes() + [f"{self.name}: {', '.join(categorical)} drawn at random (Optuna's CmaEsSampler "
                                        "models continuous parameters only; its independent sampler draws the rest)"]

    @property
    def flattens_space(self):
        return super().flattens_space or any(d.categorical for d in self.space)


@register
class OptunaQMC(_Optuna):
    name, summary = "optuna-qmc", "Optuna's QMCSampler (scrambled Sobol quasi-random points)"
    flattens_conditional = True  # its sequence spans the first trial's parameters; the rest it draws at random

    def sampler(self, in_flight=1):
        return optuna.samplers.QMCSampler(seed=self.seed, scramble=True)


@register
class OptunaGA(_Optuna):
    name, summary = "optuna-ga", "Optuna's NSGAIISampler, a genetic algorithm, on the one objective"
    flattens_conditional = True  # crossover acts on the intersection search space
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
