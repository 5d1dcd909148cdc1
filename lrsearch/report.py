"""REPORT.md: the tables and figures of one results folder, with where they came from."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pandas as pd

from lrsearch.analysis import build_tables
from lrsearch.figures import build_figures


def _fmt(frame: pd.DataFrame, columns: list[str]) -> str:
    return frame[columns].to_markdown(index=False, floatfmt=".3g")


def build_report(results_dir: str | Path, title: str | None = None) -> Path:
    results_dir = Path(results_dir)
    tables = build_tables(results_dir)
    runs_meta = tables["runs_meta"]
    config_path = results_dir / "experiment.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    target = config.get("task", {}).get("target_acc")
    trials = tables["trials"]
    figures = build_figures(tables, results_dir / "figures", target)
    envs = [json.loads(e) for e in runs_meta["environment"].drop_duplicates()] if len(runs_meta) else []
    lines = [f"# {title or results_dir.name}", ""]
    if len(runs_meta):
        lines += [f"Experiment `{runs_meta['experiment'].iloc[0]}`, task `{runs_meta['task'].iloc[0]}`: "
                  f"{len(runs_meta)} runs ({(runs_meta['status'] == 'complete').sum()} complete), {len(trials)} trials.", ""]
    if config:
        task = config["task"]
        lines += [f"{config.get('description') or ''}", "",
                  f"- task: {task['description']}; model `{task['model']}`, batch {task['batch_size']}, "
                  f"{task['epochs'] or task['steps']} {'epochs' if task['epochs'] else 'steps'} per trial, "
                  f"schedule `{json.dumps(task['schedule'])}`",
                  f"- target: {target:.1%} validation accuracy; search space `{json.dumps(config['space'])}`",
                  f"- strategies: {', '.join(config['strategies'])}; budgets {config['budgets']} trials; seeds {config['seeds']}",
                  ""]
    lines += ["## Where these numbers come from", ""]
    for env in envs:
        lines += [f"- command: `{env['command']}`", f"  - date: {env['date']}", f"  - device: {env['device']}",
                  f"  - git commit: `{env['git_commit']}`",
                  "  - versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items())]
    lines += [f"- report built {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} "
              "from `results.sqlite` alone (`lrsearch report`)", ""]
    summary = tables["summary"]
    if len(summary):
        lines += ["## Summary", "",
                  "Per strategy and budget, over seeds: the **search time-to-target** (training seconds spent, trial "
                  "after trial, until a trial reaches the target validation accuracy; a seed that never reaches it "
                  "counts as infinite), its bootstrap 95% interval, the share of seeds that reached the target, and "
                  "the best validation accuracy found (median, bootstrap 95% interval) with the test accuracy of "
                  "the chosen configuration.", "",
                  _fmt(summary, ["rank", "strategy", "budget", "n_seeds", "median_time_to_target_s", "ttt_ci_low_s",
                                 "ttt_ci_high_s", "success_rate", "median_best_val_acc", "acc_ci_low", "acc_ci_high",
                                 "median_test_acc_of_best", "median_train_s", "median_overhead_s"]), ""]
    for fig in figures:
        lines += [f"![{fig.stem}](figures/{fig.name})", ""]
    runs = tables["runs"]
    if len(runs):
        lines += ["## Runs", "", _fmt(runs, ["strategy", "budget", "seed", "n_trials", "n_diverged", "n_pruned",
                                             "best_val_acc", "best_lr", "test_acc_of_best", "train_s", "overhead_s",
                                             "search_time_to_target_s", "trials_to_target"]), ""]
    lines += ["Tables: `tables/{trials,runs,anytime,summary,curves}.{csv,parquet}`.", ""]
    path = results_dir / "REPORT.md"
    path.write_text("\n".join(lines))
    return path
