"""A strategy's own decision seconds, priced like training steps: measured once per strategy and trial index.

`lrsearch calibrate --decisions TABLE` runs each searcher on a table with the simulated executor (no training: the
seconds left are the strategy's own proposal and update from each result) and keeps, per strategy and trial index,
the median over seeds in `decisions.csv` beside `calibration.csv`; `Calibration.decision_s` reads it back, and the
cost clock and the simulated clock charge it (calibration.py, runner.py). Above the runner, which it runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from lrsearch.experiment.provenance import processor

# the searchers the suite runs on tables (experiments/suite-cpu-tables.toml), with its start-up
DECISION_STRATEGIES = ["grid", "random", "optuna-tpe", "optuna-tpe-asha", "hyperopt-tpe", "nni-tpe", "optunity-pso"]
DECISION_OPTIONS = {s: {"n_startup_trials": 4} for s in ("optuna-tpe", "optuna-tpe-asha", "hyperopt-tpe", "nni-tpe")}


def measure_decisions(table: str | Path, out: str | Path, strategies: list[str] | None = None, seeds: int = 10,
                      budget: int = 32, progress=print, options: dict | None = None) -> pd.DataFrame:
    """Each strategy's decision seconds on `table` (a run on a simulated clock, where nothing else takes time), per
    trial index over `seeds` runs at `budget`: median, min, max, with `options` per strategy (default: the suite's
    start-up). Writes out/decisions.csv and out/DECISIONS.md; a strategy measured before keeps its rows unless it is
    measured again, and DECISIONS.md gains a section per measurement (the slow tools are measured apart, at fewer
    seeds)."""
    import tempfile

    import torch

    from lrsearch.experiment.config import Experiment
    from lrsearch.experiment.provenance import as_markdown, environment
    from lrsearch.experiment.runner import run_experiment
    from lrsearch.experiment.store import Store
    from lrsearch.experiment.table import Table

    torch.set_num_threads(1)
    strategies = strategies or DECISION_STRATEGIES
    loaded = Table.load(table)
    options = {k: v for k, v in (DECISION_OPTIONS if options is None else options).items() if k in strategies}
    experiment = Experiment(name="decisions", task=loaded.task, table=str(table), strategies=strategies,
                            budgets=[budget], seeds=seeds, space=loaded.space.to_dict(), options=options,
                            executor={"kind": "simulated"})
    with tempfile.TemporaryDirectory() as scratch:
        folder = run_experiment(experiment, Path(scratch) / "runs", progress=False)
        store = Store(folder / "results.sqlite", create=False)
        try:
            trials = store.trials_frame()
        finally:
            store.close()
    decisions = (trials.groupby(["strategy", "trial_index"])["overhead_s"]
                 .agg(decision_s="median", decision_s_min="min", decision_s_max="max", runs="count").reset_index())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    measured = decisions
    earlier = pd.read_csv(out / "decisions.csv") if (out / "decisions.csv").is_file() else None
    if earlier is not None:
        decisions = pd.concat([earlier[~earlier["strategy"].isin(strategies)], decisions], ignore_index=True)
    decisions.to_csv(out / "decisions.csv", index=False)
    env = environment() | {"processor": processor(), "cores": os.cpu_count(), "threads": 1}
    per_strategy = measured.groupby("strategy", sort=False)["decision_s"].agg(["median", "max", "sum"])
    per_strategy.columns = ["median_s_per_trial", "slowest_trial_s", f"run_of_{budget}_s"]
    notes = out / "DECISIONS.md"
    kept = [s for s in (earlier["strategy"].unique() if earlier is not None else []) if s not in strategies]
    head = (notes.read_text().rstrip() + "\n\n" + f"## Then {', '.join(strategies)}\n\n"
            if kept and notes.is_file() else "# Calibration: strategies' decision seconds\n\n")
    lines = [head.rstrip("\n"), "",
             f"Each strategy ran {seeds} seeds at budget {budget} on `{table}` ({loaded.describe()}) with the "
             "simulated executor: trials read from the table, so the seconds left are the strategy's own (its "
             "proposal and its update from the result, `overhead_s`). `decisions.csv` keeps the median, min and max "
             "per strategy and trial index; a simulated run charges the median to its clock (a trial index past "
             f"{budget - 1} is charged the last one's). Options: {options}.", "",
             f"- processor: {env['processor']}, {env['cores']} cores", as_markdown(env).rstrip(), "",
             per_strategy.reset_index().to_markdown(index=False, floatfmt=".4f"), ""]
    notes.write_text("\n".join(lines))
    progress(per_strategy.to_string())
    return decisions
