"""The search space in ConfigSpace's terms, which SMAC3 and DEHB both read (not a strategy of its own).

A conditional dimension is ConfigSpace's own form: the choice a `Categorical`, each sub-parameter a
hyperparameter with an `InCondition` on the choices whose branch has it, so the libraries propose only the
active ones. A sub-parameter name that branches share with different bounds is one hyperparameter per
branch, `<choice>.<name>` (ConfigSpace names are unique across the space), and is handed to the objective
under its own name.
"""

from __future__ import annotations

from lrsearch.search.strategies.common import within_bounds
from lrsearch.search.strategies.optuna_ import optuna_names
from lrsearch.search.strategies.space import Dimension, SearchSpace


def hyperparameter_names(space: SearchSpace) -> dict[tuple[str, str], str]:
    """(choice, name) -> the ConfigSpace name of a parameter (choice "" for a top-level one): a branch's
    sub-parameter as Optuna's adapter names it (`<choice>.<name>` where branches share it with other bounds)."""
    return {("", d.name): d.name for d in space} | optuna_names(space)


def configuration_space(space: SearchSpace, seed: int):
    """A seeded `ConfigSpace.ConfigurationSpace` for `space`."""
    from ConfigSpace import Categorical, ConfigurationSpace, Float, InCondition

    def hyperparameter(name: str, d: Dimension):
        if d.categorical:
            return Categorical(name, list(d.choices))
        return Float(name, (d.low, d.high), log=d.log)

    names = hyperparameter_names(space)
    cs = ConfigurationSpace(seed=seed)
    cs.add([hyperparameter(d.name, d) for d in space])
    for d in space:
        if not d.conditional:
            continue
        parent, activating = cs[d.name], {}
        for choice, sub in d.branches.items():
            for s in sub:
                key = names[(choice, s.name)]
                if key not in activating:
                    cs.add(hyperparameter(key, s))
                activating.setdefault(key, []).append(choice)
        cs.add([InCondition(cs[key], parent, choices) for key, choices in activating.items()])
    return cs


def from_configuration(space: SearchSpace, config) -> dict:
    """A ConfigSpace `Configuration` (only its active hyperparameters set) as flat params on `space`,
    each value clipped into its bounds (a log scale's exp(log(x)) may land an ulp outside)."""
    names = hyperparameter_names(space)
    values = dict(config)
    params = {}
    for d in space:
        params[d.name] = within_bounds(d, values[d.name])
        for s in d.branch(params[d.name]):
            params[s.name] = within_bounds(s, values[names[(params[d.name], s.name)]])
    return params

