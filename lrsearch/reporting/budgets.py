"""Budget tables from replayed (or real) trials: which strategy reaches the target at which budget.

`write_replay` writes a replay's (`lrsearch.experiment.replay_study.run_replay`) tables, their
figures and REPORT.md: `lrsearch replay`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lrsearch.experiment.config import Experiment
from lrsearch.experiment.provenance import environment
from lrsearch.experiment.replay_study import ReplayRun
from lrsearch.experiment.store import Store
from lrsearch.reporting.figures import budget_figures, parallel_speedup_figure, replay_check_figure
from lrsearch.reporting.parallel import parallel_runs, parallel_summary
from lrsearch.reporting.report import write_replay_report
from lrsearch.reporting.scores import write_anchors
from lrsearch.reporting.tables import (
    median_best,
    median_with_failures,
    search_time_to_target,
    wilson_interval,
)
from lrsearch.search.strategies import REGISTRY, USABLE, get_strategy
from lrsearch.training.errors import InputError


def budget_runs(trials: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    """One row per (strategy, budget, seed): a run at `run_budget` stands for each budget b <= it
    that the strategy did not run itself, read as its first b trials (see the module docstring)."""
    rows = []
    for (strategy, run_budget, seed), g in trials.groupby(["strategy", "run_budget", "seed"], sort=False):
        g = g.sort_values("trial_index")
        status = g["status"].to_numpy()
        value = np.where(np.isin(status, USABLE), g["value"].to_numpy(dtype=float), np.nan)  # NaN: no value
        best_so_far = np.fmax.accumulate(value)  # fmax skips NaN: NaN until the run's first value
        argbest = _first_best(value)
        n_diverged, n_pruned = np.cumsum(status == "diverged"), np.cumsum(status == "pruned")
        cum_train_s = np.cumsum(g["train_s"].to_numpy(dtype=float))
        cum_overhead_s = np.cumsum(g["overhead_s"].to_numpy(dtype=float))
        lrs, test_accs = g["lr"].to_numpy(dtype=float), g["final_test_acc"].to_numpy(dtype=float)
        ttt = g["time_to_target_s"].to_numpy(dtype=float)
        seconds, index = search_time_to_target(g["train_s"].tolist(), [None if math.isnan(t) else t for t in ttt])
        aware = REGISTRY[strategy].budget_aware
        for budget in ([run_budget] if aware else [b for b in budgets if b <= run_budget]):
            k = min(budget, len(g)) - 1
            reached = index is not None and index <= budget
            rows.append({
                "strategy": strategy, "budget": budget, "seed": seed, "n_trials": k + 1,
                "n_diverged": int(n_diverged[k]), "n_pruned": int(n_pruned[k]), "best_val_acc": float(best_so_far[k]),
                "best_lr": float(lrs[argbest[k]]) if argbest[k] is not None else math.nan,
                "test_acc_of_best": float(test_accs[argbest[k]]) if argbest[k] is not None else math.nan,
                "train_s": float(cum_train_s[k]), "overhead_s": float(cum_overhead_s[k]),
                "search_time_to_target_s": seconds if reached else math.nan,
                "trials_to_target": index if reached else math.nan, "reached_target": reached})
    return pd.DataFrame(rows)


def _first_best(values: np.ndarray) -> list[int | None]:
    """After each trial, the index of the first trial with the best value so far (None before any value)."""
    best: int | None = None
    out = []
    for k, v in enumerate(values):
        if not math.isnan(v) and (best is None or v > values[best]):
            best = k
        out.append(best)
    return out


def budget_summary(runs: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Per strategy and budget, over seeds: median best accuracy and P(reach target), with 95% intervals
    (percentile bootstrap for the median, Wilson for the proportion), and the median search time-to-target."""
    rows = []
    for (strategy, budget), g in runs.groupby(["strategy", "budget"], sort=True):
        acc, acc_low, acc_high = median_best(g["best_val_acc"].to_numpy(dtype=float), n_boot=n_boot)
        hits = int(g["reached_target"].sum())
        p_low, p_high = wilson_interval(hits, len(g))
        times = g["search_time_to_target_s"].to_numpy(dtype=float)
        rows.append({"strategy": strategy, "budget": budget, "n_seeds": len(g),
                     "median_best_val_acc": acc, "acc_ci_low": acc_low, "acc_ci_high": acc_high,
                     "p_target": hits / len(g), "p_ci_low": p_low, "p_ci_high": p_high,
                     "median_time_to_target_s": median_with_failures(times),
                     "median_overhead_s": float(g["overhead_s"].median())})
    return pd.DataFrame(rows)


def proposal_overhead(trials: pd.DataFrame, startup: dict[str, int] | None = None) -> pd.DataFrame:
    """Per strategy: the seconds its library spent on each proposal (`overhead_s`: asking for a trial and being
    told its result), over every trial of its runs at its largest budget: median, 90th percentile and max per
    proposal, the median past its random start-up (`startup`: strategy -> trials), and the median per run."""
    rows = []
    for strategy, g in trials.groupby("strategy", sort=True):
        g = g[g["run_budget"] == g["run_budget"].max()]
        per = g["overhead_s"].to_numpy(dtype=float)
        past = g.loc[g["trial_index"] >= (startup or {}).get(strategy, 0), "overhead_s"].to_numpy(dtype=float)
        rows.append({"strategy": strategy, "run_budget": int(g["run_budget"].max()), "proposals": len(per),
                     "median_s": float(np.median(per)), "p90_s": float(np.quantile(per, 0.9)),
                     "max_s": float(per.max()), "median_past_startup_s": float(np.median(past)) if len(past) else math.nan,
                     "median_per_run_s": float(g.groupby("seed")["overhead_s"].sum().median())})
    return pd.DataFrame(rows)


def budget_needed(summary: pd.DataFrame, probability: float = 0.9) -> pd.DataFrame:
    """Per strategy: the smallest budget at which the share of seeds reaching the target is >= `probability`
    (NaN: not within the budgets replayed), and the same read off the interval's ends."""
    def first_budget(g: pd.DataFrame, column: str) -> float:
        hit = g.loc[g[column] >= probability, "budget"]
        return float(hit.iloc[0]) if len(hit) else math.nan

    rows = []
    for strategy, g in summary.groupby("strategy", sort=False):
        g = g.sort_values("budget")
        rows.append({"strategy": strategy, f"budget_for_p{round(probability * 100)}": first_budget(g, "p_target"),
                     "budget_optimistic": first_budget(g, "p_ci_high"),
                     "budget_pessimistic": first_budget(g, "p_ci_low"),
                     "p_target_at_max_budget": float(g["p_target"].iloc[-1]), "max_budget": int(g["budget"].iloc[-1])})
    return pd.DataFrame(rows).sort_values([f"budget_for_p{round(probability * 100)}", "strategy"]).reset_index(drop=True)


def real_trials(results_dir: str | Path) -> pd.DataFrame:
    """The training trials of real runs in a results folder, in the replay's trial columns."""
    path = Path(results_dir) / "results.sqlite"
    if not path.is_file():
        raise InputError(f"replay.check: {path} does not exist; run the real experiment first (`lrsearch run ...`)")
    store = Store(path, create=False)
    try:
        trials = store.trials_frame()
    finally:
        store.close()
    trials = trials[trials["kind"] == "train"].rename(columns={"budget": "run_budget"})
    return trials[["strategy", "run_budget", "seed", "trial_index", "lr", "status", "value", "final_test_acc",
                   "train_s", "overhead_s", "time_to_target_s"]]


def compare_with_real(replay_runs: pd.DataFrame, real_runs: pd.DataFrame) -> pd.DataFrame:
    """Replayed against real distributions of the best validation accuracy, for each (strategy, budget)
    both have: medians and their gap, the two-sample Kolmogorov-Smirnov statistic and p-value, the
    1-Wasserstein distance (the mean absolute gap between the quantile functions), and P(target)."""
    from scipy.stats import ks_2samp, wasserstein_distance

    rows = []
    for (strategy, budget), real in real_runs.groupby(["strategy", "budget"], sort=True):
        replay = replay_runs[(replay_runs["strategy"] == strategy) & (replay_runs["budget"] == budget)]
        if replay.empty:
            continue
        a, b = real["best_val_acc"].to_numpy(dtype=float), replay["best_val_acc"].to_numpy(dtype=float)
        ks = ks_2samp(a, b)
        rows.append({"strategy": strategy, "budget": budget, "n_real": len(a), "n_replay": len(b),
                     "median_real": float(np.median(a)), "median_replay": float(np.median(b)),
                     "median_gap": float(np.median(b) - np.median(a)),
                     "iqr_real": float(np.subtract(*np.quantile(a, [0.75, 0.25]))),
                     "iqr_replay": float(np.subtract(*np.quantile(b, [0.75, 0.25]))),
                     "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
                     "wasserstein": float(wasserstein_distance(a, b)),
                     "p_target_real": float(real["reached_target"].mean()),
                     "p_target_replay": float(replay["reached_target"].mean())})
    return pd.DataFrame(rows)


def write_replay(experiment: Experiment, run: ReplayRun, results: str | Path | None = None) -> Path:
    """A replay's tables (CSV and Parquet), figures and REPORT.md (the replay itself: experiment/replay.py's
    `run_replay`); returns the folder. With the K-worker replay, also the `parallel_*` tables and
    figures/parallel_speedup.png."""
    out = experiment.results_dir(results)
    env = environment()
    trials = run.trials
    runs = budget_runs(trials, experiment.budgets)
    summary = budget_summary(runs)
    startup = {name: get_strategy(name, experiment.search_space().to_dict(), **experiment.options.get(name, {})).startup_trials or 0
               for name in experiment.strategies}
    tables = {"runs": runs, "summary": summary, "budget_needed": budget_needed(summary),
              "overhead": proposal_overhead(trials, startup)}
    if experiment.replay.check:
        real = budget_runs(real_trials(experiment.replay.check), experiment.replay.check_budgets)
        real = real[real["budget"].isin(experiment.replay.check_budgets)]
        tables["check"] = compare_with_real(runs, real)
        tables["check_runs"] = pd.concat([real.assign(source="real"),
                                          runs.merge(real[["strategy", "budget"]].drop_duplicates())
                                          .assign(source="replay")], ignore_index=True)
    if run.parallel_trials is not None:
        tables["parallel_runs"] = parallel_runs(run.parallel_trials)
        tables["parallel_summary"] = parallel_summary(tables["parallel_runs"])
    (out / "tables").mkdir(parents=True, exist_ok=True)
    trials.to_parquet(out / "tables" / "trials.parquet", index=False)  # large: Parquet only, not committed
    if run.parallel_trials is not None:
        run.parallel_trials.to_parquet(out / "tables" / "parallel_trials.parquet", index=False)  # as trials.parquet
    if len(trials):
        write_anchors(out)  # the scores' anchors from it, small and committed
    for name, frame in tables.items():
        frame.to_parquet(out / "tables" / f"{name}.parquet", index=False)
        if name != "runs":
            frame.to_csv(out / "tables" / f"{name}.csv", index=False)
    target = experiment.target_value()
    figures = budget_figures(summary, out / "figures", target)
    if "check" in tables:
        figures.append(replay_check_figure(tables["check_runs"], out / "figures" / "replay_check.png"))
    if "parallel_summary" in tables:
        figures.append(parallel_speedup_figure(tables["parallel_summary"], out / "figures" / "parallel_speedup.png"))
    write_replay_report(out, experiment, tables, figures, env, run.table.environment, run.elapsed_s, len(trials),
                        run.parallel_s)
    return out
