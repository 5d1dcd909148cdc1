"""REPORT.md: the tables and figures of one results folder, with where they came from."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pandas as pd

from lrsearch.reporting.contenders import contender_lines
from lrsearch.reporting.figures import build_figures
from lrsearch.reporting.tables import MIN_BOOTSTRAP_N, build_tables


def _fmt(frame: pd.DataFrame, columns: list[str]) -> str:
    return frame[columns].to_markdown(index=False, floatfmt=".3g")


def _beside_reference(results_dir: Path, reference: str | None, summary: pd.DataFrame) -> list[str]:
    """This run's summary beside the committed reference's (the config's `reference`), when this run is
    not the reference itself and the reference has a summary table."""
    if not reference or not len(summary):
        return []
    ref_dir = Path(reference)
    ref_path = ref_dir / "tables" / "summary.csv"
    if not ref_path.exists() or ref_dir.resolve() == results_dir.resolve():
        return []
    ref = pd.read_csv(ref_path)
    keys, columns = ["strategy", "budget"], ["n_seeds", "median_time_to_target_s", "success_rate", "median_best_val_acc"]
    if not set(keys + columns) <= set(ref.columns):  # a reference written in another layout: nothing to set beside
        return [f"The committed reference `{reference}` has a summary of another layout; compare its REPORT.md.", ""]
    both = summary[keys + columns].merge(ref[keys + columns], on=keys, how="outer", suffixes=("", "_reference"))
    both = both[keys + [c + s for c in columns for s in ("", "_reference")]]
    return ["## Beside the committed reference", "",
            f"This run's summary next to `{reference}` (its REPORT.md says where those numbers come from: machine, "
            "date, commit). Times differ with the machine; accuracies and success rates should agree within their "
            "intervals.", "", _fmt(both, list(both.columns)), ""]


RUNS_SHOWN_SEEDS = 10  # a report lists each run of its first seeds; tables/runs.csv has the rest


def seed_list(seeds: list[int]) -> str:
    """Seeds as a reader wants them: "0 to 99" for a long run of consecutive seeds, else the list."""
    if len(seeds) > 5 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]} to {seeds[-1]}"
    return str(list(seeds))


def clock_note(clock, simulated: dict | None = None) -> str:
    """Which clock a report's seconds are on, in one paragraph; `simulated`: the config's [executor] when its trials
    were read from a table on a simulated clock."""
    if simulated:
        k = simulated.get("workers") or 1
        return (f"Trials were read from a table (no training here) and placed on a simulated clock with {k} "
                f"worker{'s' if k > 1 else ''}: a trial starts when its strategy proposes it and takes its price, "
                "and a run's time-to-target is the moment its first trial reached the target. "
                + clock_note(clock).replace("Seconds are", "Prices are", 1)
                + ("" if clock is not None and clock.decisions is not None else
                   " Strategies' own decision seconds are not on this clock (`overhead_s` has them)."))
    if clock is None:
        return ("Seconds are wall-clock training seconds (`train_s`) on the machines listed below: they vary with the "
                "machine and its load (the same trial has taken 4.6 s and 9.5 s on one day). Give a calibration "
                "(`lrsearch calibrate`, then `lrsearch report --calibration DIR`) for the cost clock.")
    decisions = (" Each trial also costs its strategy's decision seconds before it, from `decisions.csv` beside it (the "
                 "median per strategy and trial index, measured once on a quiet machine)." if clock.decisions is not None
                 else "")
    return (f"Seconds are on the cost clock: each trial's training steps x its workload's calibrated seconds per step "
            f"under its optimizer, plus its evaluations x the work its method needs before each one, from "
            f"{clock.describe()} (lrsearch/experiment/calibration.py).{decisions} Wall-clock seconds stay in the trials "
            "table (`wall_train_s`, `wall_time_to_target_s`) as a check.")


def build_report(results_dir: str | Path, title: str | None = None, calibration: str | Path | None = None) -> Path:
    """REPORT.md, tables and figures of a results folder. Times are on the cost clock when a calibration is given
    (here, or as the experiment's `calibration`), else wall-clock training seconds; the report says which."""
    from lrsearch.experiment.calibration import Calibration

    results_dir = Path(results_dir)
    config_path = results_dir / "experiment.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    target = config.get("task", {}).get("target_acc")  # the latest run's; stored curves are read for it
    workload = config.get("workload") or {"metric": "val_acc", "direction": "maximize"}
    direction = workload.get("direction") or "maximize"
    calibration = calibration or config.get("calibration")
    clock = Calibration.load(calibration) if calibration else None
    tables = build_tables(results_dir, target, direction, clock)
    runs_meta = tables["runs_meta"]
    trials = tables["trials"]
    figures = build_figures(tables, results_dir / "figures", target)
    envs = [json.loads(e) for e in runs_meta["environment"].drop_duplicates()] if len(runs_meta) else []
    lines = [f"# {title or results_dir.name}", ""]
    if len(runs_meta):
        lines += [f"Experiment `{runs_meta['experiment'].iloc[0]}`, task `{runs_meta['task'].iloc[0]}`: "
                  f"{len(runs_meta)} runs ({(runs_meta['status'] == 'complete').sum()} complete), {len(trials)} trials.", ""]
    if config:
        task = config["task"]
        if "model" in task and "batch_size" in task and "description" in task:  # a built-in task
            about = (f"- task: {task['description']}; model `{task['model']}`, batch {task['batch_size']}, "
                     f"{task['epochs'] or task['steps']} {'epochs' if task['epochs'] else 'steps'} per trial, "
                     f"schedule `{json.dumps(task['schedule'])}`")
        else:
            about = (f"- workload: `{workload.get('spec', task.get('name'))}`, metric `{workload['metric']}` "
                     f"({direction}d; the tables' best-value columns hold it)")
        goal = (f"{target:.1%} validation accuracy" if direction == "maximize" and target is not None and target <= 1
                else f"{workload['metric']} {'<=' if direction == 'minimize' else '>='} {target:g}" if target is not None
                else "none")
        lines += [f"{config.get('description') or ''}", "", about,
                  f"- target: {goal}; search space `{json.dumps(config['space'])}`",
                  f"- strategies: {', '.join(config['strategies'])}; budgets {config['budgets']} trials; seeds {seed_list(config['seeds'])}",
                  ""]
    from lrsearch.experiment.provenance import changed_note

    executor = config.get("executor") or {}
    lines += ["## Clock", "", clock_note(clock, executor if executor.get("kind") == "simulated" else None), ""]
    if clock is not None and getattr(clock, "decisions", None) is not None and len(trials):
        uncharged = sorted(s for s in trials["strategy"].unique() if clock.decision_s(s, 0) is None)
        if uncharged:
            lines += [f"{', '.join(uncharged)}: no decision seconds in the calibration (`lrsearch calibrate "
                      "--decisions TABLE` measures them), so their thinking is charged nothing here; their measured "
                      "seconds per proposal are in `overhead_s`.", ""]
    if executor.get("kind") == "simulated" and (executor.get("workers") or 1) > 1 and len(trials):
        widths = {s: {json.loads(e).get("simulated", {}).get("workers") for e in g["extra"]}
                  for s, g in trials.groupby("strategy")}
        alone = sorted(s for s, w in widths.items() if w == {1})
        if alone:
            lines += [f"With {executor['workers']} workers, {', '.join(alone)} ran one trial at a time: "
                      f"{'they propose' if len(alone) > 1 else 'it proposes'} only after each result (no ask/tell "
                      "with trials in flight), so K workers gain them nothing here.", ""]
    lines += ["## Where these numbers come from", ""]
    for env in envs:
        lines += [f"- command: `{env['command']}`", f"  - date: {env['date']}", f"  - device: {env['device']}",
                  f"  - git commit: `{env['git_commit']}`{changed_note(env)}",
                  "  - versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items())]
        if "executor" in env:  # stores written before executors were recorded have none
            lines += [f"  - executor: {env['executor']}"]
    lines += [f"- report built {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} "
              "from `results.sqlite` alone (`lrsearch report`)", ""]
    summary = tables["summary"]
    if len(summary):
        lines += ["## Summary", "",
                  "Per strategy and budget, over seeds: the **search time-to-target** (training seconds spent, trial "
                  "after trial, until a trial reaches the target validation accuracy; a seed that never reaches it "
                  "counts as infinite), its percentile-bootstrap 95% interval over the `n_seeds` seeds, the share of seeds "
                  "that reached the target, and the best validation accuracy found (median, bootstrap 95% interval) "
                  f"with the test accuracy of the chosen configuration. No interval (nan) under {MIN_BOOTSTRAP_N} "
                  "seeds: over 3 seeds a \"95%\" interval of the median is their min-max, which covers it 75% of the "
                  "time.", "",
                  _fmt(summary, ["rank", "strategy", "budget", "n_seeds", "median_time_to_target_s", "ttt_ci_low_s",
                                 "ttt_ci_high_s", "success_rate", "median_best_val_acc", "acc_ci_low", "acc_ci_high",
                                 "median_test_acc_of_best", "median_train_s", "median_overhead_s"]), ""]
        random_only = summary[summary["runs_random_startup_only"] > 0]
        for row in random_only.itertuples():
            lines += [f"- **{row.strategy}** at budget {row.budget}: {row.runs_random_startup_only} of {row.n_seeds} "
                      "runs never left the strategy's random start-up (every proposal random): there it compares "
                      "random search, not its model. Set `n_startup_trials` below the budget in [options]."]
        if len(random_only):
            lines += [""]
        notes = tables["space_notes"]
        contenders = contender_lines(summary, direction)
        if len(notes):
            lines += ["How each strategy covered the search space, where it did not search every dimension as "
                      "declared (**flattened / ignored** marks a strategy that did not search the space as the "
                      "others did: compare it with care):", ""]
            lines += [f"- {'**flattened / ignored** ' if row.flattens_space else ''}{row.note}"
                      for row in notes.drop_duplicates("note").itertuples()]
            lines += [""]
        lines += contenders
    for fig in figures:
        lines += [f"![{fig.stem}](figures/{fig.name})", ""]
    from lrsearch.reporting.budgets import budgets_section

    lines += budgets_section(trials, config.get("budgets") or [], results_dir, target)
    runs = tables["runs"]
    shown_seeds = sorted(runs["seed"].unique())[:RUNS_SHOWN_SEEDS] if len(runs) else []
    if len(runs) and len(shown_seeds) < runs["seed"].nunique():  # hundreds of seeds: the table has them all
        lines += ["## Runs", "", f"{len(runs)} runs over {runs['seed'].nunique()} seeds (`tables/runs.csv` has every "
                  f"one); the first {len(shown_seeds)} seeds here:", ""]
        runs = runs[runs["seed"].isin(shown_seeds)]
    elif len(runs):
        lines += ["## Runs", ""]
    if len(runs):
        lines += [_fmt(runs, ["strategy", "budget", "seed", "n_trials", "n_diverged", "n_pruned", "n_failed",
                              "best_val_acc", "best_lr", "test_acc_of_best", "train_s", "overhead_s",
                              "search_time_to_target_s", "trials_to_target", "random_startup_only", "flattens_space"]),
                  ""]
    lines += _beside_reference(results_dir, config.get("reference"), tables["summary"])
    lines += ["Tables: `tables/{trials,runs,anytime,summary,curves}.{csv,parquet}`.", ""]
    path = results_dir / "REPORT.md"
    path.write_text("\n".join(lines))
    return path
