"""Budget tables: which strategy reaches the target at which budget.

A report whose experiment has several budgets gets a Budgets section (`budgets_section`, from `build_report`):
each strategy's best value and chance of reaching the target at each budget, over seeds. On a table (the
simulated executor) a strategy whose proposals do not depend on its budget ran once, at the largest budget
(runner.py's `run_budgets`), and each smaller budget b is read off its first b trials (`budget_runs`); grid
ran at every budget. Trained runs are read at the budgets they ran.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lrsearch.experiment.store import Store
from lrsearch.reporting.figures import budget_figures
from lrsearch.reporting.tables import (
    median_best,
    median_with_failures,
    search_time_to_target,
    simulated_times,
    wilson_interval,
)
from lrsearch.search.strategies import REGISTRY, USABLE
from lrsearch.training.errors import InputError


def budget_runs(trials: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    """One row per (strategy, budget, seed): a run at `run_budget` stands for each budget b <= it that the
    strategy did not run itself (no run of its own at b, nor between b and `run_budget`), read as its first b
    trials (see the module docstring)."""
    rows = []
    ran = trials.groupby(["strategy", "seed"])["run_budget"].agg(lambda b: sorted(set(b))).to_dict()
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
        clock = simulated_times(g) if "extra" in g else None
        if clock is None:  # one trial after another: the seconds spent until the first reaches the target
            seconds, index = search_time_to_target(g["train_s"].tolist(), [None if math.isnan(t) else t for t in ttt])
        aware = REGISTRY[strategy].budget_aware
        # a smaller budget is read off this run's first trials when no run of its own at or above it is smaller
        own = ran[(strategy, seed)]
        for budget in ([run_budget] if aware else
                       [b for b in budgets if b <= run_budget and min(r for r in own if r >= b) == run_budget]):
            k = min(budget, len(g)) - 1
            if clock is not None:  # the simulated clock: the earliest moment one of the first b trials reached it
                reached_at = clock["reached_at_s"].to_numpy(dtype=float)[:k + 1]
                hit = np.isfinite(reached_at)
                seconds = float(reached_at[hit].min()) if hit.any() else None
                index = int(np.flatnonzero(hit)[0]) + 1 if hit.any() else None
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


def budgets_section(trials: pd.DataFrame, budgets: list[int], out: Path, target: float | None) -> list[str]:
    """The Budgets section of a report whose experiment has several budgets: `tables/budget_*.csv`, the two
    budget figures and the Markdown. `trials`: the report's trials table (its clock)."""
    trials = trials[trials["kind"] == "train"].rename(columns={"budget": "run_budget"})
    if len(budgets) < 2 or trials.empty:
        return []
    runs = budget_runs(trials, sorted(budgets))
    summary = budget_summary(runs)
    needed = budget_needed(summary)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for name, frame in (("budget_runs", runs), ("budget_summary", summary), ("budget_needed", needed)):
        frame.to_csv(out / "tables" / f"{name}.csv", index=False)
    figures = budget_figures(summary, out / "figures", target)
    prefixed = sorted({s for s, g in trials.groupby("strategy") if g["run_budget"].nunique() < len(budgets)})
    lines = ["## Budgets", "",
             f"Each strategy at budgets {sorted(budgets)}, over {runs['seed'].nunique()} seeds. "
             + (f"{', '.join(prefixed)} ran once per seed at the largest budget (their proposals do not depend on "
                "it) and each smaller budget b is their first b trials; the others ran at every budget. "
                if prefixed else "")
             + "`p_target`: the share of seeds whose best trial reached the target (Wilson 95% interval); "
             "`median_best_val_acc`: with its percentile-bootstrap 95% interval.", "",
             "### Budget needed to reach the target on 90% of seeds", "",
             "The smallest budget at which at least 90% of the seeds reach the target; `optimistic` / `pessimistic` "
             "read the same off the upper / lower end of the Wilson interval. Empty: not within these budgets.", "",
             needed.to_markdown(index=False, floatfmt=".3g"), ""]
    lines += [f"![{fig.stem}](figures/{fig.name})\n" for fig in figures]
    overhead = proposal_overhead(trials)
    overhead.to_csv(out / "tables" / "budget_overhead.csv", index=False)
    lines += ["### Proposal overhead", "",
              "Seconds each library spent per proposal (asking for a trial and being told its result), measured on "
              "this machine over every trial of its runs at its largest budget. A library that thinks longer than a "
              "trial trains loses on a short trial what it may win in trials.", "",
              overhead.to_markdown(index=False, floatfmt=".3g"), ""]
    lines += ["Every budget's numbers: `tables/budget_summary.csv`; per run and budget: `tables/budget_runs.csv`.", ""]
    return lines


def real_trials(results_dir: str | Path) -> pd.DataFrame:
    """The training trials of real runs in a results folder, in the replay's trial columns."""
    path = Path(results_dir) / "results.sqlite"
    if not path.is_file():
        raise InputError(f"{path} does not exist; run the real experiment first (`lrsearch run ...`)")
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
