"""Cross-problem scores (lrsearch.reporting.scores): AlgoPerf's performance profiles and score B on a hand-made
example, rank averaging with ties, normalised regret and its stratified-bootstrap IQM, the Friedman-Nemenyi call,
and the suite reports' Scores section built from a copy of the committed suite."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrsearch.reporting import scores as S

ROOT = Path(__file__).resolve().parents[1]
INF = math.inf


def _frame(rows: list[tuple]) -> pd.DataFrame:
    """Budget-frame rows (problem, strategy, seed, seconds or inf); trials-to-target = seconds / 10 (a test of the
    trials column itself gives them apart: test_scores_by_trials_use_trials_to_target)."""
    out = []
    for problem, strategy, seed, t in rows:
        reached = math.isfinite(t)
        out.append({"problem": problem, "strategy": strategy, "seed": seed, "budget": 6, "best_value": 0.5,
                    "search_time_to_target_s": t if reached else math.nan,
                    "trials_to_target": t / 10 if reached else math.nan, "reached_target": reached})
    return pd.DataFrame(out, columns=S.FRAME_COLUMNS)


# Per problem and strategy, three seeds' search times (inf: the target missed):
#   p1: A [10, 12, inf] -> median 12 (AlgoPerf's np.median with inf: the middle seed), B [20, inf, inf] -> inf,
#       C [24, 24, 30] -> 24.                       ratios: A 1, B inf (missed), C 2
#   p2: A 10, B 5, C 30 (every seed).               ratios: A 2, B 1, C 6 > 4 -> inf
#   p3: A 40, B 10, C 15.                           ratios: A 4 (counts: <= r_max), B 1, C 1.5
#   p4: nobody reaches it.                          ratios: inf for all, and p4 stays in the denominator
HAND = {("p1", "A"): [10, 12, INF], ("p1", "B"): [20, INF, INF], ("p1", "C"): [24, 24, 30],
        ("p2", "A"): [10] * 3, ("p2", "B"): [5] * 3, ("p2", "C"): [30] * 3,
        ("p3", "A"): [40] * 3, ("p3", "B"): [10] * 3, ("p3", "C"): [15] * 3,
        ("p4", "A"): [INF] * 3, ("p4", "B"): [INF] * 3, ("p4", "C"): [INF] * 3}


def _hand_frame() -> pd.DataFrame:
    return _frame([(p, s, seed, t) for (p, s), ts in HAND.items() for seed, t in enumerate(ts)])


def test_performance_profile_and_score_b_on_a_hand_made_example():
    ratios = S.performance_ratios(S.problem_times(_hand_frame()))
    r = ratios.set_index(["problem", "strategy"])["ratio"]
    assert r["p1", "A"] == 1 and r["p1", "B"] == INF and r["p1", "C"] == 2
    assert r["p2", "C"] == INF and r["p3", "A"] == 4 and r["p3", "C"] == 1.5
    assert (r.loc["p4"] == INF).all()
    # rho, by hand, over the 4 problems: A: 1/4 on [1, 2), 2/4 on [2, 4), 3/4 at 4; B: 2/4 from 1;
    # C: 0 on [1, 1.5), 1/4 on [1.5, 2), 2/4 on [2, 4]
    profile = S.performance_profile(ratios)
    steps = {s: list(zip(g["tau"], g["rho"])) for s, g in profile.groupby("strategy")}
    assert steps["A"] == [(1, 0.25), (2, 0.5), (4, 0.75)]
    assert steps["B"] == [(1, 0.5), (4, 0.5)]
    assert steps["C"] == [(1, 0), (1.5, 0.25), (2, 0.5), (4, 0.5)]
    # B = 1/3 x integral over [1, 4]: A (1/4 x 1 + 2/4 x 2) / 3 = 5/12; B (2/4 x 3) / 3 = 1/2;
    # C (1/4 x 0.5 + 2/4 x 2) / 3 = 3/8
    score = S.profile_score(ratios).set_index("strategy")
    assert score.loc["A", "score_B"] == pytest.approx(5 / 12)
    assert score.loc["B", "score_B"] == pytest.approx(1 / 2)
    assert score.loc["C", "score_B"] == pytest.approx(3 / 8)
    assert list(score.index) == ["B", "A", "C"] and score.loc["A", "problems_within_r_max"] == 3
    # AlgoPerf's trapezoid rule on a fine grid of taus tends to the exact integral
    taus = np.linspace(1, 4, 30001)
    for strategy, g in ratios.groupby("strategy"):
        rho = (g["ratio"].to_numpy()[None, :] <= taus[:, None]).mean(axis=1)
        assert np.trapezoid(rho, taus) / 3 == pytest.approx(score.loc[strategy, "score_B"], abs=1e-3)


def test_a_problems_time_is_the_median_with_misses_as_inf():
    times = S.problem_times(_frame([("p", "A", 0, 10), ("p", "A", 1, INF),  # even count: (10 + inf) / 2
                                    ("p", "B", 0, 10), ("p", "B", 1, 30), ("p", "B", 2, INF),
                                    ("p", "C", 0, 10), ("p", "C", 1, INF), ("p", "C", 2, INF)]))
    t = times.set_index("strategy")["time"]
    assert t["A"] == INF and t["B"] == 30 and t["C"] == INF
    assert times.set_index("strategy").loc["B", "n_reached"] == 2


def test_scores_by_trials_use_trials_to_target():
    # A reaches the target sooner in seconds (10 s against 20 s) but after more trials (5 against 1): by time A's
    # ratio is 1 and B's 2; by trials B's is 1 and A's 5 (> r_max 4: missed). B = integral of rho over [1, 4] / 3:
    # by time A 1, B 2/3; by trials A 0, B 1. A code that read one column for both scores gets one of them wrong.
    frame = pd.DataFrame([{"problem": "p", "strategy": s, "seed": seed, "budget": 6, "best_value": 0.5,
                           "search_time_to_target_s": t, "trials_to_target": n, "reached_target": True}
                          for s, t, n in (("A", 10.0, 5), ("B", 20.0, 1)) for seed in range(3)],
                         columns=S.FRAME_COLUMNS)
    scores = S.compute_scores(frame, pd.DataFrame(columns=["problem", "best_any", "anchor"]))
    by = scores["score"].set_index("strategy")
    assert by.loc["A", "score_B_time"] == pytest.approx(1.0) and by.loc["B", "score_B_time"] == pytest.approx(2 / 3)
    assert by.loc["A", "score_B_trials"] == pytest.approx(0.0) and by.loc["B", "score_B_trials"] == pytest.approx(1.0)


def test_ranks_average_ties_and_a_range_test_keeps_its_best(tmp_path):
    frame = pd.DataFrame([("p", s, seed, 1, v) for seed, values in enumerate([(0.5, 0.5, 0.3), (0.2, 0.4, 0.4)])
                          for s, v in zip("ABC", values)], columns=["problem", "strategy", "seed", "budget", "best_value"])
    ranks = S.average_ranks(frame).set_index("strategy")["mean_rank"]
    # seed 0: A and B tie for 1-2 (1.5 each), C 3; seed 1: A 3, B and C tie for 1-2
    assert ranks.to_dict() == {"A": 2.25, "B": 1.5, "C": 2.25}

    # a problem folder's tables: random trains 3 trials, the range test 2 (its test at the floor, then one run)
    folder = tmp_path / "prob"
    (folder / "tables").mkdir(parents=True)
    trials = [("random", i, "train", "ok", v) for i, v in enumerate([0.3, 0.5, 0.4])]
    trials += [("lr-range-clr", 0, "range_test", "ok", 0.0), ("lr-range-clr", 1, "train", "ok", 0.45)]
    pd.DataFrame([dict(zip(["strategy", "trial_index", "kind", "status", "value"], t), budget=3, seed=0)
                  for t in trials]).to_csv(folder / "tables" / "trials.csv", index=False)
    pd.DataFrame([{"strategy": "random", "budget": 3, "seed": 0, "run_status": "complete", "reached_target": True,
                   "search_time_to_target_s": 7.0, "trials_to_target": 2},
                  {"strategy": "lr-range-clr", "budget": 3, "seed": 0, "run_status": "complete",
                   "reached_target": False, "search_time_to_target_s": math.nan, "trials_to_target": math.nan}]
                 ).to_csv(folder / "tables" / "runs.csv", index=False)
    got = S.suite_frame([folder]).set_index(["strategy", "budget"])
    assert got.loc["lr-range-clr", "best_value"].tolist() == [0.0, 0.45, 0.45]  # carried forward to budget 3
    assert got.loc["random", "best_value"].tolist() == [0.3, 0.5, 0.5]
    assert math.isnan(got.loc[("random", 1), "search_time_to_target_s"])  # reached at trial 2, not within 1
    assert got.loc[("random", 2), "search_time_to_target_s"] == 7.0 and got.loc[("random", 3), "trials_to_target"] == 2
    r = S.average_ranks(got.reset_index()).set_index(["budget", "strategy"])["mean_rank"]
    assert r[1, "random"] == 1 and r[2, "random"] == 1 and r[3, "lr-range-clr"] == 2


def test_regret_is_normalised_between_the_best_trial_and_the_median_random_trial(tmp_path):
    folder = tmp_path / "prob"
    (folder / "tables").mkdir(parents=True)
    # random's trials: 0.1, 0.2, 0.3 and a diverged one (0.9 recorded, 0 as a search sees it): anchor =
    # median(0, 0.1, 0.2, 0.3) = 0.15; the best any usable trial reached: 0.5 (tpe's)
    pd.DataFrame({"strategy": ["random"] * 4 + ["tpe"], "kind": "train", "value": [0.1, 0.2, 0.3, 0.9, 0.5],
                  "status": ["ok", "ok", "ok", "diverged", "ok"]}).to_csv(folder / "tables" / "trials.csv", index=False)
    anchors = S.problem_anchors([folder])
    assert anchors.loc[0, "anchor"] == pytest.approx(0.15) and anchors.loc[0, "best_any"] == 0.5
    flat = pd.DataFrame({"problem": "flat", "best_any": [0.4], "anchor": [0.4]})  # no scale: left out
    runs = pd.DataFrame({"problem": ["prob"] * 3 + ["flat"], "strategy": ["tpe", "random", "grid", "tpe"],
                         "seed": 0, "budget": 6, "best_value": [0.5, 0.325, 0.1, 0.4]})
    regret = S.normalised_regret(runs, pd.concat([anchors, flat])).set_index("strategy")
    assert "flat" not in set(regret["problem"])
    assert regret.loc["tpe", "regret"] == 0
    assert regret.loc["random", "regret"] == pytest.approx(0.5)  # (0.5 - 0.325) / (0.5 - 0.15)
    assert regret.loc["grid", "regret_raw"] == pytest.approx(0.4 / 0.35) and regret.loc["grid", "regret"] == 1
    assert regret["clipped"].tolist() == [False, False, True]


def test_iqm_and_its_stratified_bootstrap():
    assert S.iqm(np.arange(8.0)) == 3.5  # the middle half: 2, 3, 4, 5
    # two problems, each constant: every stratified resample keeps the 50/50 mix, so the interval has no width
    # (resampling the pooled values would vary the mix)
    values, strata = np.r_[np.full(10, 0.2), np.full(10, 0.6)], np.repeat(["a", "b"], 10)
    assert S.stratified_bootstrap_iqm(values, strata, n_boot=500) == pytest.approx((0.4, 0.4, 0.4))
    # under 10 seeds in a problem: the IQM, no interval (a percentile interval over fewer does not hold its level)
    value, low, high = S.stratified_bootstrap_iqm(values[:-1], strata[:-1], n_boot=500)
    assert value == pytest.approx(S.iqm(values[:-1]))
    assert np.isnan(low) and np.isnan(high)
    rng = np.random.default_rng(1)
    value, low, high = S.stratified_bootstrap_iqm(rng.normal(0.3, 0.05, 40), np.repeat(["a", "b"], 20), n_boot=2000)
    assert low < value < high and high - low < 0.06


def _blocks(means: dict[str, float], n_problems: int = 8, n_seeds: int = 3, noise: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"problem": f"p{p}", "seed": s, "strategy": k, "budget": 6,
                          "best_value": m + rng.normal(0, noise)}
                         for p in range(n_problems) for s in range(n_seeds) for k, m in means.items()])


def test_friedman_nemenyi_tells_a_clearly_better_strategy_apart_and_equal_ones_not():
    better = S.friedman_nemenyi(_blocks({"good": 0.9, "b": 0.5, "c": 0.5, "d": 0.5}))
    assert better.omnibus == "friedman" and better.posthoc == "nemenyi" and better.alpha == 0.05
    assert better.significant and better.mean_ranks.index[0] == "good" and better.mean_ranks["good"] == 1
    pairs = better.differing_pairs()
    assert {("good", x) for x in "bcd"} <= set(pairs) and not any(a != "good" for a, _ in pairs)
    assert better.groups()[0] == ["good"]
    same = S.friedman_nemenyi(_blocks({"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5}))
    assert not same.significant and same.differing_pairs() == [] and len(same.groups()) == 1
    tied = S.friedman_nemenyi(_blocks({"a": 0.5, "b": 0.5, "c": 0.5}, noise=0.0))  # every block a tie
    assert tied.pvalue == 1.0 and tied.differing_pairs() == [] and set(tied.mean_ranks) == {2.0}
    seed_mean = S.friedman_nemenyi(_blocks({"good": 0.9, "b": 0.5, "c": 0.5}), seed_mean=True)
    assert seed_mean.n_blocks == 8 and "mean over seeds" in seed_mean.blocks
    assert S.friedman_nemenyi(_blocks({"a": 0.5, "b": 0.6}, n_problems=1)) is None  # 3 blocks: too few
    two = S.friedman_nemenyi(_blocks({"a": 0.5, "b": 0.9}))  # two strategies: autorank's Wilcoxon test
    assert two.omnibus == "wilcoxon" and two.differing_pairs() == [("b", "a")] and two.groups() == [["b"], ["a"]]
    table = S.friedman_table([better, same])
    assert table["rejects"].tolist() == [True, False] and "good > b" in table.loc[0, "differing_pairs"]


def _suite_copy(tmp_path: Path) -> Path:
    """The committed real suite copied into tmp_path (its stores and tables, not its figures and reports)."""
    shutil.copytree(ROOT / "results" / "suite-cpu", tmp_path / "suite-cpu",
                    ignore=shutil.ignore_patterns("figures", "REPORT.md", "*.log", "optuna.sqlite3", "curves.*"))
    return tmp_path / "suite-cpu"


def test_the_suite_report_has_a_scores_section_with_its_tables_and_figures(tmp_path):
    from lrsearch.experiment.suite import stored_suite
    from lrsearch.reporting.suite import build_suite_report

    root = _suite_copy(tmp_path)
    suite = stored_suite(root)  # written before the replay was retired: its `replay` keys are left out
    report = build_suite_report(suite, root, rebuild=False).read_text()
    section = report[report.index("## Scores"):]
    assert report.index("## Scores") < report.index("## Problems")  # the report opens with the answer
    for words in ("Score B", "r_max = 4", "5,000 stratified bootstrap", "Friedman test, then Nemenyi",
                  "alpha = 0.05", "median value of one random-search trial", "(problem, seed) (n = 12)"):  # 4 first spaces x 3 seeds: copies left out
        assert words in section, words
    assert "Real runs against the tables' scores" not in report  # no search on the tables beside this copy
    score = pd.read_csv(root / "scores" / "score.csv")
    assert len(score) == len(suite.strategies) and score["score_B_time"].between(0, 1).all()
    # 3 seeds a problem: the IQM, but no bootstrap interval (under 10 seeds), and the report says so
    assert score["iqm_regret"].between(0, 1).all() and score["iqm_ci_low"].isna().all()
    assert "over 3 seeds a problem; none under 10 seeds" in section and "(no interval: under 10 seeds)" in section
    for name in ("profile_time", "profile_trials", "ranks", "critical_difference", "regret_iqm"):
        assert (root / "scores" / f"{name}.png").stat().st_size > 10_000 and f"(scores/{name}.png)" in section
    ranks = pd.read_csv(root / "scores" / "ranks.csv")
    assert sorted(ranks["budget"].unique()) == [1, 2, 3, 4, 5, 6] and set(ranks["blocks"]) == {24}


TABLES_SUITE = """
name = "suite-cpu-tables"
strategies = ["grid", "random", "optuna-tpe"]
budgets = [6]
seeds = 5
calibration = "{root}/results/calibration"
[executor]
kind = "simulated"
[options.optuna-tpe]
n_startup_trials = 3
[[problems]]
task = "nobn"
tables = {{ lr = "{root}/results/tables/nobn" }}
[problems.spaces.lr]
lr = {{ low = 1e-3, high = 1.0, log = true }}
[[problems]]
task = "caffe-cpu"
tables = {{ lr = "{root}/results/tables/caffe-cpu" }}
[problems.spaces.lr]
lr = {{ low = 1e-4, high = 0.3, log = true }}
"""


def test_the_suite_report_compares_the_real_suite_with_its_search_on_the_tables_beside_it(tmp_path):
    """Two of the real suite's problems searched on their tables (3 strategies, its budget, 5 seeds) into
    `<real>-tables`, where the real suite's report finds them: its scores and the tables', recomputed on what the
    two share, side by side."""
    from lrsearch.cli import main
    from lrsearch.experiment.suite import stored_suite
    from lrsearch.reporting.suite import build_suite_report

    real = _suite_copy(tmp_path)
    config = tmp_path / "tables.toml"
    config.write_text(TABLES_SUITE.format(root=ROOT))
    assert main(["run", str(config), "--results", str(tmp_path / "suite-cpu-tables")]) == 0
    suite = stored_suite(real)
    report = build_suite_report(suite, real, rebuild=False).read_text()  # finds <real>-tables beside it
    section = report[report.index("### Real runs against the tables' scores"):]
    assert report.index("## Scores") < report.index("### Real runs against the tables' scores") < report.index("## Problems")
    assert f"`{tmp_path / 'suite-cpu-tables'}`" in section
    assert "2 problems (caffe-cpu-lr, nobn-lr), 3 strategies, budget 6" in section
    # how far the orders agree, and that the committed real suite ran under other definitions (targets 0.33 and
    # 0.16 before the workloads left the noise; the tables' 0.43 and 0.235): no check of the tables
    assert "Kendall's tau of the two orders by B:" in section and "(p = " in section
    assert "targets, real against tables: caffe-cpu-lr 0.16 against 0.235; nobn-lr 0.33 against 0.43" in section
    assert "Over 3 real seeds a real order is mostly noise." in section
    both = pd.read_csv(real / "scores" / "real_vs_replay.csv")
    assert set(both["strategy"]) == {"grid", "random", "optuna-tpe"}
    assert both["score_B_time_gap"].to_numpy() == pytest.approx(both["score_B_time_replay"] - both["score_B_time_real"])


def test_a_self_tuning_run_stands_for_every_space_of_its_workload(tmp_path):

    from lrsearch.reporting.scores import _self_tuning_in_every_space

    for problem in ("nobn-lr", "nobn-lr-wd-mom", "finetune-lr"):
        (tmp_path / problem).mkdir()
        (tmp_path / problem / "experiment.json").write_text(json.dumps({"task": {"name": problem.split("-")[0]}}))
    frame = pd.DataFrame({"problem": ["nobn-lr", "nobn-lr-wd-mom", "nobn-lr", "finetune-lr"],
                          "strategy": ["random", "random", "prodigy", "random"], "seed": 0, "budget": 1,
                          "best_value": [0.3, 0.31, 0.35, 0.6], "search_time_to_target_s": 1.0,
                          "trials_to_target": 1.0, "reached_target": True})
    out = _self_tuning_in_every_space(frame, [tmp_path / p for p in ("nobn-lr", "nobn-lr-wd-mom", "finetune-lr")])
    prodigy = out[out["strategy"] == "prodigy"].set_index("problem")["best_value"].to_dict()
    assert prodigy == {"nobn-lr": 0.35, "nobn-lr-wd-mom": 0.35}  # copied within its workload, not to finetune


def test_a_replays_committed_anchors_row_equals_the_one_from_its_trials(tmp_path):
    """A clean clone has a replay's anchors.csv, not its trials.parquet: the row read back equals the row computed
    from the per-trial table (here a hand-made one: median random trial 0.3, a diverged one at the floor 0)."""
    from lrsearch.reporting.scores import problem_anchors, write_anchors

    folder = tmp_path / "p"
    (folder / "tables").mkdir(parents=True)
    pd.DataFrame({"strategy": ["random", "random", "random", "optuna-tpe"], "status": ["ok", "ok", "diverged", "ok"],
                  "value": [0.3, 0.5, 0.9, 0.7]}).to_csv(folder / "tables" / "trials.csv", index=False)
    computed = problem_anchors([folder])
    assert computed.loc[0, "anchor"] == pytest.approx(0.3) and computed.loc[0, "best_any"] == pytest.approx(0.7)
    write_anchors(folder)
    (folder / "tables" / "trials.csv").unlink()
    pd.testing.assert_frame_equal(problem_anchors([folder]), computed)


def _three_strategy_problem(folder: Path) -> Path:
    """One problem, seed 0, budget 3: random's trials 0.1, 0.2, 0.3 (median 0.2), grid's 0.3, 0.4 (median 0.35),
    optuna-tpe's 0.5 (the best any trial reached)."""
    (folder / "tables").mkdir(parents=True)
    values = {"random": [0.1, 0.2, 0.3], "grid": [0.3, 0.4], "optuna-tpe": [0.5]}
    pd.DataFrame([{"strategy": s, "trial_index": i, "kind": "train", "status": "ok", "value": v, "budget": 3, "seed": 0}
                  for s, vs in values.items() for i, v in enumerate(vs)]).to_csv(folder / "tables" / "trials.csv",
                                                                                 index=False)
    pd.DataFrame([{"strategy": s, "budget": 3, "seed": 0, "run_status": "complete", "reached_target": False,
                   "search_time_to_target_s": math.nan, "trials_to_target": math.nan} for s in values]
                 ).to_csv(folder / "tables" / "runs.csv", index=False)
    return folder


def test_the_regret_anchor_is_the_named_strategys_median_trial(tmp_path):
    folder = _three_strategy_problem(tmp_path / "prob")
    runs = pd.DataFrame({"problem": "prob", "strategy": ["random", "grid", "optuna-tpe"], "seed": 0, "budget": 3,
                         "best_value": [0.3, 0.4, 0.5]})
    default = S.problem_anchors([folder])
    assert default.loc[0, "anchor"] == pytest.approx(0.2) and default.loc[0, "anchor_source"] == "random-search trials"
    on_grid = S.problem_anchors([folder], anchor="grid")
    assert on_grid.loc[0, "anchor"] == pytest.approx(0.35) and on_grid.loc[0, "anchor_source"] == "grid trials"
    # on random's median 0.2: random (0.5 - 0.3) / 0.3 = 2/3, grid 0.1 / 0.3 = 1/3; on grid's 0.35: random
    # 0.2 / 0.15 = 4/3 (clipped to 1), grid 0.1 / 0.15 = 2/3
    by_random = S.normalised_regret(runs, default).set_index("strategy")
    by_grid = S.normalised_regret(runs, on_grid).set_index("strategy")
    assert by_random.loc["random", "regret"] == pytest.approx(2 / 3) and by_random.loc["grid", "regret"] == pytest.approx(1 / 3)
    assert by_grid.loc["random", "regret_raw"] == pytest.approx(4 / 3) and by_grid.loc["random", "regret"] == 1
    assert by_grid.loc["grid", "regret"] == pytest.approx(2 / 3)


def test_a_suites_scores_take_the_anchor_from_the_caller(tmp_path):
    from lrsearch.reporting.score_report import suite_scores_section

    folder = _three_strategy_problem(tmp_path / "prob")
    lines = "\n".join(suite_scores_section([folder], tmp_path, anchor="grid"))
    regret = pd.read_csv(tmp_path / "scores" / "regret.csv").set_index("strategy")["regret"]
    assert regret["grid"] == pytest.approx(2 / 3) and regret["random"] == 1  # as in the test above, on grid's median
    assert "median value of one grid trial" in lines and "Anchors (median grid trial)" in lines


def test_an_anchor_that_is_not_among_the_strategies_is_refused_by_name(tmp_path):
    from lrsearch.training.errors import InputError

    folder = _three_strategy_problem(tmp_path / "prob")
    with pytest.raises(InputError, match=r"anchor 'hyperopt-tpe': not among the strategies of problem prob "
                                         r"\(random, grid, optuna-tpe\)"):
        S.problem_anchors([folder], anchor="hyperopt-tpe")


def test_both_figure_modules_give_a_strategy_familys_one_line_style():
    from lrsearch.reporting.figures import _family_styles
    from lrsearch.reporting.score_report import _styles
    from lrsearch.search.strategies import strategy_family, strategy_names

    names = strategy_names()
    assert all(strategy_family(s) for s in names)  # every registered strategy is in a family
    budgets, scores = _family_styles(names), _styles(names)
    assert all(budgets[s]["ls"] == scores[s]["ls"] for s in names)
    styles: dict[str, set] = {}
    for s in names:
        styles.setdefault(strategy_family(s), set()).add(str(budgets[s]["ls"]))
    assert all(len(ls) == 1 for ls in styles.values()), styles  # one style per family
    assert budgets["lr-range-clr"]["ls"] == budgets["lr-range-1cycle"]["ls"] != budgets["random"]["ls"]
    assert budgets["grid"]["ls"] != budgets["random"]["ls"] != budgets["optuna-tpe"]["ls"]
