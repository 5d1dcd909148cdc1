"""K workers on the simulated clock compared: the same search on a table run once per K (`lrsearch replay CONFIG
--workers 1 2 4 8`, each K into <results>/k<K>/ through the one runner), then per run, per strategy and K, with
the speed-up over one worker (`write_parallel_report`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from lrsearch.reporting.tables import bootstrap_ci, median_with_failures
from lrsearch.training.errors import InputError


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


def simulated_trials(folder: Path) -> pd.DataFrame:
    """A simulated run's trials (runner.py's `_SimulatedRecording`) with their place on the clock: strategy,
    workers (the run's K), seed, reached_at_s, finish_s, train_s (the trial's price), overhead_s (its charged
    decision seconds) and ran_sequentially (a strategy that cannot propose while trials run: one at a time)."""
    from lrsearch.experiment.store import Store

    config = json.loads((Path(folder) / "experiment.json").read_text())
    k = int((config.get("executor") or {}).get("workers") or 1)
    store = Store(Path(folder) / "results.sqlite", create=False)
    try:
        trials = store.trials_frame()
    finally:
        store.close()
    trials = trials[trials["kind"] == "train"]
    # one run per (strategy, seed): a strategy sized to its budget (grid) also ran at each smaller budget, and
    # K is compared at its largest (a budget-unaware one ran there only: runner.py's `run_budgets`)
    trials = trials[trials["budget"] == trials.groupby("strategy")["budget"].transform("max")]
    rows = []
    for t in trials.itertuples():
        sim = json.loads(t.extra).get("simulated") if isinstance(t.extra, str) else (t.extra or {}).get("simulated")
        if sim is None:
            raise InputError(f"{folder}: trial {t.trial_id} was not run on the simulated clock; compare runs of "
                             "`lrsearch replay CONFIG --workers 1 2 4 8`")
        rows.append({"strategy": t.strategy, "workers": k, "seed": int(t.seed), "trial_index": int(t.trial_index),
                     "reached_at_s": math.nan if sim["reached_at_s"] is None else float(sim["reached_at_s"]),
                     "finish_s": float(sim["finish_s"]), "train_s": float(sim["finish_s"] - sim["start_s"]),
                     "overhead_s": float(sim.get("decision_s") or 0.0),
                     "ran_sequentially": k > 1 and int(sim.get("workers") or 1) == 1})
    return pd.DataFrame(rows)


def write_parallel_report(folders: list[Path], root: Path) -> Path:
    """<root>/REPORT.md, tables/parallel_{runs,summary}.csv and figures/parallel_speedup.png from the K folders
    (one simulated search each, K = 1 among them)."""
    from lrsearch.experiment.provenance import as_markdown, environment
    from lrsearch.reporting.figures import parallel_speedup_figure
    from lrsearch.reporting.report import _fmt

    root = Path(root)
    trials = pd.concat([simulated_trials(f) for f in folders], ignore_index=True)
    runs = parallel_runs(trials)
    summary = parallel_summary(runs)
    for sub in ("tables", "figures"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    runs.to_csv(root / "tables" / "parallel_runs.csv", index=False)
    summary.to_csv(root / "tables" / "parallel_summary.csv", index=False)
    figure = parallel_speedup_figure(summary, root / "figures" / "parallel_speedup.png")
    config = json.loads((Path(folders[0]) / "experiment.json").read_text())
    sequential = sorted(summary.loc[summary["ran_sequentially"], "strategy"].unique())
    workers = ", ".join(map(str, sorted(summary["workers"].unique())))
    columns = ["strategy", "workers", "n_seeds", "success_rate", "median_wall_to_target_s", "wtt_ci_low_s",
               "wtt_ci_high_s", "speedup", "median_makespan_s", "makespan_speedup", "median_decision_s"]
    lines = [f"# {config['name']}: K workers on the simulated clock", "", config.get("description") or "", "",
             f"The same search on the table `{config.get('table')}` with K = {workers} trials at once, each K a run "
             "of `lrsearch replay` (the one runner, the simulated executor) in its own folder: "
             + ", ".join(f"[{Path(f).name}]({Path(f).relative_to(root).as_posix()}/REPORT.md)" for f in folders)
             + ". A trial's price is its recorded steps x the calibrated seconds per step; a new trial is proposed "
             "whenever one finishes, each strategy's calibrated decision seconds charged before it, as Syne Tune's "
             "simulated backend does. While trials run, Optuna's TPE proposes with the constant liar, NNI's TPE with "
             "its own (the best value so far)."
             + (f" {', '.join(sequential)} cannot propose while trials run: one trial at a time at every K "
                "(`ran_sequentially`), so their speed-up is 1." if sequential else ""), "",
             "`median_wall_to_target_s`: simulated seconds until the first trial reached the target (a seed that "
             "never did counts as infinite; bootstrap 95% interval); `speedup`: its median at K = 1 over its median "
             "at K (ideal: K); `makespan`: until the last trial finished; `median_decision_s`: the strategy's "
             "charged seconds per run."
             + (f" {', '.join(sorted(summary.loc[summary['median_decision_s'] == 0, 'strategy'].unique()))}: no "
                "decision seconds in the calibration, so charged nothing for their thinking (see each K's REPORT.md)."
                if (summary["median_decision_s"] == 0).any() else ""), "", _fmt(summary, columns), "",
             f"![parallel_speedup]({figure.relative_to(root).as_posix()})", "",
             "## Where these numbers come from", "", as_markdown(environment()), ""]
    path = root / "REPORT.md"
    path.write_text("\n".join(lines))
    return path
