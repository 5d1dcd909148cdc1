"""The suite's findings (lrsearch/reporting/findings.py): score B on resamples, the budget random search needs, and
the sentences generated from a suite folder, on small frames with known answers."""

import math

import numpy as np
import pandas as pd
import pytest

from lrsearch.reporting.findings import budget_to_reach, rank_stability, resampled_scores
from lrsearch.reporting.scores import performance_ratios, problem_times, profile_score


def _frame(times: dict[str, list[float]], problems=("p1", "p2"), budget=4) -> pd.DataFrame:
    """One row per (problem, strategy, seed) at `budget`: the given seconds to the target (inf: missed)."""
    rows = []
    for problem in problems:
        for strategy, values in times.items():
            for seed, t in enumerate(values):
                rows.append({"problem": problem, "strategy": strategy, "seed": seed, "budget": budget,
                             "best_value": 0.5, "search_time_to_target_s": t if math.isfinite(t) else math.nan,
                             "trials_to_target": 1.0 if math.isfinite(t) else math.nan,
                             "reached_target": math.isfinite(t)})
    return pd.DataFrame(rows)


def test_resampled_b_is_the_formula_when_every_seed_agrees_and_ranks_follow_it():
    # identical seeds: every resample gives the same medians, so B is AlgoPerf's B on the data, exactly
    frame = _frame({"fast": [1.0] * 5, "twice": [2.0] * 5, "never": [math.inf] * 5})
    expected = profile_score(performance_ratios(problem_times(frame)))
    resampled = resampled_scores(frame, n_boot=50)
    for row in expected.itertuples():
        got = resampled.loc[resampled["strategy"] == row.strategy, "score_B"]
        assert got.to_numpy() == pytest.approx(row.score_B)
    assert (resampled.loc[resampled["strategy"] == "fast", "rank"] == 1).all()
    stability = rank_stability(resampled).set_index("strategy")
    assert stability.loc["fast", "p_rank_1"] == 1.0 and stability.loc["never", "p_rank_3"] == 1.0
    assert stability.loc["twice", "B_ci_low"] == pytest.approx(2 / 3)  # ratio 2 with r_max 4: (4 - 2) / (4 - 1)


def test_resamples_draw_the_same_seeds_for_every_strategy():
    # two strategies with the same times seed by seed tie in every resample (paired), whatever the spread
    times = list(np.linspace(1.0, 9.0, 7))
    resampled = resampled_scores(_frame({"a": times, "b": times}), n_boot=100, seed=3)
    wide = resampled.pivot(index="resample", columns="strategy", values="score_B")
    assert (wide["a"] == wide["b"]).all()


def test_budget_to_reach_is_the_first_budget_with_nine_seeds_in_ten():
    rows = []
    for budget in (1, 2, 4):
        for seed in range(10):
            reached = seed < {1: 5, 2: 8, 4: 9}[budget]
            rows.append({"problem": "p", "strategy": "random", "seed": seed, "budget": budget,
                         "reached_target": reached})
    reach = budget_to_reach(pd.DataFrame(rows), "random").iloc[0]
    assert reach["budget"] == 4 and reach["reached_share"] == pytest.approx(0.9)
    assert reach["ci_low"] < 0.9 < reach["ci_high"]
    never = budget_to_reach(pd.DataFrame(rows).assign(reached_target=False), "random").iloc[0]
    assert math.isnan(never["budget"]) and never["max_budget"] == 4


def _runs_csv(folder, rows):
    (folder / "tables").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "tables" / "runs.csv", index=False)


def _run(strategy, seed, ttt, best=0.5, budget=16):
    return {"strategy": strategy, "budget": budget, "seed": seed, "run_status": "complete",
            "search_time_to_target_s": ttt, "reached_target": not math.isnan(ttt), "best_val_acc": best}


def test_contenders_beside_random_on_the_table(tmp_path):
    from lrsearch.reporting.findings import contenders_sentence, contenders_table

    real, tables = tmp_path / "contenders", tmp_path / "tables"
    # p1: schedulefree 9 of 10 at 40 s, prodigy 3 of 10; the table's random search a median 60 s (seeds 10..110 s)
    _runs_csv(real / "p1", [_run("schedulefree-adamw", s, 40.0 if s < 9 else math.nan) for s in range(10)]
              + [_run("prodigy", s, 30.0 if s < 3 else math.nan) for s in range(10)])
    _runs_csv(tables / "p1", [_run("random", s, 10.0 + 100 * s / 99) for s in range(100)]
              + [_run("random", 0, 1.0, budget=4)])  # another budget: not random's at the largest
    # p2: schedulefree 10 of 10; random on the table misses on more than half the seeds: infinite median
    _runs_csv(real / "p2", [_run("schedulefree-adamw", s, 20.0) for s in range(10)]
              + [_run("prodigy", s, math.nan) for s in range(10)])
    _runs_csv(tables / "p2", [_run("random", s, 5.0 if s < 40 else math.nan) for s in range(100)])
    table = contenders_table(real, tables).set_index(["problem", "strategy"])
    row = table.loc[("p1", "schedulefree-adamw")]
    assert (row["seeds"], row["reached"], row["median_time_to_target_s"]) == (10, 9, 40.0)
    assert row["random_table_median_time_to_target_s"] == pytest.approx(60.0) and row["random_table_seeds"] == 100
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.5958, 0.9821), abs=1e-4)  # Wilson, 9 of 10
    assert table.loc[("p1", "prodigy"), "median_time_to_target_s"] == math.inf  # 7 misses of 10
    assert table.loc[("p2", "schedulefree-adamw"), "random_table_median_time_to_target_s"] == math.inf
    sentence = contenders_sentence(table.reset_index(), str, tmp_path / "c.csv")
    assert "p1: schedulefree-adamw 9 of 10 (90% [60%, 98%]), median 40 s against random search's 60 s" in sentence
    assert "schedulefree-adamw reaches it on 9 seeds of 10 on all 2 workloads measured" in sentence
    worse = table.reset_index()
    worse.loc[worse["strategy"] == "schedulefree-adamw", "reach_share"] = 0.8
    assert "none reaches it on 9 seeds of 10 on all 2 workloads measured" in contenders_sentence(worse, str,
                                                                                   tmp_path / "c.csv")


def test_the_tables_check_sentence_names_its_verdict_and_failing_cells(tmp_path):
    from lrsearch.reporting.findings import tables_check_sentence

    assert tables_check_sentence(tmp_path, str) is None  # no check yet: no sentence, never a guess
    cells = pd.DataFrame([
        {"problem": "nobn-lr", "strategy": "random", "status": "pass", "reason": "", "real_seeds": 10,
         "real_success_rate": 1.0, "table_success_rate": 0.99, "real_median_best": 0.46, "table_median_best": 0.457},
        {"problem": "nobn-lr-wd-mom", "strategy": "optuna-tpe", "status": "fail", "reason": "intervals apart: median best",
         "real_seeds": 10, "real_success_rate": 0.9, "table_success_rate": 0.95, "real_median_best": 0.43,
         "table_median_best": 0.441}])
    cells.to_csv(tmp_path / "check.csv", index=False)
    pd.DataFrame([{"scope": "all cells", "cells": 2, "kendall_tau": 1.0, "p_value": 1.0}]).to_csv(
        tmp_path / "ranks.csv", index=False)
    sentence = tables_check_sentence(tmp_path, str)
    assert sentence.startswith("**The tables against real runs: FAIL**") and "1 of 2 cells pass" in sentence
    assert "nobn-lr-wd-mom / optuna-tpe fails (intervals apart: median best: success 90% real against 95%" in sentence
    assert "Kendall's tau of the two rankings by median best accuracy 1.00 over 2 cells" in sentence
    assert "the largest gap, nobn-lr-wd-mom / optuna-tpe: median best 0.430 real against 0.441 on the table;" in sentence
    cells.loc[1, "status"] = "incomplete"
    cells.to_csv(tmp_path / "check.csv", index=False)
    assert "INCOMPLETE" in tables_check_sentence(tmp_path, str) and "1 not yet judged" in tables_check_sentence(tmp_path, str)


def test_the_cpu_to_gpu_check_reads_the_gpu_tables_suite_when_there_is_one(tmp_path):
    """Kendall's tau of two rankings by B: the same order gives 1, the reverse -1 (scipy's tau-b), on the
    strategies both suites ran; without the GPU suite's scores, or with fewer than 3 in common, no check."""
    import json

    from lrsearch.reporting.findings import gpu_table_agreement

    cpu = pd.DataFrame({"strategy": ["a", "b", "c", "d"], "score_B_time": [0.9, 0.7, 0.5, 0.1]})
    scores = tmp_path / "suite-gpu-table" / "scores"
    assert gpu_table_agreement(cpu, scores / "score.csv") is None
    scores.mkdir(parents=True)
    (tmp_path / "suite-gpu-table" / "suite.json").write_text(json.dumps({"seeds": list(range(100))}))
    pd.DataFrame({"strategy": ["a", "b", "c", "x"], "score_B_time": [0.8, 0.6, 0.2, 1.0]}).to_csv(
        scores / "score.csv", index=False)
    same = gpu_table_agreement(cpu, scores / "score.csv")
    assert same["tau"] == pytest.approx(1.0) and same["strategies"] == ["a", "b", "c"] and same["gpu_seeds"] == 100
    pd.DataFrame({"strategy": ["a", "b", "c"], "score_B_time": [0.1, 0.5, 0.6]}).to_csv(scores / "score.csv",
                                                                                      index=False)
    assert gpu_table_agreement(cpu, scores / "score.csv")["tau"] == pytest.approx(-1.0)
    pd.DataFrame({"strategy": ["a", "x"], "score_B_time": [0.1, 0.5]}).to_csv(scores / "score.csv", index=False)
    assert gpu_table_agreement(cpu, scores / "score.csv") is None


def test_the_committed_suite_report_opens_with_four_to_eight_findings():
    """The issue's rule for the front page of the evidence: 4 to 8 findings, the CPU -> GPU check among them."""
    from pathlib import Path

    report = (Path(__file__).resolve().parents[1] / "results" / "suite-cpu-tables" / "REPORT.md").read_text()
    section = report.split("## Findings", 1)[1].split("\n## ", 1)[0]
    findings = [line for line in section.splitlines() if line.startswith("- **")]
    assert 4 <= len(findings) <= 8, [f[:60] for f in findings]
    assert any(f.startswith("- **CPU against GPU**") for f in findings)
    assert any(f.startswith("- **Not resolved**") for f in findings)


def test_the_slow_tools_sentence_names_the_best_of_them_against_random_on_the_same_seeds(tmp_path):
    import json

    from lrsearch.reporting.findings import slow_tools_sentence

    root = tmp_path / "suite-cpu-tables-slow"
    assert slow_tools_sentence(root, str) is None
    (root / "scores").mkdir(parents=True)
    (root / "suite.json").write_text(json.dumps({"seeds": list(range(20))}))
    pd.DataFrame({"strategy": ["optuna-tpe", "smac-bo", "random", "hebo"],
                  "score_B_time": [0.9, 0.5, 0.6, 0.8]}).to_csv(root / "scores" / "score.csv", index=False)
    pd.DataFrame({"strategy": ["optuna-tpe", "smac-bo", "random", "hebo"], "B_ci_low": [0.8, 0.4, 0.5, 0.7],
                  "B_ci_high": [1.0, 0.6, 0.65, 0.9]}).to_csv(root / "scores" / "rank_stability.csv", index=False)
    text = slow_tools_sentence(root, lambda path: path.name)
    # the references (random, optuna-tpe) are not among the slow tools; hebo's interval lies above random's
    assert "(smac-bo, hebo;" not in text and "(hebo, smac-bo; 20 seeds" in text
    assert ("hebo scores best, B 0.80 [0.70, 0.90] against random search's 0.60 [0.50, 0.65] and optuna-tpe's "
            "0.90 [0.80, 1.00] on those seeds, apart from random's (score.csv)") in text
