"""`lrsearch tabulate`: an experiment turned into a table, a product grid over its space x seeds of real runs, stored
as the grid strategy's runs like any experiment (resumable; several workers at once). `Table` (table.py) reads it."""

from __future__ import annotations

from lrsearch.experiment.config import Experiment
from lrsearch.experiment.table import TABULATE_STRATEGY
from lrsearch.search.strategies import get_strategy
from lrsearch.training.errors import InputError


def tabulation(experiment: Experiment, n_lrs: int = 48, seeds: list[int] | None = None,
               results: str | None = None, points: dict[str, int] | None = None) -> Experiment:
    """The experiment as a dense table: a grid over its space for each seed, stored as the grid strategy's runs
    in `<results>-table/results.sqlite`. A 1-D `lr` space gets `n_lrs` log-spaced LRs; a space of several
    dimensions a product grid with `points[name]` points on each other axis (and `n_lrs` on lr unless `points`
    names it), as tabular benchmarks grid HPO spaces (for example 8 LRs x 3 x 3)."""
    space = experiment.search_space()
    if n_lrs < 2:
        raise InputError("--lrs: a table needs at least 2 learning rates")
    points = dict(points or {})
    options: dict = {}
    if space.names == ["lr"] and not points:
        budget = n_lrs
    else:
        if "lr" in space.names:
            points.setdefault("lr", n_lrs)
        options = {TABULATE_STRATEGY: {"points": points}}
        try:
            budget = get_strategy(TABULATE_STRATEGY, space, **options[TABULATE_STRATEGY]).grid_size(10**9)
        except InputError as err:
            raise InputError(f"{err} (`lrsearch tabulate --points NAME=K ...`)") from None
    return experiment.model_copy(update={
        "name": f"{experiment.name}-table", "strategies": [TABULATE_STRATEGY], "budgets": [budget],
        "seeds": seeds or [0, 1, 2], "options": options, "time_budget_s": None,
        "results": results or f"{experiment.results_dir()}-table",
        "description": f"Table of {experiment.name}: a grid of {budget} points over {', '.join(space.names)} x "
                       "seeds, full curves."})
