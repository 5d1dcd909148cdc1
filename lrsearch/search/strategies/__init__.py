"""Search strategies behind one interface (see `base.Strategy`), and a registry by name.

For library users and tests:

    from lrsearch.search.strategies import search
    trials = search("optuna-tpe", lambda p: accuracy(p["lr"]), {"lr": {"low": 1e-4, "high": 1, "log": True}},
                    n_trials=16, seed=0)   # [(params, value), ...] in evaluation order

Parameter names are the caller's (any identifier); a conditional choice's proposals hold only its
branch's sub-parameters (see `space`). `Strategy.space_notes()` says what a strategy did to the space.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from lrsearch.search.strategies import (  # noqa: F401  (registers them)
    dehb_,
    hebo_,
    hyperopt_,
    nevergrad_,
    nni_,
    optuna_,
    optunity_,
    simple,
    skopt_,
    smac_,
    synetune_,
)
from lrsearch.search.strategies.base import (
    REGISTRY,
    USABLE,
    BudgetExhausted,
    Evaluation,
    Objective,
    ReportHook,
    Strategy,
)
from lrsearch.search.strategies.space import DEFAULT_SPACE, Dimension, SearchSpace, SpaceError, parse_space
from lrsearch.training.errors import InputError

__all__ = ["FAMILIES", "REGISTRY", "USABLE", "BudgetExhausted", "DEFAULT_SPACE", "Dimension", "Evaluation",
           "Objective", "ReportHook", "SearchSpace", "SpaceError", "Strategy", "get_strategy", "parse_space",
           "is_self_tuning", "search", "strategy_family", "strategy_names"]


# The strategy families, in the order `lrsearch strategies` lists them and figures give them line styles: the
# library a strategy comes from (its names' prefix, `optuna-tpe`), grid, random, the range tests, and the
# self-tuning optimizers (whatever their names: `is_self_tuning`).
FAMILIES = ("grid", "random", "optuna", "optunity", "hyperopt", "nni", "smac", "hebo", "dehb", "nevergrad", "skopt",
            "synetune", "lr-range", "self-tuning")


def strategy_family(name: str) -> str | None:
    """The family (one of FAMILIES) of strategy `name`; None for a name in none of them."""
    if is_self_tuning(name):
        return "self-tuning"
    return next((f for f in FAMILIES if name == f or name.startswith(f + "-")), None)


def strategy_names() -> list[str]:
    """Every strategy, family by family (registration order within a family)."""
    _load_optional()
    order = {family: i for i, family in enumerate(FAMILIES)}
    return sorted(REGISTRY, key=lambda name: order.get(strategy_family(name), len(FAMILIES)))


def get_strategy(name: str, space: dict | SearchSpace | None = None, seed: int = 0, **options) -> Strategy:
    _load_optional()
    if name not in REGISTRY:
        raise InputError(f"unknown strategy {name!r}; `lrsearch strategies` lists them: {', '.join(strategy_names())}")
    return REGISTRY[name](parse_space(space), seed=seed, **options)


def search(name: str, objective: Callable[[dict], float | None], space: dict | None = None, n_trials: int = 16,
           seed: int = 0, **options) -> list[tuple[dict, float | None]]:
    """Run strategy `name` on `objective(params) -> value to maximise`; return (params, value) in order. An
    objective that returns None (or a value that is not finite) had the trial fail: the strategy tells its library
    so in the library's own way, and its value here is None."""
    def wrapped(params: dict, report: ReportHook | None) -> Evaluation:
        value = objective(params)
        if value is None or not math.isfinite(value):
            return Evaluation(params, -math.inf, status="failed")
        return Evaluation(params, float(value))

    evaluations = get_strategy(name, space, seed, **options).run(wrapped, n_trials)
    return [(e.params, e.value if e.has_value else None) for e in evaluations]


def _load_optional() -> None:
    """Strategies that need the trainer (the range-test and self-tuning families) register on first use."""
    from lrsearch.search.strategies import range_test, self_tuning  # noqa: F401


def is_self_tuning(name: str) -> bool:
    """Whether strategy `name` searches nothing: a self-tuning optimizer's one run (see self_tuning.py)."""
    _load_optional()
    return bool(getattr(REGISTRY.get(name), "self_tuning", False))
