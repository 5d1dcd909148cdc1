"""Real runs against the tables' runs: does a search answered from a table score as the same search trained?

    python benchmarks/tables_check.py [--real results/tables-check-cpu] [--tables results/suite-cpu-tables]
                                      [--budget 16] [--out <real>/check]

`--real`: the suite `experiments/tables-check-cpu.toml` trained for real (`make tables-check`: random, optuna-tpe
and hyperopt-tpe on nobn-lr and nobn-lr-wd-mom, budget 16, seeds 0..9). `--tables`: the same searches answered
from the tables on a simulated clock (`experiments/suite-cpu-tables.toml`, 100 seeds; `make suite-tables
RESULTS=results/suite-cpu-tables`). Both are read from each problem's `tables/runs.csv`, as the runner's report
wrote it (a runs table older than its store stops here with the command that rebuilds it).

For each (problem, strategy) cell of the real suite, on each side: the success rate at the budget (the share of
complete runs whose search reached the target) with its Wilson 95% interval, the median best validation accuracy
with its percentile-bootstrap 95% interval (`lrsearch.reporting.tables.median_best`), and the seeds behind them;
then Kendall's tau between the two sides' rankings of the cells by median best accuracy, over all cells and per
problem. Whether the two sides trained the same thing (task fields, space, target, the strategy's options) is read
off both sides' experiment.json. The cells are judged by PASS_RULE, fixed below before any real run existed.
-> <out>/check.csv (one row per cell), <out>/ranks.csv (the taus) and <out>/REPORT.md (verdict, the rule, every
failing cell, provenance). Exit status 0 when the check passes, 1 when it fails or is incomplete.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau

from lrsearch.experiment.provenance import as_markdown, environment
from lrsearch.reporting.tables import median_best, wilson_interval

# Written on 2026-12-03, before any real run of experiments/tables-check-cpu.toml existed; the report quotes it as is.
PASS_RULE = """\
A cell is one (problem, strategy) of the real suite at budget 16. It is judged only when both sides trained the
same thing (the task's fields, the space, the target, the strategy's options, as each side's experiment.json
records them) and the real side has at least 10 complete seeds; otherwise it is INCOMPLETE, and the report says why.
A judged cell PASSES when both hold:
  1. success rate: the real side's Wilson 95% interval overlaps the table side's;
  2. median best validation accuracy: the real side's percentile-bootstrap 95% interval (2,000 resamples) overlaps
     the table side's.
Otherwise it FAILS, and the report names it and the part that failed.
The check PASSES when every cell passes, FAILS when any cell fails, and is INCOMPLETE otherwise.
Kendall's tau between the two sides' rankings is reported, not judged: a problem's ranking has 3 strategies, whose
3! = 6 orders leave Kendall's exact test no p-value below 1/3 even for perfect agreement, and over all 6 cells
the two problems' different accuracy levels order the cross-problem pairs by themselves."""
# Overlap of two 95% intervals is a lenient test (two intervals can overlap while the difference is significant at
# 5%): with 10 real seeds it catches large disagreements only. For a table at 100 of 100 successes (Wilson low
# 0.963), a real 8 of 10 fails (high 0.943) and 9 of 10 passes (high 0.982).
MIN_REAL_SEEDS = 10
N_BOOT = 2000  # median_best's resamples

CELL_COLUMNS = ["problem", "strategy", "status", "reason", "real_seeds", "table_seeds",
                "real_success_rate", "real_success_low", "real_success_high",
                "table_success_rate", "table_success_low", "table_success_high", "success_overlap",
                "real_median_best", "real_best_low", "real_best_high",
                "table_median_best", "table_best_low", "table_best_high", "best_overlap"]
# The Task fields that may differ between two sides that trained the same thing: the prose, and the target (compared
# as the workload's target instead, the one the search was scored against).
NOT_TRAINING = {"description", "target_acc", "metric", "direction"}


# ------------------------------------------------------------------ reading the two suites


def complete_in_store(folder: Path) -> set[tuple[str, int, int]] | None:
    """(strategy, budget, seed) of every complete run in the folder's store, read-only; None without a store."""
    db = folder / "results.sqlite"
    if not db.is_file():
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT strategy, budget, seed FROM runs WHERE status = 'complete'").fetchall()
    return {(s, int(b), int(seed)) for s, b, seed in rows}


def read_runs(suite_folder: Path, budget: int) -> pd.DataFrame:
    """Every complete run at `budget` of each problem under a suite's folder, from its `tables/runs.csv`: problem,
    strategy, seed, best_val_acc, reached_target. A runs table that lacks complete runs of its store stops here."""
    columns = ["problem", "strategy", "seed", "best_val_acc", "reached_target"]
    frames = []
    for folder in sorted(p for p in suite_folder.glob("*") if (p / "results.sqlite").is_file()
                         or (p / "tables" / "runs.csv").is_file()):
        path = folder / "tables" / "runs.csv"
        runs = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["strategy", "budget", "seed", "run_status"])
        runs = runs[runs["run_status"] == "complete"]
        stored = complete_in_store(folder)
        listed = {(s, int(b), int(seed)) for s, b, seed in runs[["strategy", "budget", "seed"]].itertuples(index=False)}
        if stored is not None and stored - listed:
            raise SystemExit(f"{path}: {len(stored - listed)} complete runs of {folder}/results.sqlite are not in it "
                             f"yet; rebuild the tables with `.venv/bin/lrsearch report {suite_folder}`")
        runs = runs[runs["budget"] == budget]
        if len(runs):
            frames.append(pd.DataFrame({"problem": folder.name, "strategy": runs["strategy"], "seed": runs["seed"],
                                        "best_val_acc": runs["best_val_acc"].astype(float),
                                        "reached_target": runs["reached_target"].astype(bool)}))
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def definition_differences(real: dict, table: dict, strategies: list[str]) -> list[str]:
    """What the two sides' experiment.json record differently about the training, the space, the target and the
    strategies' options, one line each (empty: the same). A table side's task fields are the table's recorded ones."""
    real_task = real["task"]
    table_task = table["task"].get("task", table["task"])  # a table's workload nests the Task its cells trained
    out = [f"task.{k}: real {real_task.get(k)!r}, table {table_task.get(k)!r}"
           for k in sorted((set(real_task) | set(table_task)) - NOT_TRAINING) if real_task.get(k) != table_task.get(k)]
    if real["workload"]["target"] != table["workload"]["target"]:
        out.append(f"target: real {real['workload']['target']}, table {table['workload']['target']}")
    if real["space"] != table["space"]:
        out.append(f"space: real {real['space']}, table {table['space']}")
    for s in strategies:
        mine, theirs = real["options"].get(s, {}), table["options"].get(s, {})
        if mine != theirs:
            out.append(f"options.{s}: real {mine}, table {theirs}")
    return out


# ------------------------------------------------------------------ the comparison and the rule


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two closed intervals meet; a NaN end is a run without any value (median_best), below every value."""
    (a0, a1), (b0, b1) = [tuple(-math.inf if math.isnan(x) else x for x in i) for i in (a, b)]
    return a0 <= b1 and b0 <= a1


def side(runs: pd.DataFrame) -> dict:
    """One side of a cell: seeds, success rate with its Wilson interval, median best with its bootstrap interval."""
    n, hits = len(runs), int(runs["reached_target"].sum())
    low, high = wilson_interval(hits, n)
    median, best_low, best_high = median_best(runs["best_val_acc"].to_numpy(dtype=float), n_boot=N_BOOT)
    return {"seeds": n, "success_rate": hits / n if n else math.nan, "success_low": low, "success_high": high,
            "median_best": median, "best_low": best_low, "best_high": best_high}


def compare(real: pd.DataFrame, table: pd.DataFrame, cells: list[tuple[str, str]],
            differences: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """One row per (problem, strategy) cell, judged by PASS_RULE; `differences` maps a problem to its
    definition_differences (a problem with any is not comparable)."""
    rows = []
    for problem, strategy in cells:
        r = side(real[(real["problem"] == problem) & (real["strategy"] == strategy)])
        t = side(table[(table["problem"] == problem) & (table["strategy"] == strategy)])
        row = {"problem": problem, "strategy": strategy, **{f"real_{k}": v for k, v in r.items()},
               **{f"table_{k}": v for k, v in t.items()}}
        row["success_overlap"] = overlap((r["success_low"], r["success_high"]), (t["success_low"], t["success_high"]))
        row["best_overlap"] = overlap((r["best_low"], r["best_high"]), (t["best_low"], t["best_high"]))
        incomplete = []
        if (differences or {}).get(problem):
            incomplete.append("the two sides trained different things: " + "; ".join(differences[problem]))
        if r["seeds"] < MIN_REAL_SEEDS:
            incomplete.append(f"{r['seeds']} complete real seeds of the {MIN_REAL_SEEDS} needed")
        if t["seeds"] == 0:
            incomplete.append("no runs on the tables")
        if incomplete:
            row["status"], row["reason"] = "incomplete", "; ".join(incomplete)
            row["success_overlap"] = row["best_overlap"] = None
        else:
            failed = [part for part, ok in (("success rate", row["success_overlap"]),
                                            ("median best", row["best_overlap"])) if not ok]
            row["status"] = "fail" if failed else "pass"
            row["reason"] = f"intervals apart: {' and '.join(failed)}" if failed else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def rank_agreement(cells: pd.DataFrame) -> pd.DataFrame:
    """Kendall's tau-b (scipy) between the real and the table rankings of the cells by median best accuracy, over
    every cell with runs on both sides and within each problem. A median on runs without a value ranks last."""
    both = cells[(cells["real_seeds"] > 0) & (cells["table_seeds"] > 0)]
    rows = []
    for scope, group in [("all cells", both), *both.groupby("problem", sort=False)]:
        real = group["real_median_best"].rank(na_option="bottom", ascending=False)
        table = group["table_median_best"].rank(na_option="bottom", ascending=False)
        tau, p = kendalltau(real, table) if len(group) >= 2 else (math.nan, math.nan)
        rows.append({"scope": scope, "cells": len(group), "kendall_tau": float(tau), "p_value": float(p)})
    return pd.DataFrame(rows, columns=["scope", "cells", "kendall_tau", "p_value"])


def verdict(cells: pd.DataFrame) -> str:
    """PASS_RULE's verdict over the cells: FAIL when any fails, else INCOMPLETE when any is, else PASS."""
    if (cells["status"] == "fail").any():
        return "FAIL"
    if cells.empty or (cells["status"] == "incomplete").any():
        return "INCOMPLETE"
    return "PASS"


# ------------------------------------------------------------------ the report


def _interval(value: float, low: float, high: float, digits: int) -> str:
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def cell_line(row) -> str:
    """A cell in one line: both sides' success rate and median best with their intervals, and the seeds."""
    return (f"{row.problem} / {row.strategy}: success real "
            f"{_interval(row.real_success_rate, row.real_success_low, row.real_success_high, 2)} vs table "
            f"{_interval(row.table_success_rate, row.table_success_low, row.table_success_high, 2)}; median best real "
            f"{_interval(row.real_median_best, row.real_best_low, row.real_best_high, 4)} vs table "
            f"{_interval(row.table_median_best, row.table_best_low, row.table_best_high, 4)} "
            f"({row.real_seeds} real seeds, {row.table_seeds} table seeds)")


def report_text(cells: pd.DataFrame, ranks: pd.DataFrame, sources: str, provenance: str) -> str:
    """REPORT.md: the verdict with every failing and incomplete cell, the rule, the cells, the taus, provenance."""
    result = verdict(cells)
    failing, incomplete = cells[cells["status"] == "fail"], cells[cells["status"] == "incomplete"]
    lines = ["# Real runs against the tables' runs", "", f"**Verdict: {result}** ({(cells['status'] == 'pass').sum()} "
             f"of {len(cells)} cells pass, {len(failing)} fail, {len(incomplete)} incomplete)", ""]
    if len(failing):
        lines += ["Where it fails:", ""] + [f"- FAIL {cell_line(r)}: {r.reason}" for r in failing.itertuples()] + [""]
    if len(incomplete):
        lines += ["Not judged:", ""] + [f"- INCOMPLETE {r.problem} / {r.strategy}: {r.reason}"
                                        for r in incomplete.itertuples()] + [""]
    shown = cells.drop(columns=["reason"]).copy()
    for column in ("success_overlap", "best_overlap"):
        shown[column] = shown[column].map({True: "yes", False: "no"}).fillna("-")
    lines += ["## The pass rule (fixed before any real run existed)", "", "```", PASS_RULE, "```", "",
              "## Cells", "", shown.to_markdown(index=False, floatfmt=".4g"), "",
              "## Kendall's tau of the two rankings by median best accuracy (reported, not judged)", "",
              ranks.to_markdown(index=False, floatfmt=".3g"), "",
              "## What was compared", "", sources, "", "## Where these numbers come from", "", provenance]
    return "\n".join(lines)


def trained_on(folders: list[Path]) -> str:
    """The devices and commits the real runs record (each run's environment in its store)."""
    devices, commits = set(), set()
    for folder in folders:
        db = folder / "results.sqlite"
        if not db.is_file():
            continue
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            for (text,) in conn.execute("SELECT environment FROM runs WHERE status = 'complete'"):
                env = json.loads(text or "{}")
                devices.add(str(env.get("device", "?")))
                commits.add(str(env.get("git_commit", "?")))
    return f"devices {', '.join(sorted(devices)) or '-'}; commits {', '.join(sorted(commits)) or '-'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=Path("results/tables-check-cpu"))
    parser.add_argument("--tables", type=Path, default=Path("results/suite-cpu-tables"))
    parser.add_argument("--budget", type=int, default=None, help="default: the real suite's largest budget")
    parser.add_argument("--out", type=Path, default=None, help="default: <real>/check")
    args = parser.parse_args(argv)
    env = environment([sys.executable, "benchmarks/tables_check.py", *(sys.argv[1:] if argv is None else argv)])
    first = "run `make tables-check` first (experiments/tables-check-cpu.toml: hours of training; it resumes)"
    if not (args.real / "suite.json").is_file():
        raise SystemExit(f"{args.real}: no real runs here (no suite.json); {first}")

    from lrsearch.experiment.suite import stored_suite

    suite = stored_suite(args.real)
    budget = args.budget or max(suite.budgets)
    experiments = suite.experiments(args.real)
    real = read_runs(args.real, budget)
    if real.empty:
        raise SystemExit(f"{args.real}: no complete real run at budget {budget} yet; {first}")
    table = read_runs(args.tables, budget)
    cells, differences = [], {}
    for experiment in experiments:
        problem = Path(experiment.results).name
        cells += [(problem, s) for s in experiment.strategies]
        mine, theirs = args.real / problem / "experiment.json", args.tables / problem / "experiment.json"
        if mine.is_file() and theirs.is_file():
            differences[problem] = definition_differences(json.loads(mine.read_text()), json.loads(theirs.read_text()),
                                                          experiment.strategies)
    result = compare(real, table, cells, differences)
    missing = sorted({p for p, _ in cells} - set(table["problem"]))
    for problem in missing:  # name the command that fills the table side
        rows = result["problem"] == problem
        result.loc[rows, "reason"] += (f" (no {args.tables}/{problem}/tables/runs.csv: run `make suite-tables "
                                       f"RESULTS={args.tables}`, minutes)")
    ranks = rank_agreement(result)
    out = args.out or args.real / "check"
    out.mkdir(parents=True, exist_ok=True)
    result.to_csv(out / "check.csv", index=False)
    ranks.to_csv(out / "ranks.csv", index=False)
    sources = (f"Real: `{args.real}` ({suite.name}: {', '.join(suite.strategies)}, seeds {suite.seeds[0]}..{suite.seeds[-1]}, "
               f"trained; {trained_on([args.real / p for p in sorted({p for p, _ in cells})])}). Tables: `{args.tables}` "
               f"(the same searches answered from the tables on a simulated clock, every seed it holds). Budget {budget}; "
               "success: the search reached the problem's target within the budget; best: the best validation accuracy "
               "of the run's trials (a run without any value counts below every value).")
    (out / "REPORT.md").write_text(report_text(result, ranks, sources, as_markdown(env)))
    print(result[["problem", "strategy", "status", "real_seeds", "table_seeds", "real_success_rate",
                  "table_success_rate", "real_median_best", "table_median_best", "reason"]].to_string(index=False))
    print(ranks.to_string(index=False))
    print(f"verdict: {verdict(result)} -> {out / 'REPORT.md'}")
    return 0 if verdict(result) == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
