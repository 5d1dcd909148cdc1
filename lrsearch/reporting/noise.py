"""Is a workload out of the noise? The checks a table (a dense sweep, `lrsearch tabulate`) must pass before its
workload can rank strategies.

1. **Reading noise**: the standard error of one validation reading at the best configuration,
   sqrt(p (1 - p) / n) for accuracy p on n validation images, at most 0.7 points at the check's precision of
   one decimal (its own equivalence, "about 5,000 images": 5,000 images at 50% give 0.707).
2. **Target margin**: the target at least 3 standard errors below the best configuration's mean, so that reaching
   it is not a coin flip of the reading.
3. **Target reached**: the best configuration reaches the target in at least 90% of its seeds.
4. **The learning rate matters**: the median configuration that does not diverge falls short of the target, so that
   a search has something to find.

A configuration is one point of the table (its params, all but the seed); a trial's value is its final validation
reading (NaN for a diverged or failed trial, which counts as not reaching the target).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MAX_SE = 0.007
MARGIN_SE = 3.0
REACH = 0.9


@dataclass
class NoiseCheck:
    name: str
    passed: bool
    measured: str  # what was measured, in words
    needed: str  # what the check asks


def configurations(trials: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (params without the seed): seeds, mean value (over the trials with one), share of seeds
    with a value (not diverged or failed), and the values themselves."""
    train = trials[trials["kind"] == "train"].copy()
    train["config"] = train["params"].map(lambda p: json.dumps(p if isinstance(p, dict) else json.loads(p),
                                                               sort_keys=True))
    rows = []
    for config, g in train.groupby("config", sort=False):
        values = g["value"].astype(float)
        rows.append({"config": config, "lr": g["lr"].iloc[0], "seeds": len(g), "mean": values.mean(),
                     "valued": float(values.notna().mean()), "values": values.tolist()})
    return pd.DataFrame(rows)


def noise_checks(trials: pd.DataFrame, n_val: int, target: float) -> tuple[list[NoiseCheck], pd.DataFrame]:
    """The four checks on a table's trials (see the module), with n_val validation images and the target."""
    configs = configurations(trials)
    best = configs.loc[configs["mean"].idxmax()]
    p = float(best["mean"])
    se = math.sqrt(p * (1 - p) / n_val)
    reached = sum(v >= target for v in best["values"] if not math.isnan(v)) / best["seeds"]
    stable = configs[configs["valued"] == 1.0]  # no seed diverged or failed
    median = float(stable["mean"].median()) if len(stable) else math.nan
    checks = [
        NoiseCheck("reading noise", round(100 * se, 1) <= 100 * MAX_SE, f"standard error {100 * se:.2f} points, {100 * se:.1f} to one decimal ({n_val} validation images "
                   f"at accuracy {p:.3f})", f"at most {100 * MAX_SE:.1f} points to one decimal (about 5,000 images)"),
        NoiseCheck("target margin", p - target >= MARGIN_SE * se,
                   f"target {target:.3f} is {(p - target) / se if se else math.inf:.1f} standard errors below the best "
                   f"configuration's mean {p:.3f}", f"at least {MARGIN_SE:g} standard errors"),
        NoiseCheck("target reached", reached >= REACH, f"the best configuration reaches it in {reached:.0%} of its "
                   f"{best['seeds']} seeds", f"at least {REACH:.0%}"),
        NoiseCheck("the learning rate matters", median < target,
                   f"the median non-diverging configuration's mean is {median:.3f} "
                   f"({len(stable)} of {len(configs)} configurations never diverge)", f"below the target {target:.3f}"),
    ]
    return checks, configs


def suggest_target(trials: pd.DataFrame, n_val: int) -> float:
    """The highest target, rounded down to 0.5 points, that passes the margin and reach checks: at least 3 standard
    errors below the best configuration's mean, and at or below the value that 90% of its seeds reach (a seed
    without a value counts as below any target)."""
    configs = configurations(trials)
    best = configs.loc[configs["mean"].idxmax()]
    p = float(best["mean"])
    values = sorted((v if not math.isnan(v) else -math.inf for v in best["values"]), reverse=True)
    reach = values[max(0, math.ceil(REACH * len(values)) - 1)]  # the value 90% of the seeds reach
    highest = min(p - MARGIN_SE * math.sqrt(p * (1 - p) / n_val), reach)
    return math.floor(highest * 200 + 1e-9) / 200


def check_table(results_dir: str | Path, target: float | None = None) -> tuple[list[NoiseCheck], str]:
    """The checks on a table folder (its store and experiment.json), and their text as `lrsearch tabulate` prints
    it: one line per check and a plain verdict. The target: `target`, else the table's own (its config's
    `target_acc`: a grid over several dimensions has a lower best than the LR alone at the task's other settings),
    else the built-in task's as tasks.py sets it now (a table is made before its target is read off it), else the
    one the table was made with."""
    from lrsearch.reporting.tables import load_results
    from lrsearch.training.tasks import TASKS

    results_dir = Path(results_dir)
    config = json.loads((results_dir / "experiment.json").read_text())
    task = config["task"]
    n_val = task.get("val_size") or task.get("test_subset")
    if target is None:  # a table's own (its config's target_acc: a space of several dimensions), else the task's
        target = (config.get("target_acc") or (TASKS[task["name"]].target_acc if task.get("name") in TASKS
                  else (config.get("workload") or {}).get("target") or task.get("target_acc")))
    results = load_results(results_dir)
    params = results.trials.filter(like="params_")
    trials = results.trials.assign(params=[{k[len("params_"):]: v for k, v in row.items() if not pd.isna(v)}
                                           for row in params.to_dict("records")])
    if not n_val:
        raise ValueError(f"{results_dir}: the task's validation size is unknown (no val_size or test_subset)")
    checks, configs = noise_checks(trials, int(n_val), float(target))
    failed = [c.name for c in checks if not c.passed]
    suggested = suggest_target(trials, int(n_val))
    again = noise_checks(trials, int(n_val), suggested)[0]
    lines = [f"{task.get('name', results_dir.name)}: {len(configs)} configurations x "
             f"{int(configs['seeds'].median())} seeds, target {float(target):.3f}"]
    lines += [f"  {'pass' if c.passed else 'FAIL'}  {c.name}: {c.measured} (needs {c.needed})" for c in checks]
    lines += [f"  verdict: {'out of the noise: this table can rank strategies' if not failed else 'NOT out of the noise (' + ', '.join(failed) + '): its rankings would be readings of noise; change the workload or its target'}"]
    if suggested != float(target):
        passes = [c.name for c in again if not c.passed]
        lines += [f"  the highest target that passes the margin and reach checks: {suggested:.3f}; with it, "
                  + ("every check passes" if not passes else "still failing: " + ", ".join(passes))]
    return checks, "\n".join(lines)
