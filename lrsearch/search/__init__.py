"""Searching for a learning rate: the strategies (`strategies/`, one adapter per library), the objective
they all see (params -> trained trial), and the LR range test with its suggestion rules (`lr_finder`).

May import `lrsearch.training` only. A strategy knows nothing of torch; the objective is the one
place where a proposal becomes a training run.
"""

import sys
import types


class _SearchPackage(types.ModuleType):
    """This package, callable: `lrsearch.search("optuna-tpe", objective, space, n_trials=16)` runs
    `lrsearch.search.strategies.search`. (The package and the top-level API function share the name
    `lrsearch.search`; Python binds the name to the package once it is imported, so the package answers
    the call.)"""

    def __call__(self, name: str, objective, space: dict | None = None, n_trials: int = 16, seed: int = 0, **options):
        from lrsearch.search.strategies import search
        return search(name, objective, space, n_trials, seed, **options)


sys.modules[__name__].__class__ = _SearchPackage
