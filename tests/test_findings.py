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
