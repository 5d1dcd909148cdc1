"""Tidy tables from the store, with pandas: trials, runs, anytime, summary.

The math is in small pure functions (`search_time_to_target`, `bootstrap_ci`,
`median_with_failures`), tested on hand-made records.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lrsearch.experiment.store import Store
from lrsearch.training.errors import InputError


def search_time_to_target(train_s: list[float], time_to_target_s: list[float | None]) -> tuple[float | None, int | None]:
    """Training seconds spent, trial after trial in order, until the first trial that reaches the
    target, that trial counted up to the point it reached it; (None, None) when none does.
    Returns (seconds, 1-based index of that trial)."""
    spent = 0.0
    for i, (cost, ttt) in enumerate(zip(train_s, time_to_target_s)):
        if ttt is not None and not (isinstance(ttt, float) and math.isnan(ttt)):
            return spent + ttt, i + 1
        spent += cost
    return None, None


def median_with_failures(values: np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Median where a failure (NaN: target never reached) counts as +inf, i.e. worse than any time."""
    result = np.median(np.where(np.isnan(values), np.inf, values), axis=axis)
    return float(result) if axis is None else result


# A percentile bootstrap interval over fewer values does not hold its level (over 3 seeds a "95%" interval of the
# median is their min-max, which covers the median 75% of the time): under this many, no interval (NaN).
MIN_BOOTSTRAP_N = 10


def bootstrap_ci(values, statistic=median_with_failures, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0, min_n: int = MIN_BOOTSTRAP_N) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over the values (resampled with replacement); (NaN, NaN) for
    fewer than `min_n` values. `statistic(samples, axis=1)` reduces each of the n_boot resamples (rows) at once."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0 or len(values) < min_n:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    stats = statistic(values[rng.integers(0, len(values), (n_boot, len(values)))], axis=1)
    low, high = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2], method="lower")
    return float(low), float(high)


def median_best(best: np.ndarray, n_boot: int = 2000) -> tuple[float, float, float]:
    """The median of runs' best values and its bootstrap interval (low, high), where a run without any value (NaN)
    counts as worse than every value; NaN where the median, or an end of the interval, falls on such runs."""
    worst_first = np.where(np.isnan(best), -np.inf, np.asarray(best, dtype=float))
    low, high = bootstrap_ci(worst_first, statistic=np.median, n_boot=n_boot)
    median = float(np.median(worst_first)) if len(worst_first) else math.nan
    return tuple(math.nan if x == -math.inf else x for x in (median, low, high))


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927; as statsmodels' proportion_confint(method="wilson"))."""
    if n == 0:
        return math.nan, math.nan
    from statistics import NormalDist
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def trials_table(store: Store) -> pd.DataFrame:
    trials = store.trials_frame()
    trials["params"] = trials["params"].map(json.loads)
    return trials


def retarget(trials: pd.DataFrame, curves: pd.DataFrame, target: float, direction: str = "maximize") -> pd.DataFrame:
    """Each training trial's time- and steps-to-target read off its stored curve for `target`: the first
    evaluation whose validation metric (test accuracy without a validation split) reaches it (at or above
    it; at or below it for a minimised metric), as the trainer decides while training. So a changed target
    needs no retraining."""
    train = curves[curves["kind"] == "train"].assign(acc=lambda c: c["val_acc"].fillna(c["test_acc"]))
    reached = train["acc"] <= target if direction == "minimize" else train["acc"] >= target
    hits = train[reached].sort_values("step").groupby("trial_id").first()
    trials = trials.copy()
    is_train = trials["kind"] == "train"
    trials.loc[is_train, "time_to_target_s"] = trials.loc[is_train, "trial_id"].map(hits["train_s"])
    trials.loc[is_train, "steps_to_target"] = trials.loc[is_train, "trial_id"].map(hits["step"])
    return trials


def cost_clock(trials: pd.DataFrame, curves: pd.DataFrame, calibration) -> pd.DataFrame:
    """The trials on the cost clock (experiment/calibration.py): `train_s` and `time_to_target_s` become each trial's
    steps (to the target) x its workload's calibrated seconds per step under its optimizer, plus its evaluations (up
    to the target) x the work its method needs before each one; the wall-clock columns stay as `wall_train_s` and
    `wall_time_to_target_s`. Where the calibration has decisions.csv, each trial also costs its strategy's
    calibrated decision seconds before it (the median at that trial index). Everything read from `train_s`
    downstream (search time-to-target, anytime curves, scores) is then on the cost clock."""
    from lrsearch.training.tasks import TASKS

    trials = trials.copy()
    trials["wall_train_s"], trials["wall_time_to_target_s"] = trials["train_s"], trials["time_to_target_s"]
    evals = curves[curves["kind"] == "train"]
    eval_steps = {tid: g.to_numpy(dtype=float) for tid, g in evals.groupby("trial_id")["step"]}
    rates, decisions = {}, {}  # read once per (task, optimizer) and per (strategy, trial index)
    none = np.zeros(0)
    cost, to_target = [], []
    for t in trials.itertuples():
        params = t.params if isinstance(t.params, dict) else json.loads(t.params)
        if t.task not in TASKS:
            raise InputError(f"the cost clock prices built-in tasks' steps; {t.task!r} is not one (leave out the "
                             "calibration to report wall-clock seconds)")
        key = (t.task, params.get("optimizer") or TASKS[t.task].optimizer)
        if key not in rates:
            rates[key] = calibration.rate(*key)
        rate, pre_eval = rates[key]
        steps = float(t.steps) if t.steps is not None and not pd.isna(t.steps) else 0.0
        mine = eval_steps.get(t.trial_id, none) if t.kind == "train" else none
        # the strategy's calibrated decision seconds before this trial (calibration.py's decisions.csv; 0 without)
        if t.kind == "train" and (t.strategy, int(t.trial_index)) not in decisions:
            decisions[(t.strategy, int(t.trial_index))] = calibration.decision_s(t.strategy, int(t.trial_index)) or 0.0
        decision = decisions[(t.strategy, int(t.trial_index))] if t.kind == "train" else 0.0
        cost.append(decision + steps * rate + len(mine) * pre_eval)
        hit = t.steps_to_target
        reached = hit is not None and not pd.isna(hit)
        to_target.append(decision + float(hit) * rate + int((mine <= hit).sum()) * pre_eval if reached else math.nan)
    trials["train_s"], trials["time_to_target_s"] = cost, to_target
    return trials


def simulated_times(group: pd.DataFrame) -> pd.DataFrame | None:
    """A run's trials on its simulated clock (a table's trials, K workers; runner.py's `_SimulatedRecording`):
    start_s, finish_s and reached_at_s (NaN: never reached the target) per trial, in the group's order; None for
    a run trained for real."""
    extras = [json.loads(e) if isinstance(e, str) else (e or {}) for e in group["extra"]]
    if not extras or any("simulated" not in e for e in extras):
        return None
    return pd.DataFrame([{k: (math.nan if e["simulated"][k] is None else e["simulated"][k])
                          for k in ("start_s", "finish_s", "reached_at_s")} for e in extras], index=group.index)


def runs_table(trials: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (strategy, budget, seed), group in trials.groupby(["strategy", "budget", "seed"], sort=False):
        group = group.sort_values("trial_index")
        candidates = group[group["value"].notna()]  # the store's NaN: a trial without a value (failed, a range test)
        best = candidates.loc[candidates["value"].idxmax()] if len(candidates) else None
        ttt = group["time_to_target_s"].astype(float).where(group["kind"] == "train")
        clock = simulated_times(group)
        if clock is None:  # trials one after another: seconds spent until the first reaches the target
            seconds, index = search_time_to_target(group["train_s"].tolist(),
                                                   [None if math.isnan(v) else v for v in ttt.tolist()])
        else:  # K workers on the simulated clock: the earliest moment any trial reached the target
            reached = clock["reached_at_s"].to_numpy(dtype=float)
            hit = int(np.nanargmin(reached)) if np.isfinite(reached).any() else None
            seconds, index = (None, None) if hit is None else (float(reached[hit]), hit + 1)
        startup = [json.loads(e).get("random_startup") for e in group.loc[group["kind"] == "train", "extra"]]
        flattened = any(json.loads(e).get("flattens_space") for e in group["extra"])
        rows.append({
            "strategy": strategy, "budget": budget, "seed": seed, "run_status": group["run_status"].iloc[0],
            "n_trials": len(group), "n_diverged": int((group["status"] == "diverged").sum()),
            "n_pruned": int((group["status"] == "pruned").sum()), "n_failed": int((group["status"] == "failed").sum()),
            "best_val_acc": float(best["value"]) if best is not None else math.nan,
            "best_lr": float(best["lr"]) if best is not None and best["lr"] is not None else math.nan,
            "test_acc_of_best": float(best["final_test_acc"]) if best is not None and best["final_test_acc"] is not None else math.nan,
            "train_s": float(group["train_s"].sum()), "overhead_s": float(group["overhead_s"].sum()),
            "wall_s": float(group["wall_s"].fillna(0).sum() + group["overhead_s"].sum()),
            "search_time_to_target_s": seconds if seconds is not None else math.nan,
            "trials_to_target": index if index is not None else math.nan,
            "reached_target": seconds is not None,
            # a model-based strategy whose every proposal was a random start-up one: random search in effect
            "random_startup_only": bool(startup) and all(flag is True for flag in startup),
            # a strategy that flattened, fixed or ignored a dimension of the space (see space_notes)
            "flattens_space": flattened,
        })
    return pd.DataFrame(rows)


def anytime_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Best-so-far validation accuracy after each trial, against trials used and training seconds spent. A trial
    without a value (NaN) leaves the best as it was: NaN until the run's first value."""
    frames = []
    for (strategy, budget, seed), group in trials.groupby(["strategy", "budget", "seed"], sort=False):
        group = group.sort_values("trial_index")
        clock = simulated_times(group)
        if clock is not None:  # K workers on a simulated clock: results in the order they finished, at that time
            order = clock["finish_s"].to_numpy().argsort(kind="stable")
            frames.append(pd.DataFrame({
                "strategy": strategy, "budget": budget, "seed": seed, "trials_used": np.arange(1, len(group) + 1),
                "cum_train_s": clock["finish_s"].to_numpy()[order],
                "best_val_acc": np.fmax.accumulate(group["value"].to_numpy(dtype=float)[order])}))
            continue
        frames.append(pd.DataFrame({
            "strategy": strategy, "budget": budget, "seed": seed, "trials_used": np.arange(1, len(group) + 1),
            "cum_train_s": group["train_s"].cumsum().to_numpy(),
            "best_val_acc": np.fmax.accumulate(group["value"].to_numpy(dtype=float))}))  # fmax skips NaN
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summary_table(runs: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    rows = []
    for (strategy, budget), group in runs.groupby(["strategy", "budget"], sort=False):
        times = group["search_time_to_target_s"].to_numpy(dtype=float)
        low, high = bootstrap_ci(times, n_boot=n_boot)
        acc = group["best_val_acc"].to_numpy(dtype=float)
        acc_low, acc_high = bootstrap_ci(acc, statistic=np.median, n_boot=n_boot)
        rows.append({
            "strategy": strategy, "budget": budget, "n_seeds": len(group),
            "median_time_to_target_s": median_with_failures(times), "ttt_ci_low_s": low, "ttt_ci_high_s": high,
            "success_rate": float(group["reached_target"].mean()),
            "median_best_val_acc": float(np.median(acc)), "acc_ci_low": acc_low, "acc_ci_high": acc_high,
            "median_test_acc_of_best": float(group["test_acc_of_best"].median()),
            "median_train_s": float(group["train_s"].median()), "median_overhead_s": float(group["overhead_s"].median()),
            "runs_random_startup_only": int(group["random_startup_only"].sum()),
            "runs_flattening_space": int(group["flattens_space"].sum()) if "flattens_space" in group else 0,
        })
    summary = pd.DataFrame(rows)
    if len(summary):
        # rank within a budget: fastest to the target first, then by accuracy
        summary["rank"] = (summary.sort_values(["median_time_to_target_s", "median_best_val_acc"], ascending=[True, False])
                           .groupby("budget").cumcount() + 1)
        summary = summary.sort_values(["budget", "rank"]).reset_index(drop=True)
    return summary


@dataclass
class Results:
    """A results folder's store as DataFrames (`load_results`)."""
    trials: pd.DataFrame  # one row per trial; its params as `params_<name>` columns (nested: params_schedule.max_lr)
    curves: pd.DataFrame  # one row per evaluation of a trial (step, lr, train_loss, val_acc, test_acc, train_s, ...)
    runs: pd.DataFrame  # one row per (strategy, budget, seed) run: status, environment, definition


def load_results(results_dir: str | Path) -> Results:
    """The trials, curves and runs of a results folder, for a notebook:

        results = lrsearch.load_results("runs/benchmark-smoke")
        results.trials.groupby("strategy")["value"].max()

    A folder without a store is an error (StoreError naming the path), never an empty new database."""
    store = Store(Path(results_dir) / "results.sqlite", create=False)
    try:
        trials, curves, runs = store.trials_frame(), store.curves_frame(), store.runs_frame()
    finally:
        store.close()
    params = [json.loads(p) for p in trials["params"]]
    flat = pd.json_normalize(params).add_prefix("params_") if params else pd.DataFrame(index=trials.index)
    flat.index = trials.index
    trials = pd.concat([trials.drop(columns=["params"]), flat], axis=1)
    trials["extra"] = trials["extra"].map(json.loads)
    return Results(trials, curves, runs)


def space_notes_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Each strategy's notes on how it covered the space (a conditional space flattened, a dimension left at
    the workload's default, the grid's shape), one row per distinct (strategy, budget, note)."""
    rows = [{"strategy": t.strategy, "budget": t.budget, "note": note, "flattens_space": bool(extra.get("flattens_space"))}
            for t in trials.itertuples() for extra in [json.loads(t.extra)] for note in extra.get("space_notes", [])]
    return pd.DataFrame(rows, columns=["strategy", "budget", "note", "flattens_space"]).drop_duplicates()


def as_metric(tables: dict[str, pd.DataFrame]) -> None:
    """A minimised metric's tables in the metric's own sign: a search maximises `value` = -metric, so the
    best-so-far columns are negated back (and a confidence interval's ends swap)."""
    for name, column in (("runs", "best_val_acc"), ("anytime", "best_val_acc"), ("summary", "median_best_val_acc"),
                         ("summary", "median_test_acc_of_best")):
        if len(tables[name]) and column in tables[name]:
            tables[name][column] = -tables[name][column]
    summary = tables["summary"]
    if len(summary):
        summary["acc_ci_low"], summary["acc_ci_high"] = -summary["acc_ci_high"], -summary["acc_ci_low"]


def build_tables(results_dir: str | Path, target: float | None = None, direction: str = "maximize",
                 calibration=None) -> dict[str, pd.DataFrame]:
    """Read the store, write every table as CSV and Parquet under results_dir/tables/, return them. With
    `target`, time-to-target is read off the stored curves for it (see `retarget`). For a minimised metric
    (`direction`), the best-value columns hold the metric itself, the lowest found (see `as_metric`). With a
    `calibration` (experiment.calibration.Calibration), times are on the cost clock (`cost_clock`)."""
    results_dir = Path(results_dir)
    store = Store(results_dir / "results.sqlite", create=False)
    try:
        trials = trials_table(store)
        curves = store.curves_frame()
        runs_meta = store.runs_frame()
    finally:
        store.close()
    if target is not None and len(trials):
        trials = retarget(trials, curves, target, direction)
    if calibration is not None and len(trials):
        trials = cost_clock(trials, curves, calibration)
    runs = runs_table(trials) if len(trials) else pd.DataFrame()
    tables = {"trials": trials, "runs": runs, "anytime": anytime_table(trials) if len(trials) else pd.DataFrame(),
              "summary": summary_table(runs) if len(runs) else pd.DataFrame(), "curves": curves, "runs_meta": runs_meta,
              "space_notes": space_notes_table(trials) if len(trials) else pd.DataFrame()}
    if direction == "minimize":
        as_metric(tables)
    out = results_dir / "tables"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("trials", "runs", "anytime", "summary", "curves", "space_notes"):
        frame = tables[name].copy()
        if "params" in frame:
            frame["params"] = frame["params"].map(lambda p: json.dumps(p, sort_keys=True))
        frame.to_csv(out / f"{name}.csv", index=False)
        frame.to_parquet(out / f"{name}.parquet", index=False)
    return tables
