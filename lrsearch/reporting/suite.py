"""A suite's REPORT.md: every problem's summary, side by side, read from each problem's tables.

Whether a problem separates the strategies is read from the bootstrap intervals each problem's summary
already holds: two strategies are told apart on a problem when their 95% intervals of the median best
validation value, or of the median search time-to-target, do not overlap. The cross-problem scores
(AlgoPerf's performance profiles and score B, CARP-S's normalised regret and ranks with a critical-difference
test: `lrsearch.reporting.scores`) are the "Scores" section, its tables and figures in `<suite>/scores/`.

A real suite and its search on the tables are found beside each other: `<real>` and `<real>-tables` (as
results/suite-cpu and results/suite-cpu-tables); where both hold a problem, the real suite's report has a table of
real against the tables' scores. Elsewhere pass the other folder: `build_suite_report(..., tables=...)`.
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
from pathlib import Path

import pandas as pd

from lrsearch.reporting.report import _fmt, build_report, clock_note, seed_list
from lrsearch.reporting.score_report import has_tables, scorable, sibling, suite_scores_section
from lrsearch.reporting.scores import DEFAULT_ANCHOR


def separated_pairs(summary: pd.DataFrame, low: str, high: str) -> list[tuple[str, str]]:
    """(better, worse) strategy pairs whose [low, high] intervals do not overlap, per budget; NaN ends (an
    interval that could not be formed) never separate."""
    pairs = []
    for _, group in summary.groupby("budget"):
        rows = group[["strategy", low, high]].dropna().itertuples(index=False)
        for a, b in itertools.combinations(rows, 2):
            if a[2] < b[1]:
                pairs.append((a[0], b[0]) if low.startswith("ttt") else (b[0], a[0]))
            elif b[2] < a[1]:
                pairs.append((b[0], a[0]) if low.startswith("ttt") else (a[0], b[0]))
    return pairs


def _finite_ttt(summary: pd.DataFrame) -> pd.DataFrame:
    """Time-to-target intervals where they are finite (a seed that missed makes the upper end infinite)."""
    s = summary.copy()
    s.loc[~s["ttt_ci_high_s"].map(lambda v: isinstance(v, float) and math.isfinite(v)), "ttt_ci_high_s"] = math.nan
    return s


def problem_row(folder: Path) -> dict:
    """One problem's line in the suite: workload, space, target, runs, and how well it separates strategies."""
    config = json.loads((folder / "experiment.json").read_text())
    summary = pd.read_csv(folder / "tables" / "summary.csv")
    runs = pd.read_csv(folder / "tables" / "runs.csv")
    acc_pairs = separated_pairs(summary, "acc_ci_low", "acc_ci_high")
    ttt_pairs = separated_pairs(_finite_ttt(summary), "ttt_ci_low_s", "ttt_ci_high_s")
    n = len(summary)
    best = summary.sort_values("rank").iloc[0] if n else None
    return {"problem": folder.name, "workload": config["workload"]["spec"], "space": " + ".join(config["space"]),
            "target": config["workload"]["target"], "strategies": n, "runs": len(runs),
            "complete": int((runs["run_status"] == "complete").sum()),
            "planned": len(config["strategies"]) * len(config["budgets"]) * len(config["seeds"]),
            "train_s": float(runs["train_s"].sum()), "trial_wall_s": float(runs["wall_s"].sum()),
            "success_rate": float(runs["reached_target"].mean()) if len(runs) else math.nan,
            "pairs": n * (n - 1) // 2, "separated_by_value": len(set(acc_pairs)),
            "separated_by_ttt": len(set(ttt_pairs)),
            "rank_1": best["strategy"] if best is not None else "",
            "examples": "; ".join(f"{a} > {b}" for a, b in (acc_pairs + ttt_pairs)[:3])}


def _wall_span(folders: list[Path]) -> tuple[datetime.datetime, datetime.datetime] | None:
    """When the suite's first run started and its last finished, from the stores."""
    from lrsearch.experiment.store import Store

    starts, ends = [], []
    for folder in folders:
        store = Store(folder / "results.sqlite", create=False)
        try:
            runs = store.runs_frame()
        finally:
            store.close()
        starts += runs["started_at"].dropna().tolist()
        ends += runs["finished_at"].dropna().tolist()
    if not starts or not ends:
        return None
    utc = datetime.timezone.utc
    return datetime.datetime.fromtimestamp(min(starts), utc), datetime.datetime.fromtimestamp(max(ends), utc)


def build_suite_report(suite, root: Path, rebuild: bool = True, tables: Path | None = None,
                       anchor: str = DEFAULT_ANCHOR, calibration: str | Path | None = None) -> Path:
    """REPORT.md in the suite's folder (and each problem's own, rebuilt from its store when `rebuild`), with the
    Scores section; `tables`: the suite's search on its tables to compare with (default `<root>-tables`, if there);
    `anchor`: the strategy whose median trial anchors the normalised regret (`scores.problem_anchors`);
    `calibration` (default: the suite's): every problem's seconds on the cost clock (report.clock_note)."""
    root = Path(root)
    folders = [Path(e.results) for e in suite.experiments(root) if (Path(e.results) / "results.sqlite").exists()]
    calibration = calibration or suite.calibration
    if rebuild:
        for folder in folders:
            build_report(folder, calibration=calibration)
    rows = [problem_row(f) for f in folders if (f / "tables" / "summary.csv").exists()]
    table = pd.DataFrame(rows)
    root.mkdir(parents=True, exist_ok=True)
    table.to_csv(root / "problems.csv", index=False)  # before the findings, which read it
    span = _wall_span(folders)
    lines = [f"# {suite.name}", "", suite.description, "",
             f"{len(rows)} problems (workload x search space) of {len(suite.experiments(root))}; strategies "
             f"{', '.join(suite.strategies)}; budgets {suite.budgets}; seeds {seed_list(suite.seeds)}. Each problem's own "
             "report (its tables, figures, where its numbers come from: command, date, device, commit, library "
             "versions) is in its folder.", ""]
    from lrsearch.experiment.calibration import Calibration

    header_end = len(lines)
    executor = suite.executor.model_dump()
    lines += ["## Clock", "", clock_note(Calibration.load(calibration) if calibration else None,
                                         executor if executor["kind"] == "simulated" else None), ""]
    scored = [f for f in folders if has_tables(f, ("runs", "trials"))]
    tables_root = Path(tables) if tables is not None else sibling(root)
    replays = [tables_root / f.name for f in scored if scorable(tables_root / f.name)] if tables_root != root else []
    findings: list[str] = []
    scores = suite_scores_section(scored, root, replays, suite.strategies, anchor=anchor, findings=findings)
    lines[header_end:header_end] = findings  # the answer first
    lines += scores
    lines += ["## Problems", "",
             "Per problem: the runs' summed training seconds and trial wall-clock, the share of runs that reached the "
             "target, and how many of the strategy pairs are told apart: their bootstrap 95% intervals of the "
             "median best validation value (`separated_by_value`), or of the median search time-to-target "
             "(`separated_by_ttt`; only where both intervals are finite), do not overlap.", ""]
    if len(table):
        lines += [_fmt(table, ["problem", "workload", "space", "target", "strategies", "complete", "planned", "train_s",
                               "trial_wall_s", "success_rate", "pairs", "separated_by_value", "separated_by_ttt",
                               "rank_1", "examples"]), "",
                  f"In all: {table['complete'].sum()} of {table['planned'].sum()} planned runs complete "
                  f"({table['runs'].sum()} begun), {table['train_s'].sum() / 60:.0f} min of training, "
                  f"{table['trial_wall_s'].sum() / 60:.0f} min of trial wall-clock (evaluations, model building "
                  "and data included; the strategies' own overhead aside).", ""]
        if span:
            lines += [f"Wall-clock: the first run started {span[0]:%Y-%m-%d %H:%M} UTC, the last finished {span[1]:%H:%M} "
                      f"UTC: {(span[1] - span[0]).total_seconds() / 60:.0f} min for every worker together (see each "
                      "problem's report for the workers and the machine).", ""]
    for folder in folders:
        summary_path = folder / "tables" / "summary.csv"
        if not summary_path.exists():
            continue
        summary = pd.read_csv(summary_path)
        lines += [f"## {folder.name}", "", f"[report]({folder.name}/REPORT.md)", "",
                  _fmt(summary, ["rank", "strategy", "budget", "n_seeds", "median_time_to_target_s", "ttt_ci_low_s",
                                 "ttt_ci_high_s", "success_rate", "median_best_val_acc", "acc_ci_low", "acc_ci_high"]), ""]
        notes_path = folder / "tables" / "space_notes.csv"
        if notes_path.exists():
            notes = pd.read_csv(notes_path)
            lines += [f"- {n}" for n in notes["note"].drop_duplicates()] + [""]
    lines += [f"Report built {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} from the problems' "
              "stores (`lrsearch report` on the suite file).", ""]
    path = root / "REPORT.md"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    table.to_csv(root / "problems.csv", index=False)
    return path
