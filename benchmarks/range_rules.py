"""How often does each LR range-test rule suggest a good LR? Each suggestion read against the workload's table.

    OMP_NUM_THREADS=1 LRSEARCH_DATA=... python benchmarks/range_rules.py [--seeds 20] [--suite experiments/suite-cpu.toml]
                                                                         [--out results/range-rules-cpu] [--report-only]
                                                                         [--train lr-range-clr [lr-range-1cycle]]

For every workload of the suite whose 1-D table (`results/tables/<task>`: 32 log-spaced LRs x 10 seeds, every cell a
real training run) is complete, and for each seed, it runs the range test that lr-range-clr and lr-range-1cycle run
in the suite: the request the strategy itself builds (the lr space's bounds, exponential on a log space, as long
as one trial: range_fraction = 1.0), through the same objective, so 25 evaluations on the validation split along the
sweep and a stop when the smoothed loss passes the task's diverge_factor times its best. On that one test it applies
every rule, with the calls the strategies make:

- smith-acc, smith-loss: Smith's (base_lr, max_lr) on validation accuracy or on the training loss
  (`suggest_range`). The LR scored is max_lr: it is the `lr` lr-range-clr and lr-range-1cycle train at (the
  peak of their cyclical or one-cycle schedule); base_lr is kept beside it.
- valley, slide, minimum (the loss's minimum / 10), steep: fastai's rules; steepest_gradient: torch-lr-finder's.
  Each is the constant LR lr-range-fixed would train at with that `rule`.

A suggestion snaps to the table's nearest LR in log scale (as the tables answer a trial), and its outcome is what
the table's 10 seeds did there: the share that reach the task's target, the mean final validation accuracy, and
the regret (the table's best LR's mean minus that mean). The table's runs train the task's own schedule at that
LR: a constant LR on nobn, finetune and caffe-cpu, as lr-range-fixed trains; warm-up then cosine on resnet-adamw;
never the cyclical or one-cycle run the Smith strategies make. So with --train, each Smith row is also trained as
that strategy trains it after its test: the strategy, built as the suite builds it with the rule's metric, turns
the test's curve (from curves.csv) into its trial's params (`final_params`: lr-range-clr's triangular2 cycle from
base_lr to max_lr, lr-range-1cycle's one cycle peaking at max_lr), and the objective trains them at the test's
seed, a real run as long as a table trial.

Written as it goes (a rerun skips the (workload, seed) pairs already in suggestions.csv):
  <out>/suggestions.csv  one row per (workload, seed, rule): the suggestion, its outcome, the test's cost
  <out>/curves.csv       every range test's curve (step, lr, train_loss, val_acc), so rules can be re-read
  <out>/trained.csv      (--train) one row per trained run (strategy, workload, seed, Smith rule): schedule, outcome, cost
  <out>/runs.jsonl       each measuring or training invocation's command, date, device, commit and versions
then every row's outcome is read again from its table at the task's current target (suggestions.csv rewritten: a
target may be set after the tests ran; a trained run against the target too), and <out>/summary.csv,
<out>/trained_summary.csv, <out>/figures/<workload>.png and <out>/REPORT.md are written. The report's reading is
written from the two summaries (`reading`), and `finding_sentence(out)` gives its one-sentence finding.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lrsearch.experiment.provenance import as_markdown, environment
from lrsearch.experiment.table import Table
from lrsearch.reporting.tables import bootstrap_ci, wilson_interval
from lrsearch.search.lr_finder import RULES, suggest_lr, suggest_range
from lrsearch.training.errors import InputError
from lrsearch.training.tasks import TASKS

STRATEGY = "lr-range-clr"  # whose range-test request (bounds, mode, length) is measured
SMITH = ("smith-acc", "smith-loss")
RULE_NAMES = (*SMITH, *RULES)
REACH = 0.9  # a suggestion is good when the table's seeds at its LR reach the target at least this often
TABLE_SEEDS = 10  # a complete table: 32 LRs x 10 seeds
TRAINED = ("lr-range-clr", "lr-range-1cycle")  # the strategies whose run after the test --train trains
OUTCOME_COLUMNS = ["table_lr", "reach_share", "mean_val_acc", "diverged_share", "regret", "best_lr", "best_mean"]


# ---------------------------------------------------------------- the tables


def lr_outcomes(table: Table, target: float, chance: float) -> pd.DataFrame:
    """Per recorded LR of a 1-D table: lr, mean_val_acc, reach_share, diverged_share, over its seeds.

    A run's result is its last evaluation's val_acc (NaN when it diverged). reach_share: the share of seeds at or
    above `target`, a diverged seed counting as short of it (as reporting/noise.py reads a table). mean_val_acc
    counts a diverged seed at `chance` (1 / classes), so that every LR has a mean and a regret; at every table's
    best LR no seed diverged, so its mean is noise.py's."""
    rows = []
    for lr in table.axes["lr"]:
        final = np.array([table.cells[((float(lr),), seed)].curve["val_acc"].iloc[-1] for seed in table.seeds],
                         dtype=float)
        rows.append({"lr": float(lr), "mean_val_acc": float(np.where(np.isnan(final), chance, final).mean()),
                     "reach_share": float(np.mean(final >= target)), "diverged_share": float(np.isnan(final).mean())})
    return pd.DataFrame(rows)


def outcome_at(outcomes: pd.DataFrame, lr: float) -> dict:
    """The table's outcome at `lr`, snapped to its nearest recorded LR in log scale (as Table.snap does); NaNs
    for a rule that found no LR."""
    best = outcomes.loc[outcomes["mean_val_acc"].idxmax()]
    found = {"best_lr": float(best["lr"]), "best_mean": float(best["mean_val_acc"])}
    if not (isinstance(lr, float) and math.isfinite(lr) and lr > 0):
        return {**dict.fromkeys(OUTCOME_COLUMNS, math.nan), **found}
    row = outcomes.iloc[int(np.argmin(np.abs(np.log(outcomes["lr"].to_numpy()) - math.log(lr))))]
    return {"table_lr": float(row["lr"]), "reach_share": float(row["reach_share"]),
            "mean_val_acc": float(row["mean_val_acc"]), "diverged_share": float(row["diverged_share"]),
            "regret": found["best_mean"] - float(row["mean_val_acc"]), **found}


def read_outcomes(rows: pd.DataFrame, tables: dict[str, Table]) -> pd.DataFrame:
    """Every row's outcome read again from its table at the task's target as tasks.py sets it now: a target is
    read off its table, and may be set after the range tests ran (the lookup costs nothing; the tests stay)."""
    rows = rows.copy()
    for workload, table in tables.items():
        task = TASKS[workload]
        outcomes = lr_outcomes(table, task.target_acc, chance_accuracy(workload))
        here = rows["workload"] == workload
        found = pd.DataFrame([outcome_at(outcomes, lr) for lr in rows.loc[here, "lr"]], index=rows.index[here])
        rows.loc[here, OUTCOME_COLUMNS] = found[OUTCOME_COLUMNS]
        rows.loc[here, "target"] = task.target_acc
    return rows


def chance_accuracy(task_name: str) -> float:
    classes = TASKS[task_name].classes
    return 1.0 / (len(classes) if classes else 10)


# ---------------------------------------------------------------- the range test and its rules


def suggestions(extra: dict) -> list[dict]:
    """Every rule's suggestion on one range test's curve (the Evaluation's `extra`), with the calls the strategies
    make: Smith's on (eval_lrs, eval_accs) or (lrs, losses), the single-LR rules on (lrs, losses) with their
    defaults. `lr` is the LR the strategy trains at (max_lr for Smith's); a rule that finds nothing has NaN and
    its reason."""
    found = []
    for rule in RULE_NAMES:
        row = {"rule": rule, "lr": math.nan, "base_lr": math.nan, "error": ""}
        try:
            if rule in SMITH:
                metric = rule.split("-")[1]
                lrs, values = (extra["eval_lrs"], extra["eval_accs"]) if metric == "acc" else (extra["lrs"], extra["losses"])
                row["base_lr"], row["lr"] = suggest_range(lrs, values, metric)
            else:
                row["lr"] = suggest_lr(extra["lrs"], extra["losses"], rule)
        except ValueError as err:
            row["error"] = str(err)
        found.append(row)
    return found


def run_range_test(experiment, seed: int):
    """The range test lr-range-clr runs in this experiment at `seed`: its own request, through the objective."""
    from lrsearch.search.objective import WorkloadObjective
    from lrsearch.search.strategies import get_strategy

    strategy = get_strategy(STRATEGY, experiment.search_space(), seed=seed, **experiment.options.get(STRATEGY, {}))
    request = strategy._range_request()  # the very request the strategy sends (bounds, mode, range_fraction)
    return request, WorkloadObjective(experiment.workload(), seed)({"range_test": request}, None)


# ---------------------------------------------------------------- measuring


def lr_experiments(suite_path: str) -> list:
    """The suite's 1-D lr problems (one per workload), whose `lr` table is named in the suite."""
    from lrsearch.experiment.suite import load_config

    suite = load_config(suite_path)
    return [e for e in suite.experiments() if list(e.space) == ["lr"]]


def complete_table(experiment, suite_path: str) -> tuple[Table | None, str]:
    """The experiment's table if it has all its seeds at every LR, else None and why."""
    from lrsearch.experiment.config import read_toml

    problem = next(p for p in read_toml(suite_path)["problems"] if p["task"] == experiment.task)
    folder = Path(problem["tables"]["lr"])
    try:
        table = Table.load(folder)
    except InputError as err:
        return None, str(err)
    space = experiment.space["lr"]
    lrs = table.axes["lr"]
    if len(table.seeds) < TABLE_SEEDS:
        return None, f"{folder}: {len(table.seeds)} of {TABLE_SEEDS} seeds recorded at all {len(lrs)} LRs"
    if not (math.isclose(lrs[0], space["low"]) and math.isclose(lrs[-1], space["high"])):
        return None, f"{folder}: LRs {lrs[0]:g} to {lrs[-1]:g}, not the space's {space['low']:g} to {space['high']:g}"
    return table, f"{table.describe()}"


# ---------------------------------------------------------------- training Smith's range, as the strategies do


def range_extra(curve: pd.DataFrame, trial_steps: int, steps_per_epoch: int) -> dict:
    """One range test's Evaluation `extra` again, from its rows of curves.csv: the curve, the evaluations (the
    steps with a val_acc) and the trial's length, which is all a range-test strategy's `final_params` reads."""
    evaluated = curve.dropna(subset=["val_acc"])
    return {"lrs": curve["lr"].tolist(), "losses": curve["train_loss"].tolist(),
            "eval_lrs": evaluated["lr"].tolist(), "eval_accs": evaluated["val_acc"].tolist(),
            "total_steps": int(trial_steps), "steps_per_epoch": int(steps_per_epoch)}


def train_after_test(experiment, strategy_name: str, rule: str, seed: int, extra: dict, objective) -> dict:
    """The run `strategy_name` (lr-range-clr or lr-range-1cycle) trains after the range test in `extra` with the
    metric of Smith's `rule`: the strategy itself, built as the suite builds it, turns the test into its trial's
    params (`final_params`: the cyclical or one-cycle schedule, the steps), and the objective trains them at the
    test's seed. Its row: the schedule, the run's outcome and cost."""
    from lrsearch.search.strategies import get_strategy
    from lrsearch.search.strategies.base import Evaluation

    options = experiment.options.get(strategy_name, {}) | {"metric": rule.split("-")[1]}
    strategy = get_strategy(strategy_name, experiment.search_space(), seed=seed, **options)
    test = Evaluation({"range_test": strategy._range_request()}, 0.0, extra=extra)
    params, note = strategy.final_params(test)
    row = {"workload": experiment.task, "seed": seed, "rule": rule, "strategy": strategy_name,
           "base_lr": note.get("base_lr", math.nan), "max_lr": note.get("max_lr", math.nan),
           "schedule": json.dumps(params["schedule"]) if params else "", "error": note.get("error", "")}
    if params is None:
        return row
    started = time.perf_counter()
    record = objective(params, None).record
    return row | {"status": record.status, "diverged": record.status == "diverged", "final_val_acc": record.final_val_acc,
                  "best_val_acc": record.best_val_acc, "steps": record.steps,
                  "steps_planned": params.get("steps", extra["total_steps"]), "train_s": round(record.train_s, 2),
                  "wall_s": round(time.perf_counter() - started, 2)}


def train_smith(experiments: list, tables: dict, seeds: list[int], strategies: list[str], out: Path) -> None:
    """Train every Smith row of suggestions.csv as each of `strategies` would after its range test, seed by seed
    across the workloads, appending each run to trained.csv as it ends (a rerun skips the runs recorded)."""
    from lrsearch.search.objective import WorkloadObjective

    tests = pd.read_csv(out / "suggestions.csv")
    curves = pd.read_csv(out / "curves.csv")
    done = set()
    if (out / "trained.csv").exists():
        old = pd.read_csv(out / "trained.csv")
        done = set(zip(old["strategy"], old["workload"], old["seed"], old["rule"]))
    tested = set(zip(tests["workload"], tests["seed"]))
    todo = [(name, e, s, rule) for name in strategies for s in seeds for e in experiments for rule in SMITH
            if e.task in tables and (e.task, s) in tested and (name, e.task, s, rule) not in done]
    if not todo:
        return
    with (out / "runs.jsonl").open("a") as log:
        log.write(json.dumps(environment(sys.argv) | {"trained": [[n, e.task, s, r] for n, e, s, r in todo]}) + "\n")
    workloads, per_epoch = {}, {}
    for i, (name, experiment, seed, rule) in enumerate(todo):
        workload = experiment.task
        if workload not in workloads:
            workloads[workload] = experiment.workload()
            per_epoch[workload] = WorkloadObjective(workloads[workload], seed).steps_per_epoch()
        test = tests[(tests["workload"] == workload) & (tests["seed"] == seed) & (tests["rule"] == rule)].iloc[0]
        curve = curves[(curves["workload"] == workload) & (curves["seed"] == seed)].sort_values("step")
        extra = range_extra(curve, test["trial_steps"], per_epoch[workload])
        row = train_after_test(experiment, name, rule, seed, extra, WorkloadObjective(workloads[workload], seed))
        if not (math.isclose(row["max_lr"], test["lr"]) and math.isclose(row["base_lr"], test["base_lr"])):
            raise RuntimeError(f"{workload} seed {seed} {rule}: {name} reads ({row['base_lr']:g}, {row['max_lr']:g}) "
                               f"off curves.csv, suggestions.csv has ({test['base_lr']:g}, {test['lr']:g})")
        row |= {"range_steps": int(test["range_steps"]), "target": TASKS[workload].target_acc}
        append_csv(out / "trained.csv", [row])
        print(f"[{i + 1}/{len(todo)}] {name} {workload} seed {seed} {rule}: ({row['base_lr']:.3g}, {row['max_lr']:.3g}), "
              f"{row.get('status')}, val_acc {row.get('final_val_acc')}, {row.get('wall_s')} s", flush=True)


def append_csv(path: Path, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    frame.to_csv(path, mode="a", header=not path.exists(), index=False)


def measure(experiments: list, tables: dict, seeds: list[int], out: Path) -> None:
    """Run the range tests not yet in suggestions.csv, seed by seed across the workloads (so that an interrupted
    measurement leaves every workload with about as many seeds), writing each test's rows as it ends."""
    done = set()
    if (out / "suggestions.csv").exists():
        old = pd.read_csv(out / "suggestions.csv")
        done = set(zip(old["workload"], old["seed"]))
    todo = [(e, s) for s in seeds for e in experiments if e.task in tables and (e.task, s) not in done]
    if not todo:
        return
    with (out / "runs.jsonl").open("a") as log:
        log.write(json.dumps(environment(sys.argv) | {"measured": [[e.task, s] for e, s in todo]}) + "\n")
    for i, (experiment, seed) in enumerate(todo):
        workload, task = experiment.task, TASKS[experiment.task]
        started = time.perf_counter()
        request, test = run_range_test(experiment, seed)
        extra, record = test.extra, test.record
        outcomes = lr_outcomes(tables[workload], task.target_acc, chance_accuracy(workload))
        cost = {"range_steps": len(extra["lrs"]), "range_steps_planned": max(10, round(request["fraction"] * extra["total_steps"])),
                "trial_steps": extra["total_steps"], "range_evals": len(extra["eval_lrs"]),
                "range_train_s": round(record.train_s, 2), "range_wall_s": round(record.wall_s, 2),
                "min_lr": request["min_lr"], "max_lr": request["max_lr"], "mode": request["mode"],
                "test_status": test.status, "stop_reason": extra["stop_reason"],
                "target": task.target_acc}
        rows = [{"workload": workload, "seed": seed, **s, **outcome_at(outcomes, s["lr"]), **cost}
                for s in suggestions(extra)]
        evals = dict(zip(extra["eval_lrs"], extra["eval_accs"]))
        curve = [{"workload": workload, "seed": seed, "step": k + 1, "lr": lr, "train_loss": loss,
                  "val_acc": evals.get(lr, math.nan)} for k, (lr, loss) in enumerate(zip(extra["lrs"], extra["losses"]))]
        append_csv(out / "curves.csv", curve)
        append_csv(out / "suggestions.csv", rows)  # last: a row here means the test is complete
        print(f"[{i + 1}/{len(todo)}] {workload} seed {seed}: {len(extra['lrs'])} steps, {extra['stop_reason']}, "
              f"{time.perf_counter() - started:.0f} s; " + ", ".join(f"{r['rule']} {r['lr']:.3g}" for r in rows), flush=True)


# ---------------------------------------------------------------- summary, figures, report


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (workload, rule): how often its suggestion is good (reaches the target on >= 90% of the table's seeds;
    a rule that found nothing counts as not good), with a Wilson 95% interval; the median regret over the seeds
    with a suggestion and its bootstrap 95% interval; the median suggested LR against the table's best."""
    out = []
    for (workload, rule), g in rows.groupby(["workload", "rule"], sort=False):
        found = g.dropna(subset=["lr"])
        good = int((g["reach_share"] >= REACH).sum())
        low, high = wilson_interval(good, len(g))
        regret = found["regret"].to_numpy(float)
        r_low, r_high = bootstrap_ci(regret, statistic=np.median)
        median_lr = float(np.exp(np.median(np.log(found["lr"])))) if len(found) else math.nan
        out.append({"workload": workload, "rule": rule, "seeds": len(g), "no_suggestion": len(g) - len(found),
                    "good_share": good / len(g), "good_ci_low": low, "good_ci_high": high,
                    "mean_reach_share": float(g["reach_share"].fillna(0).mean()),
                    "median_regret": float(np.median(regret)) if len(regret) else math.nan,
                    "regret_ci_low": r_low, "regret_ci_high": r_high,
                    "median_lr": median_lr, "best_lr": float(g["best_lr"].iloc[0]),
                    "median_lr_over_best": median_lr / float(g["best_lr"].iloc[0]),
                    "range_steps_median": float(g["range_steps"].median()), "trial_steps": int(g["trial_steps"].iloc[0]),
                    "range_evals": int(g["range_evals"].median()), "range_wall_s_median": float(g["range_wall_s"].median())})
    return pd.DataFrame(out)


def read_trained(trained: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Every trained run read again at the task's current target (as read_outcomes reads the suggestions), beside
    the table's best LR's mean: `result` its final val_acc (NaN when it diverged), `reached` whether that meets
    the target (a diverged run never does), `regret` the table's best mean minus the result, a diverged run at
    chance as in the tables' means (NaN where the strategy found no range and trained nothing)."""
    trained = trained.copy()
    trained["target"] = [TASKS[w].target_acc for w in trained["workload"]]
    trained["best_mean"] = trained["workload"].map(rows.groupby("workload")["best_mean"].first())
    diverged = trained["status"] == "diverged"
    trained["result"] = trained["final_val_acc"].astype(float).where(~diverged)
    trained["reached"] = trained["result"] >= trained["target"]
    scored = trained["result"].where(~diverged, trained["workload"].map(chance_accuracy))
    trained["regret"] = trained["best_mean"] - scored
    return trained


def summarize_trained(trained: pd.DataFrame) -> pd.DataFrame:
    """Per (strategy, workload, Smith rule): the share of range tests whose trained run reaches the target (a run
    not trained, for want of a range, counts as short of it), with a Wilson 95% interval; the median final and
    best val_acc (a diverged run at chance) and the median regret with its bootstrap 95% interval, over the runs
    trained; the cost in steps: the range test's, the run's, and both together (medians)."""
    out = []
    for (strategy, workload, rule), g in trained.groupby(["strategy", "workload", "rule"], sort=False):
        ran = g[g["status"].notna()]
        reached = int(g["reached"].sum())
        low, high = wilson_interval(reached, len(g))
        regret = ran["regret"].to_numpy(float)
        r_low, r_high = bootstrap_ci(regret, statistic=np.median)
        chance = chance_accuracy(workload)
        out.append({"strategy": strategy, "workload": workload, "rule": rule, "seeds": len(g),
                    "no_range": len(g) - len(ran), "reach_share": reached / len(g), "reach_ci_low": low,
                    "reach_ci_high": high, "diverged_share": float((g["status"] == "diverged").mean()),
                    "median_val_acc": float(ran["result"].fillna(chance).median()),
                    "median_best_val_acc": float(ran["best_val_acc"].fillna(chance).median()),
                    "median_regret": float(np.median(regret)) if len(regret) else math.nan,
                    "regret_ci_low": r_low, "regret_ci_high": r_high, "best_mean": float(g["best_mean"].iloc[0]),
                    "target": float(g["target"].iloc[0]), "range_steps_median": float(g["range_steps"].median()),
                    "run_steps_median": float(ran["steps"].median()),
                    "total_steps_median": float((ran["range_steps"] + ran["steps"]).median()),
                    "run_wall_s_median": float(ran["wall_s"].median())})
    return pd.DataFrame(out)


def figure(workload: str, outcomes: pd.DataFrame, table: Table, rows: pd.DataFrame, target: float, path: Path) -> None:
    """The table's accuracy against LR (each seed's result and their mean, the target, the LRs whose seeds reach it
    at least 90% of the time shaded), and below it one strip per rule: every range-test seed's suggestion, filled
    where it lands on a good LR (Smith's base_lr as a grey tick, for reference)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    sns.set_theme(style="whitegrid")
    fig = Figure(figsize=(8, 7.6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.1, 1]})
    good = outcomes[outcomes["reach_share"] >= REACH]["lr"].to_numpy()
    ratio = outcomes["lr"].iloc[1] / outcomes["lr"].iloc[0]  # the grid's step: shade each good LR's own cell
    for ax in (top, bottom):
        for lr in good:
            ax.axvspan(lr / ratio**0.5, lr * ratio**0.5, color="C2", alpha=0.12, lw=0)
    for seed in table.seeds:
        finals = [table.cells[((float(lr),), seed)].curve["val_acc"].iloc[-1] for lr in outcomes["lr"]]
        top.plot(outcomes["lr"], finals, ".", color="0.6", ms=3, zorder=1)
    top.plot(outcomes["lr"], outcomes["mean_val_acc"], "-", color="C0", lw=1.8, zorder=2,
             label="table: mean over 10 seeds (a diverged seed at chance)")
    top.plot([], [], ".", color="0.6", label="table: one seed's final val_acc (diverged: not drawn)")
    top.axhline(target, color="C3", ls="--", lw=1.2, label=f"target {target:.3f}")
    top.axvspan(0, 0, color="C2", alpha=0.25, label=f"LRs whose seeds reach the target >= {REACH:.0%}")
    top.set(xscale="log", ylabel="final validation accuracy",
            title=f"{workload}: the table (top) and every rule's suggestion on {rows['seed'].nunique()} range tests "
                  "(bottom)")
    top.title.set_fontsize(10)
    rng = np.random.default_rng(0)
    names = list(RULE_NAMES)
    for y, rule in enumerate(names):
        g = rows[(rows["rule"] == rule)].dropna(subset=["lr"])
        jitter = rng.uniform(-0.18, 0.18, len(g))
        hit = (g["reach_share"] >= REACH).to_numpy()
        bottom.scatter(g["lr"].to_numpy()[hit], (y + jitter)[hit], s=22, color="C2", edgecolor="k", lw=0.5, zorder=3)
        bottom.scatter(g["lr"].to_numpy()[~hit], (y + jitter)[~hit], s=22, facecolor="white", edgecolor="C3", lw=1.0, zorder=3)
        if rule in SMITH:
            bottom.scatter(g["base_lr"], y + jitter, marker="|", s=40, color="0.5", lw=1.0, zorder=2)
        every = rows[rows["rule"] == rule]
        missing = int(every["lr"].isna().sum())
        tally = f"{int(hit.sum())}/{len(every)} good" + (f", {missing} found none" if missing else "")
        bottom.annotate(tally, (1.01, y), xycoords=("axes fraction", "data"), ha="left", va="center", fontsize=7)
    bottom.scatter([], [], s=22, color="C2", edgecolor="k", lw=0.5, label="suggestion on a good LR")
    bottom.scatter([], [], s=22, facecolor="white", edgecolor="C3", label="suggestion elsewhere")
    bottom.scatter([], [], marker="|", s=40, color="0.5", label="Smith's base_lr (not scored)")
    labels = {"smith-acc": "smith-acc (max_lr)", "smith-loss": "smith-loss (max_lr)", "minimum": "minimum (/10)"}
    bottom.set_yticks(range(len(names)), [labels.get(n, n) for n in names], fontsize=8)
    bottom.set_ylim(len(names) - 0.5, -0.5)
    bottom.set_xlim(outcomes["lr"].iloc[0] / ratio, outcomes["lr"].iloc[-1] * ratio)
    bottom.set_xlabel("learning rate (the table's lr, log scale)")
    handles = top.get_legend_handles_labels()[0] + bottom.get_legend_handles_labels()[0]
    bottom.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------- the reading, in words, from the summaries


def share(x: float) -> str:
    return f"{x:.0%}"


def points(x: float) -> str:
    return f"{100 * x:.1f}"


def listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def choices(summary: pd.DataFrame, trained: pd.DataFrame) -> pd.DataFrame:
    """Every way here to pick an LR and train it, one row each: each rule's LR as the table trains it (the task's
    own schedule; Smith's max_lr), and Smith's range as each trained strategy trains it. Columns: its median
    regret per workload, the worst of them (`worst`, on `worst_on`, with that cell's bootstrap interval), and the
    workloads where no other choice has a lower median regret (`lowest_on`). Sorted by `worst`: the one to trust
    first."""
    named = summary.assign(choice=[f"{r}'s max_lr on the task's schedule" if r in SMITH else r for r in summary["rule"]])
    if len(trained):
        named = pd.concat([named, trained.assign(choice=trained["rule"] + "'s range trained as " + trained["strategy"])])
    workloads = list(summary["workload"].unique())
    regrets = named.pivot(index="choice", columns="workload", values="median_regret")[workloads]
    ranked = regrets.assign(worst=regrets.max(axis=1), worst_on=regrets.idxmax(axis=1))
    cells = named.set_index(["choice", "workload"])
    ranked["worst_ci_low"] = [cells.loc[(c, w), "regret_ci_low"] for c, w in ranked["worst_on"].items()]
    ranked["worst_ci_high"] = [cells.loc[(c, w), "regret_ci_high"] for c, w in ranked["worst_on"].items()]
    lowest = regrets.idxmin(axis=0)
    ranked["lowest_on"] = [[w for w in workloads if lowest[w] == c] for c in ranked.index]
    return ranked.sort_values("worst")


def overlap(best: pd.Series, second: pd.Series) -> bool:
    """Whether two choices' worst median regrets have overlapping bootstrap intervals (choices' rows)."""
    return bool(second["worst_ci_low"] <= best["worst_ci_high"])


def reading(summary: pd.DataFrame, trained: pd.DataFrame) -> str:
    """The report's reading, every number formatted from a cell of the summaries (summarize, summarize_trained):
    how often each workload's best rule lands on a good LR, the choice to trust by its worst median regret and
    which choice is lowest on each workload, how Smith's ranges do as the range-test strategies train them, and
    what the tests leave open."""
    workloads = list(summary["workload"].unique())
    by_rule = summary.set_index(["workload", "rule"])
    tops = [summary[summary["workload"] == w].sort_values(["good_share", "median_regret"], ascending=[False, True])
            for w in workloads]
    sentences = [
        f"Read on the tables, the rule that most often lands on a good LR (one where at least {share(REACH)} of the "
        "table's seeds reach the target; 95% intervals in brackets) does so in "
        + listing([f"{share(t.iloc[0]['good_share'])}{' of range tests' if k == 0 else ''} on "
                   f"{t.iloc[0]['workload']} ({t.iloc[0]['rule']}, [{share(t.iloc[0]['good_ci_low'])}, "
                   f"{share(t.iloc[0]['good_ci_high'])}])" for k, t in enumerate(tops)]) + "."]
    ranked = choices(summary, trained)
    best, second = ranked.iloc[0], ranked.iloc[1]
    sentences.append(
        f"Judged by its worst workload, the choice to trust is {best.name}: its median regret (the table's best "
        "LR's mean final accuracy minus what the choice gets, in points; negative where it does better) is at most "
        f"{points(best['worst'])} [{points(best['worst_ci_low'])}, {points(best['worst_ci_high'])}] on any workload ("
        + listing([f"{points(best[w])} on {w}" for w in workloads])
        + f"), where the next best, {second.name}, loses up to {points(second['worst'])} [{points(second['worst_ci_low'])}"
        f", {points(second['worst_ci_high'])}] (on {second['worst_on']})"
        + (", a margin these intervals do not resolve." if overlap(best, second) else "."))
    lowest = [(w, c) for c in ranked.index for w in ranked.loc[c, "lowest_on"]]
    sentences.append("Workload by workload, the lowest median regret is "
                     + "; ".join(f"on {w}, {c}'s ({points(ranked.loc[c, w])})"
                                 for w, c in sorted(lowest, key=lambda x: workloads.index(x[0]))) + ".")
    for (strategy, rule), g in (trained.groupby(["strategy", "rule"], sort=False) if len(trained) else []):
        g = g.set_index("workload").loc[[w for w in workloads if w in set(g["workload"])]]
        sentences.append(
            f"Trained as {strategy} trains it, {rule}'s range reaches the target in "
            + listing([f"{share(r.reach_share)} [{share(r.reach_ci_low)}, {share(r.reach_ci_high)}]"
                       f"{f' of {r.seeds} runs' if k == 0 else ''} on {w}" for k, (w, r) in enumerate(g.iterrows())])
            + ", with a median regret of " + listing([points(r.median_regret) for _, r in g.iterrows()])
            + " points against " + listing([points(by_rule.loc[(w, rule), "median_regret"]) for w in g.index])
            + " when its max_lr trains the task's own schedule.")
    widths = pd.concat([summary["good_ci_high"] - summary["good_ci_low"],
                        trained["reach_ci_high"] - trained["reach_ci_low"] if len(trained) else pd.Series(dtype=float)])
    close = [t for t in tops if t.iloc[1]["good_ci_high"] >= t.iloc[0]["good_ci_low"]]
    example = (f" ({close[0].iloc[0]['workload']}'s best two rules, {close[0].iloc[0]['rule']} at "
               f"{share(close[0].iloc[0]['good_share'])} and {close[0].iloc[1]['rule']} at "
               f"{share(close[0].iloc[1]['good_share'])}, are not separated)" if close else "")
    untrained = [name for name in TRAINED if name not in set(trained.get("strategy", []))]
    sentences.append(
        f"The data do not resolve close calls: with {summary['seeds'].max()} range tests per workload a share's 95% "
        f"interval is {100 * widths.min():.0f} to {100 * widths.max():.0f} points wide{example}, and a trained "
        "run's regret is one seed's run against the table's mean over 10 seeds, so it carries that seed's noise"
        + (f"; how {listing(untrained)} would do was not measured (its runs were not trained)." if untrained else "."))
    return " ".join(sentences)


def finding_sentence(out: Path) -> str:
    """One sentence for the suite's findings: which choice to trust and by how much, read from <out>/summary.csv
    and <out>/trained_summary.csv, with a link to <out>/REPORT.md (relative, as `out` is given)."""
    summary = pd.read_csv(out / "summary.csv")
    trained = pd.read_csv(out / "trained_summary.csv") if (out / "trained_summary.csv").exists() else pd.DataFrame()
    ranked = choices(summary, trained)
    best, second = ranked.iloc[0], ranked.iloc[1]
    return (f"Of the LR range-test rules on {summary['workload'].nunique()} CPU workloads, {summary['seeds'].max()} "
            f"range tests each, {best.name} is the choice to trust: its median regret is at most "
            f"{points(best['worst'])} accuracy points on any workload (on {best['worst_on']}), against up to "
            f"{points(second['worst'])} for the next best, {second.name}"
            f"{', a margin the intervals do not resolve' if overlap(best, second) else ''} ([report]({(out / 'REPORT.md').as_posix()})).")


def trained_section(summary: pd.DataFrame, trained: pd.DataFrame) -> list[str]:
    """The report's section on Smith's ranges as the range-test strategies train them."""
    shown = summary.assign(
        reach=[f"{r.reach_share:.0%} [{r.reach_ci_low:.0%}, {r.reach_ci_high:.0%}]" for r in summary.itertuples()],
        acc=[f"{r.median_val_acc:.3f} ({r.median_best_val_acc:.3f})" for r in summary.itertuples()],
        regret_points=[f"{100 * r.median_regret:.1f} [{100 * r.regret_ci_low:.1f}, {100 * r.regret_ci_high:.1f}]"
                       for r in summary.itertuples()],
        target=[f"{r.target:.3f} ({r.best_mean:.3f})" for r in summary.itertuples()],
        diverged=[f"{r.diverged_share:.0%}" for r in summary.itertuples()],
        steps=[f"{r.range_steps_median:.0f} + {r.run_steps_median:.0f} = {r.total_steps_median:.0f}"
               for r in summary.itertuples()])
    table = shown[["strategy", "workload", "rule", "seeds", "no_range", "reach", "acc", "target", "regret_points",
                   "diverged", "steps"]].rename(
        columns={"no_range": "no range", "reach": "runs reaching the target [95% CI]",
                 "acc": "median final val_acc (best)", "target": "target (table's best mean)",
                 "regret_points": "median regret, points [95% CI]", "diverged": "diverged",
                 "steps": "steps: range test + run = cost (median)"})
    schedules = trained.assign(spec=trained["schedule"].map(lambda x: json.loads(x) if isinstance(x, str) and x else {}))
    clr = schedules[schedules["strategy"] == "lr-range-clr"]
    cycle = ""
    if len(clr):
        spec = clr["spec"].iloc[0]
        cycles = [(w, int(g["steps_planned"].iloc[0]), int(g["spec"].iloc[0]["step_size"]))
                  for w, g in clr.dropna(subset=["steps_planned"]).groupby("workload", sort=False)]
        cycle = (f" lr-range-clr's run is a {spec['mode']} cyclical LR ({spec['window']} window) from base_lr up to "
                 "max_lr and back, its half-cycle (step size) the strategy's step_size_epochs rounded so that "
                 "training ends at the end of a cycle: "
                 + listing([f"{w} {'one cycle' if n == 2 * step else f'{n // (2 * step)} cycles'} of {2 * step} steps"
                            for w, n, step in cycles])
                 + ".")
    return ["## Smith's ranges trained as the range-test strategies train them", "",
            "For every range test above and each of Smith's rules, the run the strategy trains after the test: "
            "the strategy itself (as the suite builds it, with the rule's metric) turned the test's curve "
            "(curves.csv) into its trial's params (`final_params`), and the workload's objective trained them at the "
            "test's seed, a real run like a table trial." + cycle
            + " A run reaches the target when its final validation accuracy does (a diverged run never does); its "
              "regret is the table's best LR's mean final accuracy minus the run's (a diverged run at chance), one "
              "run per range test, so the median over the tests carries each run's seed-to-seed noise as well; "
              "Wilson and bootstrap 95% intervals as above. Cost: the range test's steps plus the run's (the "
              "range test also spends its evaluations, above).", "",
            table.to_markdown(index=False), ""]


def report(out: Path, summary: pd.DataFrame, rows: pd.DataFrame, trained_summary: pd.DataFrame,
           trained: pd.DataFrame, notes: list[str], env: dict) -> str:
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    shown = summary.assign(
        good=[f"{r.good_share:.0%} [{r.good_ci_low:.0%}, {r.good_ci_high:.0%}]" for r in summary.itertuples()],
        regret_points=[f"{100 * r.median_regret:.1f} [{100 * r.regret_ci_low:.1f}, {100 * r.regret_ci_high:.1f}]"
                       for r in summary.itertuples()],
        reach=[f"{r.mean_reach_share:.0%}" for r in summary.itertuples()],
        lr=[f"{r.median_lr:.3g} ({r.median_lr_over_best:.2g}x)" if r.median_lr_over_best < 100
            else f"{r.median_lr:.3g} ({r.median_lr_over_best:.0f}x)" for r in summary.itertuples()],
        best=[f"{r.best_lr:.3g}" for r in summary.itertuples()],
        steps=[f"{r.range_steps_median:.0f} / {r.trial_steps}" for r in summary.itertuples()])
    table = shown[["workload", "rule", "seeds", "no_suggestion", "good", "reach", "regret_points", "lr", "best",
                   "steps"]].rename(
        columns={"no_suggestion": "found none", "good": "good LR: share of seeds [95% CI]",
                 "reach": "table seeds reaching the target there (mean)",
                 "regret_points": "median regret, points [95% CI]", "lr": "median suggested LR (x best)",
                 "best": "table's best LR", "steps": "range-test steps / trial steps (median)"})
    workloads = list(summary["workload"].unique())
    cost = rows.groupby("workload").agg(evals=("range_evals", "median"), wall=("range_wall_s", "median"),
                                        train=("range_train_s", "median"), completed=("stop_reason", lambda s: (s == "completed").mean()))
    tests = rows.groupby("workload")["seed"].nunique()
    tests_text = f"{tests.min()}" if tests.min() == tests.max() else f"{tests.min()} to {tests.max()}"
    lines = [
        "# How often does each LR range-test rule suggest a good LR? (issue 36, item 3)", "",
        f"`benchmarks/range_rules.py` ran {tests_text} range tests per workload (seeds "
        f"{rows['seed'].min()} to {rows['seed'].max()}), each the one {STRATEGY} and lr-range-1cycle run in "
        "`experiments/suite-cpu.toml`: exponential from the lr space's low bound to its high bound (the table's "
        "first and last LR), as long as one trial (range_fraction 1.0), 25 evaluations on the 5,000 validation "
        "images, through the same objective. Every rule read its suggestion off the same test, with the calls the "
        "strategies make. Each suggestion snapped to the table's nearest LR (log scale), and its outcome is what "
        "the table's 10 seeds did there; Smith's ranges were also trained after each test, as lr-range-clr trains "
        "them (below).", "",
        "- **good LR**: the table's seeds at the suggested LR reach the task's target in at least 90% of cases "
        "(the reach rule the targets were set by); a rule that found nothing counts as not good. Interval: Wilson 95%.",
        "- **regret**: the table's best LR's mean final val_acc minus the mean at the suggested LR, in accuracy "
        "points, over the seeds where the rule found an LR (a diverged table seed counts at chance, 1/classes); "
        "median with a percentile bootstrap 95% interval (2,000 resamples).",
        "- **Smith's rules** (smith-acc on validation accuracy, smith-loss on the training loss) give (base_lr, "
        "max_lr); the LR scored is max_lr, the `lr` lr-range-clr and lr-range-1cycle train at (the peak of their "
        "cyclical or one-cycle schedule). The table trains the task's own schedule at that LR, not theirs, so the "
        "summary scores max_lr as the task's LR; the CLR run itself is trained in the section after it.",
        "- **fastai's rules** (valley, slide, minimum = the loss's minimum / 10, steep) and torch-lr-finder's "
        "steepest_gradient: the constant LR lr-range-fixed would train at. The table trains at a constant LR on "
        "nobn, finetune and caffe-cpu, as lr-range-fixed does; on resnet-adamw with warm-up and cosine, peaking "
        "at that LR.",
        "- On finetune the test sweeps backbone and head at the task's ratio (backbone_lr_mult 0.1): every LR here "
        "is the head's, the table's `lr`.",
        "",
        "Workloads:", "",
        *[f"- {note}" for note in notes], "",
        "## Summary", "",
        table.to_markdown(index=False), "",
        "Cost of one range test (median per workload): "
        + "; ".join(f"{w}: {rows[rows['workload'] == w]['range_steps'].median():.0f} sweep steps of "
                    f"{int(rows[rows['workload'] == w]['trial_steps'].iloc[0])} planned (a trial's length), "
                    f"{cost.loc[w, 'evals']:.0f} evaluations, {cost.loc[w, 'train']:.0f} s training and "
                    f"{cost.loc[w, 'wall']:.0f} s in all, {cost.loc[w, 'completed']:.0%} of tests ran to the end "
                    "without diverging" for w in workloads)
        + ". The evaluations, not the steps, are most of a test's time: 25 passes over 5,000 images against "
          "one trial's 2 or 3. (Seconds on one torch thread of a 2-core machine that two other jobs shared: "
          "indicative only.)", "",
        "## Figures", "",
        *[f"![{w}](figures/{w}.png)\n" for w in workloads],
        "Top: every table seed's final validation accuracy (grey), their mean (blue), the target (red), and the LRs "
        "where at least 90% of seeds reach it (green). Bottom: one row per rule, one point per range-test seed; "
        "filled green where the suggestion lands on such an LR.", "",
    ]
    if len(trained_summary):
        lines += trained_section(trained_summary, trained)
    lines += ["## Reading", "", reading(summary, trained_summary), "",
              "(Written by `reading()` in `benchmarks/range_rules.py` from the two summaries: every number is a "
              "cell of summary.csv or trained_summary.csv.)", ""]
    lines += ["## Files", "",
              "- `suggestions.csv`: one row per (workload, seed, rule): the suggested `lr` (max_lr for Smith's, "
              "with `base_lr`), `error` when the rule found nothing, the snapped `table_lr`, `reach_share`, "
              "`mean_val_acc`, `diverged_share`, `regret`, the table's `best_lr` and `best_mean`, and the test's "
              "cost (`range_steps` completed of `range_steps_planned`, `trial_steps`, `range_evals`, seconds).",
              "- `curves.csv`: every range test's curve, to read other rules off without running it again.",
              "- `summary.csv`: the summary table above, unrounded.",
              "- `trained.csv`: one row per trained run (strategy, workload, seed, Smith rule): its (base_lr, "
              "max_lr) and `schedule` as the strategy built them, `status`, `final_val_acc`, `best_val_acc`, "
              "`steps` (and `steps_planned`), seconds, and the range test's `range_steps`.",
              "- `trained_summary.csv`: the trained runs' table, unrounded.", "",
              "## Provenance", "",
              "Measured by (each invocation that ran range tests or trained runs after them):", ""]
    for run in runs:
        if "measured" in run:
            measured = pd.DataFrame(run["measured"], columns=["workload", "seed"]).groupby("workload")["seed"]
            done = "- range tests it set out to run: " + "; ".join(f"{w} seeds {min(s)}-{max(s)}" for w, s in measured)
        else:
            asked = pd.DataFrame(run["trained"], columns=["strategy", "workload", "seed", "rule"])
            done = "- runs it set out to train after the range tests: " + "; ".join(
                f"{n} {w} seeds {min(g['seed'])}-{max(g['seed'])} ({len(g)} runs)"
                for (n, w), g in asked.groupby(["strategy", "workload"], sort=False))
        lines += [as_markdown(run).rstrip(), done, ""]
    lines += ["Summary, figures and this report written by:", "", as_markdown(env)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="experiments/suite-cpu.toml")
    parser.add_argument("--seeds", type=int, default=20, help="range-test seeds 0 .. n-1 per workload")
    parser.add_argument("--out", type=Path, default=Path("results/range-rules-cpu"))
    parser.add_argument("--report-only", action="store_true", help="summary, figures and report from what is recorded")
    parser.add_argument("--train", nargs="*", choices=TRAINED, default=[],
                        help="after the range tests, train each Smith suggestion as these strategies would")
    args = parser.parse_args()
    env = environment(sys.argv)
    args.out.mkdir(parents=True, exist_ok=True)
    experiments = lr_experiments(args.suite)
    tables, notes = {}, []
    for experiment in experiments:
        table, note = complete_table(experiment, args.suite)
        task = TASKS[experiment.task]
        if table is None:
            notes.append(f"{experiment.task}: left out, its table is not complete ({note})")
            continue
        tables[experiment.task] = table
        notes.append(f"{experiment.task}: {note}; target {task.target_acc:.3f} (tasks.py); {task.description}")
    print("\n".join(notes), flush=True)
    if not args.report_only:
        measure(experiments, tables, list(range(args.seeds)), args.out)
        train_smith(experiments, tables, list(range(args.seeds)), args.train, args.out)
    rows = read_outcomes(pd.read_csv(args.out / "suggestions.csv"), tables)
    rows.to_csv(args.out / "suggestions.csv", index=False)
    rows = rows[rows["workload"].isin(tables) & (rows["seed"] < args.seeds)]
    summary = summarize(rows)
    summary.to_csv(args.out / "summary.csv", index=False)
    trained = pd.DataFrame(columns=["strategy", "workload", "seed", "rule", "status"])
    if (args.out / "trained.csv").exists():
        trained = read_trained(pd.read_csv(args.out / "trained.csv"), rows)
        trained = trained[trained["workload"].isin(tables) & (trained["seed"] < args.seeds)]
    trained_summary = summarize_trained(trained)
    trained_summary.to_csv(args.out / "trained_summary.csv", index=False)
    (args.out / "figures").mkdir(exist_ok=True)
    for workload, table in tables.items():
        task = TASKS[workload]
        outcomes = lr_outcomes(table, task.target_acc, chance_accuracy(workload))
        figure(workload, outcomes, table, rows[rows["workload"] == workload], task.target_acc,
               args.out / "figures" / f"{workload}.png")
    (args.out / "REPORT.md").write_text(report(args.out, summary, rows, trained_summary, trained, notes, env))
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(summary[["workload", "rule", "seeds", "no_suggestion", "good_share", "median_regret", "regret_ci_low",
                       "regret_ci_high", "median_lr", "best_lr"]].round(4).to_string(index=False))
        if len(trained_summary):
            print(trained_summary[["strategy", "workload", "rule", "seeds", "reach_share", "median_val_acc",
                                   "median_regret", "total_steps_median"]].round(4).to_string(index=False))
    print("\n" + reading(summary, trained_summary) + "\n\n" + finding_sentence(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
