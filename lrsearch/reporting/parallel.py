"""Tables of the replay with K simulated workers (`lrsearch.experiment.simulated`): per run, then per
strategy and K, with the speed-up over one worker."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lrsearch.reporting.scores import R_MAX, performance_ratios, problem_times, profile_score
from lrsearch.reporting.tables import bootstrap_ci, median_with_failures


def parallel_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (strategy, workers, seed) run: when on the simulated clock the first trial reached the
    target (`wall_to_target_s`, NaN: none did), when the last trial finished (`makespan_s`), and the
    seconds the strategy spent deciding (the sum of its trials' overhead_s)."""
    rows = []
    for (strategy, workers, seed), g in trials.groupby(["strategy", "workers", "seed"], sort=False):
        reached = g["reached_at_s"].to_numpy(dtype=float)
        rows.append({"strategy": strategy, "workers": workers, "seed": seed, "n_trials": len(g),
                     "wall_to_target_s": float(np.nanmin(reached)) if np.isfinite(reached).any() else math.nan,
                     "reached_target": bool(np.isfinite(reached).any()),
                     "makespan_s": float(g["finish_s"].max()), "train_s": float(g["train_s"].sum()),
                     "decision_s": float(g["overhead_s"].sum()),
                     "ran_sequentially": bool(g["ran_sequentially"].all())})
    return pd.DataFrame(rows)


def parallel_summary(runs: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Per strategy and K, over seeds: the share that reached the target, the median wall-clock
    time-to-target (a seed that never reached it counts as infinite) with its percentile-bootstrap 95%
    interval, the median makespan and decision seconds, and the speed-ups over K = 1: median at K = 1 /
    median at K, of the time-to-target and of the makespan (NaN without a K = 1 row, or where a median
    is infinite)."""
    rows = []
    for (strategy, workers), g in runs.groupby(["strategy", "workers"], sort=True):
        times = g["wall_to_target_s"].to_numpy(dtype=float)
        low, high = bootstrap_ci(times, n_boot=n_boot)
        rows.append({"strategy": strategy, "workers": int(workers), "n_seeds": len(g),
                     "success_rate": float(g["reached_target"].mean()),
                     "median_wall_to_target_s": median_with_failures(times), "wtt_ci_low_s": low, "wtt_ci_high_s": high,
                     "median_makespan_s": float(g["makespan_s"].median()),
                     "median_decision_s": float(g["decision_s"].median()),
                     "ran_sequentially": bool(g["ran_sequentially"].all())})
    summary = pd.DataFrame(rows)
    if summary.empty:
        return summary
    one = summary[summary["workers"] == 1].set_index("strategy")
    for column, ratio in (("median_wall_to_target_s", "speedup"), ("median_makespan_s", "makespan_speedup")):
        base, at_k = summary["strategy"].map(one[column]).to_numpy(dtype=float), summary[column].to_numpy(dtype=float)
        finite = np.isfinite(base) & np.isfinite(at_k) & (at_k > 0)
        summary[ratio] = np.divide(base, at_k, out=np.full(len(summary), math.nan), where=finite)
    return summary


def suite_parallel(folders: list[Path]) -> pd.DataFrame:
    """Across a suite's replayed problems (each folder's `tables/parallel_runs`): per strategy and K, AlgoPerf's
    score B of the simulated wall-clock time-to-target among the strategies at that same K (the question of a
    user with K workers: which strategy?), and the speed-up over K = 1 per problem (`parallel_summary`'s
    `speedup`) as its median, min and max over the problems where both medians are finite. Empty where no
    folder has the tables."""
    runs, summaries = [], []
    for folder in map(Path, folders):
        tables = folder / "tables"
        if not (tables / "parallel_runs.csv").exists() or not (tables / "parallel_summary.csv").exists():
            continue
        runs.append(pd.read_csv(tables / "parallel_runs.csv").assign(problem=folder.name))
        summaries.append(pd.read_csv(tables / "parallel_summary.csv").assign(problem=folder.name))
    if not runs:
        return pd.DataFrame()
    runs, summary = pd.concat(runs, ignore_index=True), pd.concat(summaries, ignore_index=True)
    rows = []
    for workers, at_k in runs.groupby("workers", sort=True):
        score = profile_score(performance_ratios(problem_times(at_k, column="wall_to_target_s"), R_MAX), R_MAX)
        for row in score.itertuples(index=False):
            speedups = summary.loc[(summary["strategy"] == row.strategy) & (summary["workers"] == workers), "speedup"]
            finite = speedups[np.isfinite(speedups.to_numpy(dtype=float))]
            sequential = summary.loc[summary["strategy"] == row.strategy, "ran_sequentially"].astype(bool).all()
            rows.append({"strategy": row.strategy, "workers": int(workers), "score_B_wall": row.score_B,
                         "problems_within_r_max": row.problems_within_r_max, "problems": row.problems,
                         "speedup_median": float(finite.median()) if len(finite) else math.nan,
                         "speedup_min": float(finite.min()) if len(finite) else math.nan,
                         "speedup_max": float(finite.max()) if len(finite) else math.nan,
                         "speedup_problems": int(len(finite)), "ran_sequentially": bool(sequential)})
    return pd.DataFrame(rows)
