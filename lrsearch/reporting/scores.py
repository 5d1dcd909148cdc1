"""Scores across the problems of a suite, computed the way AlgoPerf and CARP-S compute theirs.

Every function reads one tidy table, the *budget frame*: one row per (problem, strategy, seed, budget) with
`best_value` (the best validation value found within the first `budget` trials, in the search's maximised
sign: the accuracy, or the negated metric of a minimised one), `search_time_to_target_s`, `trials_to_target`
and `reached_target` (NaN / False when the target was not reached within those trials). `suite_frame` builds
it from a real suite's problem tables, `replay_frame` from a replayed suite's; `problem_anchors` gives each
problem's best value and the anchor of its normalised regret.

1. Performance profiles and score B (AlgoPerf, `scoring/performance_profile.py` and its rules):
   - a study is one seed of ours; its time is the search time-to-target of that seed's run (training seconds,
     evaluation excluded, until the first trial reaches the target, counted up to the evaluation where it got
     there; `lrsearch.reporting.tables.search_time_to_target`), +inf when no trial reached it. AlgoPerf's
     external-tuning study time is its fastest trial's own time (its trials are thought of as parallel); ours
     is the sequential search's, since the search's earlier trials are what a strategy costs;
   - a problem's time is `np.median` over its studies with the misses as +inf (AlgoPerf's rule, as
     `median_with_failures`): finite when more than half of the seeds reached the target (with an even count,
     when both middle values are finite), +inf otherwise;
   - r = time / the smallest time any strategy has on that problem; r > r_max (4, AlgoPerf's `max_tau`, there
     applied as `time > 4 x best`) counts as +inf; a problem no strategy solves is +inf (there NaN) for all;
   - rho(tau) = the share of the problems with r <= tau, for tau in [1, r_max], every problem in the
     denominator (AlgoPerf divides by the number of workloads);
   - B = 1 / (r_max - 1) x integral of rho over [1, r_max]. rho is a step function, so the integral is exact:
     B = mean over problems of (r_max - r) / (r_max - 1) for r <= r_max, else 0 (AlgoPerf's
     `compute_leaderboard_score(normalize=True)` takes the trapezoid rule on a grid of taus instead, which
     tends to this value as the grid refines). B = 1: the fastest on every problem.
   The same profile on trials-to-target (the 1-based index of the trial that first reached it) is a second one.
2. Normalised regret (CARP-S normalises each run per task between the best and the worst over all runs): per
   (problem, strategy, seed) at the full budget, (best_any - value) / (best_any - anchor), where best_any is
   the best value any trial reached on the problem (any strategy, seed, budget), and the anchor is the median
   value of one trial of the anchor strategy on that problem (the median over every trial it trained there, a
   diverged one at 0 as a search sees it, at -inf for a minimised metric: that strategy at budget 1). The
   anchor strategy is `DEFAULT_ANCHOR`, random search, unless the caller names another (`lrsearch report
   --anchor`); a named one that trained nothing on a problem is refused. The issue's anchor, the task's
   default-LR accuracy, is not in the stores (a suite trains only what its strategies propose; the sweep
   tables hold the default LR only when it falls on their grid) and a user's workload has no default LR.
   Without random search among the strategies, the default anchor is the median of all trained trials there. The
   regret is clipped to [0, 1]: 0 never binds (no run beats best_any), 1 does for a run no better than the
   median random trial (`regret_raw` keeps the unclipped value, `clipped` flags it); a problem whose anchor
   is its best value has no scale and is left out.
   Aggregate: the interquartile mean (IQM, `scipy.stats.trim_mean(..., 0.25)` over every (problem, seed)
   score, as rliable's `aggregate_iqm`) per strategy, with a percentile 95% interval from 5,000 stratified
   bootstrap repetitions (the seeds resampled with replacement within each problem, as rliable's
   `StratifiedBootstrap`). Own code, not rliable: `rliable==1.2.0` installs but does not import here, its
   pin `arch<8.0` (arch 7.2.0 chosen) calls pandas' `deprecate_kwarg` in a form pandas 3 removed
   (TypeError at `import arch`), and arch 8 is outside rliable's pin.
3. Ranks (CARP-S `carps/analysis/`): for each budget, strategies ranked per (problem, seed) block by
   best_value (1 = best; ties share their average rank), the mean rank per strategy and budget. A strategy
   that stops early (a range test trains 2 trials: its test, then one run; a self-tuning optimizer 1) keeps
   its best-so-far at every larger budget. At the full budget: the Friedman test, then the Nemenyi post-hoc
   test with its critical difference (alpha 0.05), through `autorank` (Demsar 2006; force_mode
   "nonparametric", as CARP-S's `cd_evaluation` calls autorank's Friedman-Nemenyi); a pair differs when the
   Friedman test rejects and their mean ranks are more than CD apart. The blocks are (problem, seed);
   CARP-S averages the seeds per task first, the second row of `friedman_table` (fewer blocks, less power).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import trim_mean

from lrsearch.reporting.tables import MIN_BOOTSTRAP_N
from lrsearch.search.strategies import USABLE
from lrsearch.training.errors import InputError

R_MAX = 4.0  # AlgoPerf's max_tau: slower than 4x the fastest counts as not solved
N_BOOT = 5000  # stratified bootstrap repetitions of the IQM
ALPHA = 0.05  # Friedman and Nemenyi
LEVEL = 0.95  # bootstrap interval
# Whose median trial is a problem's regret anchor: random search at budget 1, the search any other should beat.
DEFAULT_ANCHOR = "random"

FRAME_COLUMNS = ["problem", "strategy", "seed", "budget", "best_value", "search_time_to_target_s",
                 "trials_to_target", "reached_target"]


# ---------------------------------------------------------------- the budget frame, from the problems' tables


def _table(folder: Path, name: str) -> pd.DataFrame:
    path = folder / "tables" / f"{name}.parquet"
    return pd.read_parquet(path) if path.exists() else pd.read_csv(folder / "tables" / f"{name}.csv")


def _direction(folder: Path) -> str:
    path = folder / "experiment.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    return (config.get("workload") or config.get("task") or {}).get("direction") or "maximize"


def _values(trials: pd.DataFrame, direction: str) -> np.ndarray:
    """Each trial's value as a search sees it, maximised: a diverged, pruned-early or failed trial, or a range
    test (no candidate), at the floor (0 for an accuracy; -inf for a minimised metric, which has no floor)."""
    usable = trials["status"].isin(USABLE).to_numpy()
    if "kind" in trials:
        usable = usable & (trials["kind"] == "train").to_numpy()
    floor = -math.inf if direction == "minimize" else 0.0
    return np.where(usable, trials["value"].to_numpy(dtype=float), floor)


def suite_frame(folders: list[Path]) -> pd.DataFrame:
    """The budget frame of a real suite, from each problem's `runs` and `trials` tables: for each complete run
    at a strategy's largest budget, every budget b = 1 .. the problem's largest, read as its first b trials (a
    run with fewer trials keeps its last best; a range test's own trial counts as one, at the floor)."""
    rows = []
    for folder in map(Path, folders):
        direction = _direction(folder)
        runs, trials = _table(folder, "runs"), _table(folder, "trials")
        runs = runs[runs["run_status"] == "complete"] if len(runs) else runs
        if not len(runs):
            continue
        runs = runs[runs["budget"] == runs.groupby("strategy")["budget"].transform("max")]
        full = int(runs["budget"].max())
        trials = trials.sort_values("trial_index")
        trials = trials.assign(_v=_values(trials, direction))
        curves = {key: np.maximum.accumulate(g["_v"].to_numpy())
                  for key, g in trials.groupby(["strategy", "budget", "seed"])}
        for run in runs.itertuples(index=False):
            best = curves.get((run.strategy, run.budget, run.seed), np.zeros(0))
            for b in range(1, full + 1):
                reached = bool(run.reached_target) and run.trials_to_target <= b
                rows.append({"problem": folder.name, "strategy": run.strategy, "seed": int(run.seed), "budget": b,
                             "best_value": float(best[min(b, len(best)) - 1]) if len(best) else -math.inf,
                             "search_time_to_target_s": float(run.search_time_to_target_s) if reached else math.nan,
                             "trials_to_target": float(run.trials_to_target) if reached else math.nan,
                             "reached_target": reached})
    return _self_tuning_in_every_space(pd.DataFrame(rows, columns=FRAME_COLUMNS), folders)


def _workload_of(folder: Path) -> str:
    path = folder / "experiment.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    return (config.get("workload") or {}).get("name") or (config.get("task") or {}).get("name") or folder.name


def _self_tuning_in_every_space(frame: pd.DataFrame, folders: list[Path]) -> pd.DataFrame:
    """A self-tuning contender searches nothing, so a suite runs it in each workload's first space only
    (experiment/suite.py): its runs there stand for every space of that workload, and are copied to the
    workload's other problems here, so that every strategy is scored on every problem."""
    from lrsearch.search.strategies import is_self_tuning

    workload = {Path(f).name: _workload_of(Path(f)) for f in folders}
    copies = []
    for strategy in [s for s in frame["strategy"].unique() if is_self_tuning(s)]:
        ran = frame[frame["strategy"] == strategy]
        for problem, name in workload.items():
            if problem in set(ran["problem"]):
                continue
            source = [p for p in ran["problem"].unique() if workload.get(p) == name]
            if source:
                copies.append(ran[ran["problem"] == source[0]].assign(problem=problem, copied=True))
    frame = frame.assign(copied=False)
    return pd.concat([frame, *copies], ignore_index=True) if copies else frame


ANCHOR_COLUMNS = ["problem", "best_any", "anchor", "anchor_trials", "anchor_source"]


def problem_anchors(folders: list[Path], anchor: str = DEFAULT_ANCHOR) -> pd.DataFrame:
    """Per problem: `best_any` (the best value any trained trial reached there) and `anchor` (the median value
    of a trial of strategy `anchor`, a diverged or failed one at the floor, `_values`), both in the search's
    maximised sign, from the problem's `trials` table (real or replayed). Without random search, the default
    anchor is every trained trial's median; an `anchor` named otherwise that trained nothing on a problem
    stops with an InputError naming it and the strategies there. A replay's per-trial table is not committed
    (large), so without it the folder's `tables/anchors.csv`, which the replay wrote from it (`write_anchors`,
    the default anchor), gives the same row."""
    rows = []
    for folder in map(Path, folders):
        if not has_trials(folder) and (folder / "tables" / "anchors.csv").exists():
            if anchor != DEFAULT_ANCHOR:
                raise InputError(f"anchor {anchor!r}: {folder / 'tables' / 'anchors.csv'} holds the "
                                 f"{DEFAULT_ANCHOR!r} anchor only, and the folder's trials table is not here; "
                                 f"anchor on {DEFAULT_ANCHOR!r}, or replay the problem again to rebuild its trials")
            saved = pd.read_csv(folder / "tables" / "anchors.csv")
            rows.append(saved.iloc[0][ANCHOR_COLUMNS].to_dict() | {"problem": folder.name})
            continue
        trials = _table(folder, "trials")
        if "kind" in trials:
            trials = trials[trials["kind"] == "train"]
        value = _values(trials, _direction(folder))
        mine = (trials["strategy"] == anchor).to_numpy()
        if not mine.any() and anchor != DEFAULT_ANCHOR:
            present = ", ".join(dict.fromkeys(trials["strategy"])) or "none"
            raise InputError(f"anchor {anchor!r}: not among the strategies of problem {folder.name} ({present}); "
                             f"name one of them, or leave the default, {DEFAULT_ANCHOR!r}")
        pool = value[mine] if mine.any() else value
        rows.append({"problem": folder.name, "best_any": float(value.max()) if len(value) else math.nan,
                     "anchor": float(np.median(pool)) if len(pool) else math.nan,
                     "anchor_trials": int(len(pool)),
                     "anchor_source": f"{anchor_name(anchor)} trials" if mine.any() else "all trained trials"})
    return pd.DataFrame(rows, columns=ANCHOR_COLUMNS)


def anchor_name(anchor: str) -> str:
    """How tables and reports name the anchor strategy's trials: random search's "random-search", another's
    its own name ("one grid trial")."""
    return "random-search" if anchor == DEFAULT_ANCHOR else anchor


def has_trials(folder: Path) -> bool:
    return any((Path(folder) / "tables" / f"trials.{ext}").exists() for ext in ("parquet", "csv"))


def write_anchors(folder: Path) -> Path:
    """The folder's anchors row (`problem_anchors`, from its trials table) as `tables/anchors.csv`: small, so it
    is committed where the trials table is not, and the scores can be rebuilt from a fresh clone."""
    path = Path(folder) / "tables" / "anchors.csv"
    problem_anchors([folder]).to_csv(path, index=False)
    return path


def at_budget(frame: pd.DataFrame, budget: int | None = None) -> pd.DataFrame:
    """The frame's rows at `budget` (default: the largest in it)."""
    budget = int(frame["budget"].max()) if budget is None else budget
    return frame[frame["budget"] == budget]


# ---------------------------------------------------------------- 1. performance profiles and score B (AlgoPerf)


def problem_times(runs: pd.DataFrame, column: str = "search_time_to_target_s") -> pd.DataFrame:
    """Per (problem, strategy): the median over seeds of `column`, a seed that missed the target as +inf
    (AlgoPerf: np.median over the studies' times, inf included). A strategy absent from a problem is +inf."""
    values = runs[column].astype(float).where(runs["reached_target"].astype(bool), math.inf).fillna(math.inf)
    times = (runs.assign(_t=values).groupby(["problem", "strategy"])
             .agg(n_seeds=("_t", "size"), n_reached=("reached_target", "sum"), time=("_t", lambda t: float(np.median(t))))
             .reset_index())
    grid = pd.MultiIndex.from_product([runs["problem"].unique(), runs["strategy"].unique()],
                                      names=["problem", "strategy"])
    times = times.set_index(["problem", "strategy"]).reindex(grid).reset_index()
    times["time"] = times["time"].fillna(math.inf)
    times[["n_seeds", "n_reached"]] = times[["n_seeds", "n_reached"]].fillna(0).astype(int)
    return times


def performance_ratios(times: pd.DataFrame, r_max: float = R_MAX) -> pd.DataFrame:
    """`problem_times` with `best_time` (the problem's smallest over strategies) and `ratio` = time / best_time,
    +inf beyond r_max, where the strategy missed, or where no strategy reached the target."""
    out = times.copy()
    best = out.groupby("problem")["time"].transform("min")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(best == 0, np.where(out["time"] == 0, 1.0, math.inf), out["time"] / best)
    ratio = np.where(np.isfinite(ratio) & (ratio <= r_max), ratio, math.inf)
    return out.assign(best_time=best, ratio=ratio)


def performance_profile(ratios: pd.DataFrame, r_max: float = R_MAX) -> pd.DataFrame:
    """rho(tau) per strategy at every tau where it steps (and at 1 and r_max): the share of problems with
    ratio <= tau; between two rows rho holds the earlier row's value (draw with steps-post)."""
    n_problems = ratios["problem"].nunique()
    rows = []
    for strategy, g in ratios.groupby("strategy", sort=False):
        r = g["ratio"].to_numpy(dtype=float)
        taus = np.unique(np.concatenate([[1.0, r_max], r[np.isfinite(r) & (r >= 1.0) & (r <= r_max)]]))
        rows += [{"strategy": strategy, "tau": float(t), "rho": float((r <= t).sum() / n_problems)} for t in taus]
    return pd.DataFrame(rows, columns=["strategy", "tau", "rho"])


def profile_score(ratios: pd.DataFrame, r_max: float = R_MAX) -> pd.DataFrame:
    """B per strategy: 1 / (r_max - 1) x the exact integral of its rho over [1, r_max] = the mean over problems
    of (r_max - ratio) / (r_max - 1), 0 for a ratio beyond r_max; with the problems it solves within r_max."""
    rows = []
    for strategy, g in ratios.groupby("strategy", sort=False):
        r = g["ratio"].to_numpy(dtype=float)
        within = np.isfinite(r) & (r <= r_max)
        credit = np.where(within, (r_max - np.where(within, r, r_max)) / (r_max - 1.0), 0.0)
        rows.append({"strategy": strategy, "score_B": float(credit.mean()) if len(r) else math.nan,
                     "problems_within_r_max": int(within.sum()), "problems_fastest": int((r == 1.0).sum()),
                     "problems": int(len(r))})
    return pd.DataFrame(rows).sort_values(["score_B", "strategy"], ascending=[False, True]).reset_index(drop=True)


# ---------------------------------------------------------------- 2. normalised regret and its IQM


def normalised_regret(runs: pd.DataFrame, anchors: pd.DataFrame) -> pd.DataFrame:
    """Per run: regret_raw = (best_any - best_value) / (best_any - anchor), and `regret` clipped to [0, 1]; a
    problem whose scale best_any - anchor is not positive is left out."""
    out = runs.merge(anchors[["problem", "best_any", "anchor"]], on="problem", how="inner")
    scale = out["best_any"] - out["anchor"]
    out = out[scale > 0].copy()
    out["regret_raw"] = (out["best_any"] - out["best_value"]) / (out["best_any"] - out["anchor"])
    out["regret"] = out["regret_raw"].clip(0.0, 1.0)
    out["clipped"] = out["regret"] != out["regret_raw"]
    return out[["problem", "strategy", "seed", "budget", "best_value", "best_any", "anchor", "regret_raw", "regret",
                "clipped"]].reset_index(drop=True)


def iqm(values, axis=None):
    """Interquartile mean: the mean of the middle half (rliable's aggregate_iqm: trim_mean, 25% off each end)."""
    return trim_mean(values, proportiontocut=0.25, axis=axis)


def stratified_bootstrap_iqm(values: np.ndarray, strata: np.ndarray, n_boot: int = N_BOOT, level: float = LEVEL,
                             seed: int = 0) -> tuple[float, float, float]:
    """IQM of the values and its percentile interval: each repetition resamples, with replacement, the values
    within each stratum (a problem's seeds), as many as it holds, and takes the IQM of them all. No interval (NaN)
    where a stratum holds fewer than MIN_BOOTSTRAP_N values (tables.py)."""
    values, strata = np.asarray(values, dtype=float), np.asarray(strata)
    if not len(values):
        return math.nan, math.nan, math.nan
    if pd.Series(strata).value_counts().min() < MIN_BOOTSTRAP_N:
        return float(iqm(values)), math.nan, math.nan
    rng = np.random.default_rng(seed)
    columns = []
    for stratum in pd.unique(strata):
        idx = np.flatnonzero(strata == stratum)
        columns.append(idx[rng.integers(0, len(idx), (n_boot, len(idx)))])
    stats = iqm(values[np.concatenate(columns, axis=1)], axis=1)
    low, high = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(iqm(values)), float(low), float(high)


def regret_iqm(regret: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Per strategy over every (problem, seed): the IQM of the clipped regret with its stratified bootstrap
    95% interval, the mean and median for comparison, and how many runs the clip touched."""
    rows = []
    for strategy, g in regret.groupby("strategy", sort=False):
        value, low, high = stratified_bootstrap_iqm(g["regret"].to_numpy(), g["problem"].to_numpy(), n_boot, seed=seed)
        rows.append({"strategy": strategy, "iqm_regret": value, "ci_low": low, "ci_high": high,
                     "mean_regret": float(g["regret"].mean()), "median_regret": float(g["regret"].median()),
                     "runs": len(g), "problems": g["problem"].nunique(), "clipped_runs": int(g["clipped"].sum())})
    columns = ["strategy", "iqm_regret", "ci_low", "ci_high", "mean_regret", "median_regret", "runs", "problems",
               "clipped_runs"]
    return pd.DataFrame(rows, columns=columns).sort_values(["iqm_regret", "strategy"]).reset_index(drop=True)


# ---------------------------------------------------------------- 3. ranks over budget, Friedman and Nemenyi


def complete_blocks(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows of the blocks (`keys`) in which every strategy of the frame has a value."""
    n = runs["strategy"].nunique()
    return runs[runs.groupby(keys)["strategy"].transform("nunique") == n]


def average_ranks(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (strategy, budget): the mean over (problem, seed) blocks of the strategy's rank by best_value within
    the block (1 = best, ties averaged), over the blocks where every strategy has a value."""
    blocks = ["problem", "seed", "budget"]
    data = complete_blocks(frame, blocks).copy()
    data["rank"] = data.groupby(blocks)["best_value"].rank(ascending=False, method="average")
    return (data.groupby(["strategy", "budget"])
            .agg(mean_rank=("rank", "mean"), blocks=("rank", "size")).reset_index()
            .sort_values(["budget", "mean_rank"]).reset_index(drop=True))


@dataclass
class RankTest:
    """The Friedman test over blocks and, where it rejects, Nemenyi's critical difference."""
    blocks: str  # what a block is
    n_blocks: int
    strategies: list[str]
    mean_ranks: pd.Series  # per strategy, ascending (1 = best)
    pvalue: float
    cd: float
    alpha: float
    omnibus: str
    posthoc: str
    result: object = field(default=None, repr=False)  # autorank's RankResult, for its CD diagram

    @property
    def significant(self) -> bool:
        return bool(self.pvalue < self.alpha)

    def differing_pairs(self) -> list[tuple[str, str]]:
        """(better, worse) pairs whose mean ranks are more than CD apart, none unless the Friedman test rejects."""
        r = self.mean_ranks
        if self.significant and len(r) == 2:  # two strategies: autorank's Wilcoxon test decides alone
            return [(r.index[0], r.index[1])]
        if not self.significant or not math.isfinite(self.cd):
            return []
        return [(a, b) for i, a in enumerate(r.index) for b in r.index[i + 1:] if r[b] - r[a] > self.cd]

    def groups(self) -> list[list[str]]:
        """Maximal runs of strategies (in rank order) that no test tells apart: all of them when it does not reject."""
        names, ranks = list(self.mean_ranks.index), self.mean_ranks.to_numpy()
        if not self.significant:
            return [names]
        if not math.isfinite(self.cd):
            return [[n] for n in names] if len(names) == 2 else [names]
        spans = []
        for i in range(len(names)):
            j = max(k for k in range(i, len(names)) if ranks[k] - ranks[i] <= self.cd)
            if not spans or j > spans[-1][1]:
                spans.append((i, j))
        return [names[i:j + 1] for i, j in spans]


def friedman_nemenyi(runs: pd.DataFrame, alpha: float = ALPHA, seed_mean: bool = False) -> RankTest | None:
    """Friedman then Nemenyi (autorank, force_mode "nonparametric", higher best_value better) over the complete
    (problem, seed) blocks of the frame's rows (one budget), or over problems with each strategy's mean over
    seeds (`seed_mean`, CARP-S's blocks); with two strategies autorank runs Wilcoxon's signed-rank test instead
    (no CD). None with fewer than 5 blocks or 2 strategies (autorank's minimum)."""
    from autorank import autorank

    if seed_mean:
        data = runs.groupby(["problem", "strategy"])["best_value"].mean().unstack("strategy").dropna()
        what = "problem (each strategy's mean over seeds)"
    else:
        data = runs.pivot_table(index=["problem", "seed"], columns="strategy", values="best_value").dropna()
        what = "(problem, seed)"
    if len(data) < 5 or data.shape[1] < 2:
        return None
    data = data.reset_index(drop=True)
    data.columns = list(data.columns)
    if (data.nunique(axis=1) <= 1).all():  # every block a tie: no test can tell them apart (Friedman's statistic is 0/0)
        ranks = pd.Series((data.shape[1] + 1) / 2, index=data.columns).sort_index()
        return RankTest(what, len(data), list(data.columns), ranks, 1.0, math.nan, alpha, "friedman", "nemenyi")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # normality checks autorank runs (and ignores here) on near-constant columns
        result = autorank(data, alpha=alpha, verbose=False, order="descending", approach="frequentist",
                          force_mode="nonparametric")
    ranks = result.rankdf["meanrank"].astype(float).sort_values()
    pvalue = float(result.pvalue) if result.pvalue is not None and math.isfinite(result.pvalue) else 1.0
    return RankTest(what, len(data), list(data.columns), ranks, pvalue,
                    float(result.cd) if result.cd is not None else math.nan, alpha, result.omnibus, result.posthoc,
                    result)


def friedman_table(tests: list[RankTest]) -> pd.DataFrame:
    """One row per test: blocks, p-value, CD, whether it rejects, the pairs that differ and the groups."""
    return pd.DataFrame([{"blocks": t.blocks, "n_blocks": t.n_blocks, "strategies": len(t.strategies),
                          "omnibus": t.omnibus, "posthoc": t.posthoc, "alpha": t.alpha, "pvalue": t.pvalue,
                          "critical_difference": t.cd, "rejects": t.significant,
                          "differing_pairs": "; ".join(f"{a} > {b}" for a, b in t.differing_pairs()),
                          "groups": " | ".join(", ".join(g) for g in t.groups())} for t in tests])


# ---------------------------------------------------------------- all of them


def compute_scores(frame: pd.DataFrame, anchors: pd.DataFrame, budget: int | None = None, r_max: float = R_MAX,
                   n_boot: int = N_BOOT, alpha: float = ALPHA) -> dict:
    """Every score of a budget frame at `budget` (default its largest; the ranks at every budget): tables
    `times` (per problem and strategy, both profiles' medians and ratios), `profile` (rho's steps, by time and
    by trials), `score` (B by time and by trials, the IQM of regret, the mean rank), `regret` (per run),
    `ranks` (per strategy and budget), `friedman`; and `rank_test` (the main test, for its CD diagram)."""
    budget = int(frame["budget"].max()) if budget is None else int(budget)
    runs = at_budget(frame, budget)
    tables: dict = {}
    times, profiles, scores = [], [], []
    for metric, column in (("time", "search_time_to_target_s"), ("trials", "trials_to_target")):
        ratios = performance_ratios(problem_times(runs, column), r_max)
        times.append(ratios.assign(metric=metric))
        profiles.append(performance_profile(ratios, r_max).assign(metric=metric))
        scores.append(profile_score(ratios, r_max).set_index("strategy").add_suffix(f"_{metric}"))
    tables["times"] = pd.concat(times, ignore_index=True)
    tables["profile"] = pd.concat(profiles, ignore_index=True)
    regret = normalised_regret(runs, anchors)
    iqm_table = regret_iqm(regret, n_boot).set_index("strategy")
    ranks = average_ranks(frame)
    final_ranks = ranks[ranks["budget"] == budget].set_index("strategy")["mean_rank"]
    score = pd.concat(scores, axis=1).join(iqm_table[["iqm_regret", "ci_low", "ci_high", "clipped_runs"]])
    score = score.join(final_ranks.rename("mean_rank")).reset_index()
    score = score.rename(columns={"ci_low": "iqm_ci_low", "ci_high": "iqm_ci_high"})
    tables["score"] = score.sort_values(["score_B_time", "mean_rank"], ascending=[False, True]).reset_index(drop=True)
    tables["regret"] = regret
    tables["regret_iqm"] = iqm_table.reset_index()
    tables["ranks"] = ranks
    # the rank tests count independent blocks only: a self-tuning contender's runs copied into its workload's other
    # spaces are left out, so those spaces' blocks (lacking the contender) drop out of a test that includes it
    independent = runs[~runs["copied"]] if "copied" in runs else runs
    tests = [t for t in (friedman_nemenyi(independent, alpha), friedman_nemenyi(independent, alpha, seed_mean=True))
             if t]
    tables["friedman"] = friedman_table(tests)
    tables["rank_test"] = tests[0] if tests and "seed" in tests[0].blocks else None
    tables["budget"] = budget
    tables["n_seeds"] = int(runs["seed"].nunique())
    return tables


def compare_scores(real: dict, replay: dict) -> pd.DataFrame:
    """Per strategy both score tables have: B (by time and by trials) and the IQM of regret, real and
    replayed, and their gap (replay - real)."""
    columns = ["score_B_time", "score_B_trials", "iqm_regret", "mean_rank"]
    both = real["score"][["strategy", *columns]].merge(replay["score"][["strategy", *columns]], on="strategy",
                                                       suffixes=("_real", "_replay"))
    for c in columns:
        both[f"{c}_gap"] = both[f"{c}_replay"] - both[f"{c}_real"]
    return both[["strategy"] + [f"{c}_{s}" for c in columns for s in ("real", "replay", "gap")]]
