"""A replay study: an experiment's strategies replayed on its table (replay.py), and with K simulated workers
(simulated.py); reporting/budgets.py's `write_replay` makes its tables, figures and report (`lrsearch replay`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from lrsearch.experiment.config import Experiment
from lrsearch.experiment.replay import ReplayTable, replay_experiment
from lrsearch.experiment.simulated import replay_parallel
from lrsearch.training.errors import InputError


@dataclass
class ReplayRun:
    """What `run_replay` made: its trials (and those of the K-worker replay), the table replayed, and the seconds."""
    trials: pd.DataFrame
    table: ReplayTable
    elapsed_s: float  # the replay's seconds (strategies' own time included)
    parallel_trials: pd.DataFrame | None = None  # `[replay] simulated_workers`: the replay with K workers
    parallel_s: float | None = None


def run_replay(experiment: Experiment, workers: int | None = None, progress: bool = True) -> ReplayRun:
    """The experiment replayed on its table (`replay_experiment`), and with `[replay] simulated_workers` also with
    K workers on a simulated clock at `simulated_budget` (simulated.py). Writes nothing: reporting/budgets.py's
    `write_replay` makes the tables, figures and report of it."""
    if experiment.replay is None:
        raise InputError("replay: this experiment has no [replay] table; add one, or train it with `lrsearch run`")
    started = time.perf_counter()
    table = ReplayTable.load(experiment.replay.table)
    trials = replay_experiment(experiment, table, workers, progress)
    run = ReplayRun(trials, table, time.perf_counter() - started)
    if experiment.replay.simulated_workers:
        started = time.perf_counter()
        run.parallel_trials = replay_parallel(experiment, table, experiment.replay.simulated_workers,
                                              progress=progress, processes=workers)
        run.parallel_s = time.perf_counter() - started
    return run
