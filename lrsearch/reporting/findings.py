"""A suite's findings in plain words, each generated from its scores with its number, its interval and a link to
the table behind it (the opening section of a suite's REPORT.md).

The sentences answer a practitioner's questions in order: which strategy reaches the target soonest, and how
sure that is (score B recomputed on resamples of seeds and of problems, `resampled_scores`); how many trials
random search needs to reach the target on 9 seeds of 10; which ends on the best learning rate; what K workers
change; what a range test's suggestion is worth (results/range-rules-cpu); whether the CPU ranking predicts the
GPU's (Kendall's tau against results/suite-gpu-table, the same searchers on the GPU workload's table, else
results/benchmark-gpu); and what the data do not resolve. A sentence whose data are
absent is left out, never guessed.

Common random numbers: every strategy's run s uses seed s, and a table answers the same (run seed, grid point)
with the same recorded seed, so strategies are compared on the same draws. That is on purpose (it removes the
table's noise from the differences); the comparisons are paired: resamples draw the same seeds for every strategy,
and the rank test blocks on (problem, seed).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from lrsearch.reporting.scores import R_MAX, at_budget
from lrsearch.reporting.tables import MIN_BOOTSTRAP_N, wilson_interval

N_RESAMPLES = 1000
REACH = 0.9  # "reaches the target on 9 seeds of 10"


def resampled_scores(frame: pd.DataFrame, budget: int | None = None, n_boot: int = N_RESAMPLES, seed: int = 0,
                     r_max: float = R_MAX) -> pd.DataFrame:
    """Score B by time (AlgoPerf's: a problem's time the median over seeds, ratios to the fastest, credit
    (r_max - ratio) / (r_max - 1) within r_max) on `n_boot` resamples: problems with replacement and, within each,
    seeds with replacement, the same seeds for every strategy (paired). One row per (resample, strategy): score_B
    and its rank (1 = highest; ties share the lower rank)."""
    runs = at_budget(frame, budget)
    problems, strategies = sorted(runs["problem"].unique()), sorted(runs["strategy"].unique())
    seeds = sorted(runs["seed"].unique())
    times = runs.assign(_t=runs["search_time_to_target_s"].astype(float)
                        .where(runs["reached_target"].astype(bool), math.inf).fillna(math.inf))
    cube = (times.pivot_table(index=["problem", "strategy"], columns="seed", values="_t", aggfunc="first")
            .reindex(pd.MultiIndex.from_product([problems, strategies]), columns=seeds).fillna(math.inf)
            .to_numpy().reshape(len(problems), len(strategies), len(seeds)))
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(n_boot):
        picked = rng.integers(len(problems), size=len(problems))
        medians = np.stack([np.median(cube[p][:, rng.integers(len(seeds), size=len(seeds))], axis=1) for p in picked])
        best = medians.min(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(best == 0, np.where(medians == 0, 1.0, math.inf), medians / best)
        credit = np.where(np.isfinite(ratio) & (ratio <= r_max), (r_max - ratio) / (r_max - 1.0), 0.0)
        score = credit.mean(axis=0)
        rank = 1 + (score[None, :] > score[:, None]).sum(axis=1)
        rows += [{"resample": b, "strategy": s, "score_B": float(score[i]), "rank": int(rank[i])}
                 for i, s in enumerate(strategies)]
    return pd.DataFrame(rows)


def _interval(low: float, high: float, spec: str, n_seeds: int) -> str:
    """"[low, high]", or why there is none: a percentile interval over fewer than MIN_BOOTSTRAP_N seeds does not
    hold its level (reporting/tables.py)."""
    if n_seeds < MIN_BOOTSTRAP_N or math.isnan(low) or math.isnan(high):
        return f"(no interval: {n_seeds} seeds, under {MIN_BOOTSTRAP_N})"
    return f"[{low:{spec}}, {high:{spec}}]"


def rank_stability(resampled: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: B's percentile 95% interval over the resamples, and the share of resamples at each rank."""
    shares = (resampled.groupby("strategy")["rank"].value_counts(normalize=True).unstack(fill_value=0.0)
              .add_prefix("p_rank_"))
    interval = resampled.groupby("strategy")["score_B"].quantile([0.025, 0.975]).unstack()
    interval.columns = ["B_ci_low", "B_ci_high"]
    return interval.join(shares).reset_index()


def rank_stability_figure(stability: pd.DataFrame, order: list[str], path: Path, n_boot: int) -> Path:
    """Each strategy's rank distribution under resampling: a stacked bar per strategy, rank 1 darkest."""
    from matplotlib.figure import Figure

    from lrsearch.reporting.figures import _save

    ranks = sorted(int(c.removeprefix("p_rank_")) for c in stability.columns if c.startswith("p_rank_"))
    table = stability.set_index("strategy").loc[order]
    fig = Figure(figsize=(8, 0.45 * len(order) + 1.6))
    ax = fig.subplots()
    left = np.zeros(len(order))
    colours = [tuple(float(v) for v in c) for c in __import__("matplotlib").colormaps["viridis"](
        np.linspace(0.05, 0.95, len(ranks)))]
    for r, colour in zip(ranks, colours):
        share = table[f"p_rank_{r}"].to_numpy()
        ax.barh(order, share, left=left, color=colour, label=f"rank {r}")
        left += share
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="share of resamples")
    ax.set_title(f"Rank by score B under {n_boot} resamples of problems and seeds", fontsize=10)
    ax.legend(ncol=min(len(ranks), 7), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def budget_to_reach(frame: pd.DataFrame, strategy: str, share: float = REACH) -> pd.DataFrame:
    """Per problem: the smallest budget b at which at least `share` of the seeds of `strategy` reached the
    target within b trials (NaN: not within the budgets), with the Wilson interval of the share there."""
    rows = []
    for problem, g in frame[frame["strategy"] == strategy].groupby("problem"):
        by_budget = g.groupby("budget")["reached_target"].agg(["sum", "size"]).sort_index()
        hit = by_budget[by_budget["sum"] >= share * by_budget["size"]]
        b = int(hit.index[0]) if len(hit) else math.nan
        n_hit, n = (hit.iloc[0] if len(hit) else by_budget.iloc[-1])[["sum", "size"]]
        low, high = wilson_interval(int(n_hit), int(n))
        rows.append({"problem": problem, "strategy": strategy, "budget": b, "seeds": int(n),
                     "reached_share": n_hit / n, "ci_low": low, "ci_high": high,
                     "max_budget": int(by_budget.index[-1])})
    return pd.DataFrame(rows)


def tables_check_sentence(check_dir: Path, link) -> str | None:
    """The real check of the tables (benchmarks/tables_check.py's check.csv and ranks.csv) in one sentence: its
    verdict under the rule fixed before the runs, every failing cell, and Kendall's tau of the two rankings."""
    cells_csv, ranks_csv = check_dir / "check.csv", check_dir / "ranks.csv"
    if not cells_csv.exists():
        return None
    cells = pd.read_csv(cells_csv)
    if cells.empty:
        return None
    status = cells["status"]
    verdict = "FAIL" if (status == "fail").any() else "INCOMPLETE" if (status == "incomplete").any() else "PASS"
    judged = cells[status != "incomplete"]
    seeds = int(judged["real_seeds"].min()) if len(judged) else int(cells["real_seeds"].max())
    text = (f"**The tables against real runs: {verdict}**. {', '.join(sorted(cells['strategy'].unique()))} trained for "
            f"real on {', '.join(sorted(cells['problem'].unique()))} ({seeds} seeds, budget 16): "
            f"{int((status == 'pass').sum())} of {len(cells)} cells pass the rule fixed before the runs (each side's "
            "success rate and median best accuracy within overlapping 95% intervals)")
    failing = cells[status == "fail"]
    if len(failing):
        text += "; " + "; ".join(
            f"{r.problem} / {r.strategy} fails ({r.reason}: success {r.real_success_rate:.0%} real against "
            f"{r.table_success_rate:.0%} on the table, median best {r.real_median_best:.3f} against "
            f"{r.table_median_best:.3f})" for r in failing.itertuples())
    if (status == "incomplete").any():
        text += f"; {int((status == 'incomplete').sum())} not yet judged (fewer than 10 real seeds)"
    gaps = (judged["real_median_best"] - judged["table_median_best"]).dropna()
    if len(gaps):
        g = judged.loc[gaps.abs().idxmax()]
        text += (f"; the largest gap, {g['problem']} / {g['strategy']}: median best {g['real_median_best']:.3f} real "
                 f"against {g['table_median_best']:.3f} on the table"
                 + (" (a real trial trains at the point proposed, a table's at its nearest grid point)"
                    if g["real_median_best"] > g["table_median_best"] else ""))
    if ranks_csv.exists():
        ranks = pd.read_csv(ranks_csv)
        every = ranks[ranks["scope"] == "all cells"]
        if len(every) and not math.isnan(every["kendall_tau"].iloc[0]):
            text += (f"; Kendall's tau of the two rankings by median best accuracy {every['kendall_tau'].iloc[0]:.2f} "
                     f"over {int(every['cells'].iloc[0])} cells (p = {every['p_value'].iloc[0]:.2f}; across problems "
                     "partly their accuracy levels)")
    return text + f" ({link(cells_csv)}, {link(check_dir / 'REPORT.md')})."


def contenders_table(contenders_root: Path, tables_root: Path) -> pd.DataFrame:
    """Per (problem, strategy) of the real contenders' suite (range tests and self-tuning optimizers): the share
    of seeds reaching the target (Wilson 95%) and the median search time-to-target (a miss counts as infinite),
    beside random search's median on the same problem answered from its table. Empty without both."""
    from lrsearch.reporting.tables import median_with_failures

    rows = []
    for runs_csv in sorted(contenders_root.glob("*/tables/runs.csv")):
        problem = runs_csv.parent.parent.name
        table_runs = tables_root / problem / "tables" / "runs.csv"
        if not table_runs.exists():
            continue
        table = pd.read_csv(table_runs)
        random = table[(table["strategy"] == "random") & (table["budget"] == table["budget"].max())]
        random_ttt = random["search_time_to_target_s"].to_numpy(dtype=float)
        runs = pd.read_csv(runs_csv)
        runs = runs[runs["run_status"] == "complete"]
        for strategy, g in runs.groupby("strategy", sort=False):
            hits, n = int(g["reached_target"].sum()), len(g)
            low, high = wilson_interval(hits, n)
            rows.append({"problem": problem, "strategy": strategy, "seeds": n, "reached": hits,
                         "reach_share": hits / n, "ci_low": low, "ci_high": high,
                         "median_time_to_target_s": median_with_failures(g["search_time_to_target_s"].to_numpy(dtype=float)),
                         "median_best_val_acc": float(g["best_val_acc"].median()),
                         "random_table_seeds": len(random),
                         "random_table_median_time_to_target_s": median_with_failures(random_ttt)
                         if len(random) else math.nan})
    return pd.DataFrame(rows)


def _suite_seeds(folder: Path) -> int | None:
    """How many seeds the suite in `folder` ran (its suite.json), None without one."""
    suite = folder / "suite.json"
    return len(json.loads(suite.read_text())["seeds"]) if suite.exists() else None


REFERENCES = ("random", "optuna-tpe")  # the slow tools' suite runs these beside them on the same seeds


def slow_tools_sentence(slow_root: Path, link) -> str | None:
    """The slow model-based tools' suite (experiments/suite-cpu-tables-slow.toml: the same problems, 20 seeds, each
    proposal's decision seconds on the clock) in one sentence: the best of them by score B, with its interval,
    against random search's on the same seeds; None without that suite's scores."""
    score_csv, stability_csv = slow_root / "scores" / "score.csv", slow_root / "scores" / "rank_stability.csv"
    if not score_csv.exists() or not stability_csv.exists():
        return None
    score = pd.read_csv(score_csv)
    stability = pd.read_csv(stability_csv).set_index("strategy")
    seeds = _suite_seeds(slow_root)
    slow = score[~score["strategy"].isin(REFERENCES)].sort_values("score_B_time", ascending=False)
    if slow.empty or "random" not in set(score["strategy"]):
        return None
    best = slow.iloc[0]
    random_b = float(score.loc[score["strategy"] == "random", "score_B_time"].iloc[0])

    def b(strategy: str, value: float) -> str:
        row = stability.loc[strategy]
        return f"{value:.2f} {_interval(row['B_ci_low'], row['B_ci_high'], '.2f', seeds or 0)}"

    apart = (stability.loc[best["strategy"], "B_ci_low"] > stability.loc["random", "B_ci_high"]
             or stability.loc[best["strategy"], "B_ci_high"] < stability.loc["random", "B_ci_low"])
    tpe = score.loc[score["strategy"] == "optuna-tpe", "score_B_time"]
    return (f"Of the slow model-based tools ({', '.join(slow['strategy'])}; {seeds} seeds on the same problems, "
            f"each proposal's decision seconds on the clock) {best['strategy']} scores best, B "
            f"{b(best['strategy'], float(best['score_B_time']))} against random search's {b('random', random_b)} "
            + (f"and optuna-tpe's {b('optuna-tpe', float(tpe.iloc[0]))} " if len(tpe) else "")
            + f"on those seeds, {'apart from' if apart else 'not apart from'} random's ({link(score_csv)})")


def _random_reference(seconds: float) -> str:
    """ " against random search's N s on the table" (never, when its median seed misses); nothing without one."""
    if math.isnan(seconds):
        return ""
    return f" against random search's {f'{seconds:.0f} s' if math.isfinite(seconds) else 'never'} on the table"


def contenders_sentence(table: pd.DataFrame, link, csv: Path) -> str | None:
    """The real contenders in one sentence: per workload the one that reaches the target most often (then
    soonest), with its share, interval and median time beside random search's on the table; and which, if any,
    reach it on at least 9 seeds of 10 everywhere."""
    if table.empty:
        return None
    parts = []
    for problem, g in table.groupby("problem", sort=True):
        best = g.sort_values(["reach_share", "median_time_to_target_s"], ascending=[False, True]).iloc[0]
        ttt = best["median_time_to_target_s"]
        parts.append(f"{problem}: {best['strategy']} {int(best['reached'])} of {int(best['seeds'])} "
                     f"({best['reach_share']:.0%} [{best['ci_low']:.0%}, {best['ci_high']:.0%}]), median "
                     + (f"{ttt:.0f} s" if math.isfinite(ttt) else "never")
                     + _random_reference(best["random_table_median_time_to_target_s"]))
    reliable = [s for s, g in table.groupby("strategy")
                if len(g) == table["problem"].nunique() and (g["reach_share"] >= REACH).all()]
    seeds = int(table["seeds"].min())
    return (f"**A 2-trial range test or a learning-rate-free optimizer instead of a search** (trained for real, "
            f"{seeds} seeds a workload, cost clock): the most reliable per workload reaches the target in "
            + "; ".join(parts) + "; "
            + (f"{', '.join(reliable)} reach{'es' if len(reliable) == 1 else ''} it on 9 seeds of 10 on all "
               f"{table['problem'].nunique()} workloads measured" if reliable else
               f"none reaches it on 9 seeds of 10 on all {table['problem'].nunique()} workloads measured")
            + f" ({link(csv)}).")


def gpu_agreement(score: pd.DataFrame, gpu_summary: Path) -> dict | None:
    """Kendall's tau (and its p-value) of the suite's ranking by score B against the GPU benchmark's ranking by
    its own summary (`rank`), on the strategies both have; None with fewer than 3 in common."""
    from scipy.stats import kendalltau

    if not gpu_summary.exists():
        return None
    gpu = pd.read_csv(gpu_summary)
    gpu = gpu[gpu["budget"] == gpu["budget"].max()].set_index("strategy")
    common = [s for s in score["strategy"] if s in gpu.index]
    if len(common) < 3:
        return None
    cpu_b = score.set_index("strategy").loc[common, "score_B_time"]
    tau, p = kendalltau(-cpu_b.to_numpy(), gpu.loc[common, "rank"].to_numpy())
    return {"tau": float(tau), "pvalue": float(p), "strategies": common, "gpu_seeds": int(gpu["n_seeds"].max())}


def gpu_table_agreement(score: pd.DataFrame, gpu_score: Path) -> dict | None:
    """Kendall's tau (and its p-value) of the suite's ranking by score B against the GPU table's suite's
    (experiments/suite-gpu-table.toml: the same searchers, seeds and budget on the `gpu` workload's table, on that
    GPU's cost clock), on the strategies both have; None without that suite's scores or with fewer than 3 in common."""
    from scipy.stats import kendalltau

    if not gpu_score.exists():
        return None
    gpu = pd.read_csv(gpu_score).set_index("strategy")
    common = [s for s in score["strategy"] if s in gpu.index]
    if len(common) < 3:
        return None
    cpu_b = score.set_index("strategy").loc[common, "score_B_time"].to_numpy()
    tau, p = kendalltau(cpu_b, gpu.loc[common, "score_B_time"].to_numpy())
    return {"tau": float(tau), "pvalue": float(p), "strategies": common,
            "gpu_seeds": _suite_seeds(gpu_score.parent.parent)}


def _gpu_verdict(tau: float, p: float) -> str:
    return ("the two rankings agree beyond chance" if tau > 0 and p <= 0.05 else
            "the CPU ranking does not predict the GPU's" if tau <= 0 else
            "an agreement this weak is within chance, so whether the CPU problems predict the GPU's ranking is "
            "not resolved")


def _link(root: Path, path: Path) -> str:
    return f"[{path.name}]({Path(os.path.relpath(Path(path).resolve(), root.resolve())).as_posix()})"


def findings_section(root: Path, frame: pd.DataFrame, score: pd.DataFrame, n_seeds: int, budget: int,
                     repo: Path | None = None) -> list[str]:
    """The "Findings" section of a suite's REPORT.md (see the module docstring); writes scores/rank_stability.csv,
    its figure and scores/budget_to_reach.csv beside the scores."""
    root = Path(root)
    repo = Path(repo) if repo is not None else root.parent.parent
    out = root / "scores"
    out.mkdir(parents=True, exist_ok=True)
    n_problems = frame["problem"].nunique()
    resampled = resampled_scores(frame, budget)
    stability = rank_stability(resampled).set_index("strategy")
    order = list(score["strategy"])
    stability.loc[order].reset_index().to_csv(out / "rank_stability.csv", index=False)
    figure = rank_stability_figure(stability.reset_index(), order, out / "rank_stability.png", N_RESAMPLES)
    sentences = []

    top = score.iloc[0]
    s = stability.loc[top["strategy"]]
    runner_up = score.iloc[1] if len(score) > 1 else None
    first_share = float(s.get("p_rank_1", 0.0))
    sentence = (f"**Soonest to the target: {top['strategy']}**, score B {top['score_B_time']:.2f} "
                f"{_interval(s['B_ci_low'], s['B_ci_high'], '.2f', n_seeds)} over {n_problems} problems and {n_seeds} seeds at "
                f"budget {budget} (AlgoPerf's B: 1 = fastest on every problem; 95% interval over {N_RESAMPLES} "
                f"resamples of problems and seeds); it ranks first in {first_share:.0%} of the resamples")
    if runner_up is not None:
        r = stability.loc[runner_up["strategy"]]
        sentence += (f", {runner_up['strategy']} next at {runner_up['score_B_time']:.2f} "
                     f"{_interval(r['B_ci_low'], r['B_ci_high'], '.2f', n_seeds)}")
    sentence += f" ({_link(root, out / 'score.csv')}, {_link(root, out / 'rank_stability.csv')})."
    slow_root = repo / "results" / "suite-cpu-tables-slow"
    slow = slow_tools_sentence(slow_root, lambda path: _link(root, path)) if root.resolve() != slow_root.resolve() \
        else None
    sentences.append(sentence + (f" {slow}." if slow else ""))

    if "random" in set(frame["strategy"]):
        reach = budget_to_reach(frame, "random")
        reach.to_csv(out / "budget_to_reach.csv", index=False)
        found = reach.dropna(subset=["budget"])
        if len(found):
            per = "; ".join(f"{r.problem} {int(r.budget)} ({r.reached_share:.0%} [{r.ci_low:.0%}, {r.ci_high:.0%}])"
                            for r in found.itertuples())
            missing = reach[reach["budget"].isna()]
            sentences.append(
                f"**Random search reaches the target on 9 seeds of 10 within {int(found['budget'].min())} to "
                f"{int(found['budget'].max())} trials** on {len(found)} of {len(reach)} problems (per problem: {per}; "
                "share of seeds reaching it there, Wilson 95%)"
                + (f"; on {', '.join(missing['problem'])} not within {int(missing['max_budget'].max())}"
                   if len(missing) else "") + f" ({_link(root, out / 'budget_to_reach.csv')}).")

    best = score.sort_values("iqm_regret").iloc[0]
    others = score[score["strategy"] != best["strategy"]]
    apart = others[others["iqm_ci_low"] > best["iqm_ci_high"]]["strategy"].tolist()
    close = others[others["iqm_ci_low"] <= best["iqm_ci_high"]]["strategy"].tolist()
    sentences.append(
        f"**The best final learning rate at budget {budget}: {best['strategy']}**, IQM normalised regret "
        f"{best['iqm_regret']:.3f} {_interval(best['iqm_ci_low'], best['iqm_ci_high'], '.3f', n_seeds)} (0 = the best any trial "
        "reached, 1 = a median random trial)"
        + (("; its interval lies below " + (f"{len(apart)} of the {len(others)} others'" if apart
                                             else "none of the others'")
            + (f", not apart from {', '.join(close)}" if close else "")) if apart or close
           else "; without intervals, not told apart from the others")
        + f" ({_link(root, out / 'score.csv')}).")

    k_root = root.with_name(root.name + "-k4")
    if (k_root / "scores" / "score.csv").exists():
        k4 = pd.read_csv(k_root / "scores" / "score.csv").set_index("strategy")["score_B_time"]
        both = score.set_index("strategy")["score_B_time"].to_frame("k1").join(k4.rename("k4"), how="inner")
        fell = both[both["k4"] < both["k1"] - 0.25]
        kept = both[both["k4"] >= both["k1"] - 0.25].sort_values("k4", ascending=False)
        if len(both):
            sentences.append(
                "**With 4 workers** (the same search on the simulated clock, 4 trials in flight), "
                + (", ".join(f"{s} keeps B {v.k4:.2f} (from {v.k1:.2f})" for s, v in kept.head(3).iterrows()))
                + ("; " + ", ".join(f"{s} falls from {v.k1:.2f} to {v.k4:.2f}" for s, v in fell.iterrows())
                   + ": they propose only after each result, so they run one trial at a time" if len(fell) else "")
                + f" ({_link(root, k_root / 'scores' / 'score.csv')}).")

    # What a range test is worth: its suggestion as a constant LR, then its range trained as one cyclical run
    # (results/range-rules-cpu); with the real contenders' sentence, one finding (the report keeps to 8)
    rules = repo / "results" / "range-rules-cpu" / "summary.csv"
    trained = repo / "results" / "range-rules-cpu" / "trained_summary.csv"
    if rules.exists():
        summary = pd.read_csv(rules)
        best_rule = summary.loc[summary.groupby("workload")["good_share"].idxmax()]
        valley = summary[summary["rule"] == "valley"]
        sentence = (
            f"**A range test's suggestion is a starting point, not an answer**: over {int(summary['seeds'].min())} "
            f"range tests per workload, the best rule on each of {len(best_rule)} workloads lands on an LR whose table "
            f"seeds reach the target in {best_rule['good_share'].min():.0%} to {best_rule['good_share'].max():.0%} of "
            f"tests ({', '.join(f'{r.workload}: {r.rule}' for r in best_rule.itertuples())})"
            + (f"; fastai's valley is never far off, a median regret of {valley['median_regret'].min() * 100:.1f} to "
               f"{valley['median_regret'].max() * 100:.1f} accuracy points" if len(valley) else "")
            + f" ({_link(root, rules)})")
        if trained.exists():
            tr = pd.read_csv(trained)
            parts = []
            for rule, g in tr.groupby("rule"):
                parts.append(f"with {rule}'s range " + ", ".join(
                    f"{r.reach_share:.0%} [{r.reach_ci_low:.0%}, {r.reach_ci_high:.0%}] on {r.workload}"
                    for r in g.itertuples()))
            steps = (tr["total_steps_median"] / tr["run_steps_median"]).median()
            sentence += (f"; trained as one cyclical run ({tr['strategy'].iloc[0]}, {steps:.0f} trials' worth of "
                         f"steps in all) its range reaches the target in this share of {int(tr['seeds'].min())} "
                         "seeds: " + "; ".join(parts) + f" ({_link(root, trained)})")
        range_sentence = sentence + "."
    else:
        range_sentence = None

    # random search's reference is always the tables' suite (in the contenders' own report too)
    contenders = contenders_table(repo / "results" / "contenders-cpu", repo / "results" / "suite-cpu-tables")
    real = None
    if not contenders.empty:
        contenders.to_csv(out / "contenders.csv", index=False)
        real = contenders_sentence(contenders, lambda path: _link(root, path), out / "contenders.csv")
    if real and range_sentence:
        sentences.append(real + " " + range_sentence.replace("**A range test's suggestion is a starting point, not an "
                                                             "answer**:", "A range test's suggestion alone is a "
                                                             "starting point, not an answer:"))
    elif real or range_sentence:
        sentences.append(real or range_sentence)
    check = tables_check_sentence(repo / "results" / "tables-check-cpu" / "check", lambda path: _link(root, path))
    if check:
        sentences.append(check)

    gpu_score = repo / "results" / "suite-gpu-table" / "scores" / "score.csv"
    on_table = gpu_table_agreement(score, gpu_score)
    gpu = on_table or gpu_agreement(score, repo / "results" / "benchmark-gpu" / "tables" / "summary.csv")
    if on_table:
        sentences.append(
            f"**CPU against GPU**: Kendall's tau of this ranking by B against the same searchers' on the GPU "
            f"workload's table ({gpu['gpu_seeds']} seeds, budget and clock as here, that GPU's cost clock) over "
            f"{len(gpu['strategies'])} strategies is {gpu['tau']:.2f} (p = {gpu['pvalue']:.2f}): "
            f"{_gpu_verdict(gpu['tau'], gpu['pvalue'])} ({_link(root, gpu_score)}).")
    elif gpu:
        sentences.append(
            f"**CPU against GPU**: Kendall's tau of this ranking by B against the GPU benchmark's "
            f"({gpu['gpu_seeds']} seeds, one CIFAR-10 workload) over the {len(gpu['strategies'])} strategies both ran "
            f"is {gpu['tau']:.2f} (p = {gpu['pvalue']:.2f}): {_gpu_verdict(gpu['tau'], gpu['pvalue'])}; with "
            f"{gpu['gpu_seeds']} GPU seeds the GPU ranking itself is within its noise; the GPU workload's table "
            "(`make gpu-tables` on a GPU, docs/gpu.md) would settle it "
            f"({_link(root, repo / 'results' / 'benchmark-gpu' / 'tables' / 'summary.csv')}).")

    problems_csv = root / "problems.csv"
    friedman_csv = out / "friedman.csv"
    if problems_csv.exists() and problems_csv.stat().st_size > 1:
        problems = pd.read_csv(problems_csv)
        pairs = int(problems["pairs"].max()) if len(problems) else 0
        text = (f"**Not resolved**: per problem, at most {int(problems['separated_by_ttt'].max())} of {pairs} "
                "strategy pairs have time-to-target intervals apart, and at most "
                f"{int(problems['separated_by_value'].max())} best-value intervals" if n_seeds >= MIN_BOOTSTRAP_N else
                f"**Not resolved**: with {n_seeds} seeds a problem there are no per-problem intervals (none under "
                f"{MIN_BOOTSTRAP_N} seeds), so no pair of the {pairs} is told apart on one problem")
        if friedman_csv.exists() and friedman_csv.stat().st_size > 1 and len(pd.read_csv(friedman_csv)):
            test = pd.read_csv(friedman_csv).iloc[0]
            text += (f"; over all (problem, seed) blocks the rank test (Friedman, then Nemenyi) tells "
                     f"{len(str(test['differing_pairs']).split(';')) if test['rejects'] else 0} pairs apart "
                     f"(critical difference {test['critical_difference']:.2f} ranks)")
        sentences.append(text + f"; an order within the same interval is noise ({_link(root, problems_csv)}).")

    return ["## Findings", "",
            "Generated from the scores below (lrsearch/reporting/findings.py); every number links to its table. "
            "Strategies are compared on common random numbers (the same run seeds, the same recorded seeds for the "
            "same trials), so every interval and test here is paired.", "",
            *[f"- {s}" for s in sentences], "",
            f"![rank_stability]({figure.relative_to(root).as_posix()})", ""]
