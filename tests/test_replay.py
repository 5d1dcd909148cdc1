"""Replaying recorded curves: interpolation, the pruning hook, strategies against the replay, the
budget-prefix property the replay relies on, the tables, config errors, and a real tabulation."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrsearch.experiment.config import ConfigError, load_experiment
from lrsearch.experiment.replay import (
    RecordedCurve,
    ReplayObjective,
    ReplayTable,
    interpolate_curve,
    tabulation,
)
from lrsearch.experiment.store import Store, TrialRecord
from lrsearch.reporting.budgets import budget_needed, budget_runs, budget_summary
from lrsearch.reporting.tables import wilson_interval
from lrsearch.search.strategies import REGISTRY, Evaluation, get_strategy

REPO = Path(__file__).resolve().parents[1]
STEPS = [10, 20, 30]
SPACE = {"lr": {"low": 1e-3, "high": 3.0, "log": True}}


def _accuracy(lr: float, step: int, seed: int) -> float:
    """A synthetic learning curve: a bump in log-LR peaking at 0.1, rising with steps, a seed offset."""
    return 0.1 + 0.5 * math.exp(-(math.log10(lr) + 1.0) ** 2) * step / STEPS[-1] + 0.01 * seed


def _write_table(folder: Path, n_lrs: int = 24, seeds=(0, 1, 2), diverge_above: float = 1.0) -> Path:
    """A tabulation's store written by hand: grid runs whose curves follow `_accuracy`; LRs above
    `diverge_above` diverge at the first evaluation, as the trainer records it (no accuracy)."""
    store = Store(folder / "results.sqlite", create=True)
    env = {"command": "test", "date": "-", "device": "-", "git_commit": "-", "versions": {}}
    for seed in seeds:
        run = store.open_run(experiment="synthetic-table", task="smoke", strategy="grid", budget=n_lrs, seed=seed,
                             environment=env)
        for i, lr in enumerate(np.geomspace(1e-3, 3.0, n_lrs)):
            diverged = lr > diverge_above
            curve = [{"step": s, "val_acc": None if diverged else _accuracy(lr, s, seed), "test_acc": None,
                      "train_s": 0.01 * s} for s in (STEPS[:1] if diverged else STEPS)]
            store.add_trial(TrialRecord(run_id=run, trial_index=i, kind="train", params={"lr": float(lr)}, lr=float(lr),
                                        status="diverged" if diverged else "ok",
                                        value=None if diverged else curve[-1]["val_acc"],
                                        train_s=curve[-1]["train_s"], overhead_s=0.0, curve=curve))
        store.complete_run(run)
    store.close()
    return folder


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> ReplayTable:
    return ReplayTable.load(_write_table(tmp_path_factory.mktemp("table")))


def _curve(lr, status="ok", acc=(0.2, 0.3, 0.4), train_s=(1.0, 2.0, 3.0)):
    n = len(acc)
    return RecordedCurve(lr, status, np.array(STEPS[:n]), np.array(acc, float), np.array(acc, float), np.array(train_s, float))


def test_interpolation_is_exact_at_recorded_lrs_and_linear_in_log_lr_between():
    low, high = _curve(0.01, acc=(0.2, 0.3, 0.4)), _curve(0.1, acc=(0.4, 0.5, 0.6), train_s=(2.0, 4.0, 6.0))
    np.testing.assert_allclose(interpolate_curve(low, high, 0.01).val_acc, low.val_acc)
    np.testing.assert_allclose(interpolate_curve(low, high, 0.1).val_acc, high.val_acc)
    middle = interpolate_curve(low, high, math.sqrt(0.01 * 0.1))  # halfway in log-LR
    np.testing.assert_allclose(middle.val_acc, [0.3, 0.4, 0.5])
    np.testing.assert_allclose(middle.train_s, [1.5, 3.0, 4.5])
    quarter = interpolate_curve(low, high, 0.01 * 10 ** 0.25)
    np.testing.assert_allclose(quarter.val_acc, [0.25, 0.35, 0.45])


def test_interpolation_takes_status_and_length_from_the_nearer_neighbour():
    ok, diverged = _curve(0.1), _curve(1.0, "diverged", acc=(np.nan,), train_s=(1.0,))
    near_ok = interpolate_curve(ok, diverged, 0.2)
    assert near_ok.status == "ok" and len(near_ok.steps) == 3
    near_diverged = interpolate_curve(ok, diverged, 0.6)
    assert near_diverged.status == "diverged" and len(near_diverged.steps) == 1


def test_table_loads_per_seed_and_answers_recorded_lrs_exactly(table):
    assert table.task == "smoke" and table.seeds == [0, 1, 2]
    assert table.lr_low == pytest.approx(1e-3) and table.lr_high == pytest.approx(3.0)
    recorded = table.curves[1][5]
    np.testing.assert_allclose(table.curve(1, recorded.lr).val_acc, [_accuracy(recorded.lr, s, 1) for s in STEPS])


def test_objective_returns_recorded_time_and_honours_the_pruning_hook(table):
    lr = table.curves[0][12].lr
    seen = []
    full = ReplayObjective(table, target_acc=0.3, seed=0)({"lr": lr}, lambda step, acc: seen.append(step) or False)
    assert seen == STEPS and full.status == "ok" and full.train_s == pytest.approx(0.3)
    seed = full.record["recorded_seed"]
    assert full.value == pytest.approx(_accuracy(lr, 30, seed))
    first_hit = next(s for s in STEPS if _accuracy(lr, s, seed) >= 0.3)
    assert full.record["time_to_target_s"] == pytest.approx(0.01 * first_hit)

    pruned = ReplayObjective(table, target_acc=0.3, seed=0)({"lr": lr}, lambda step, acc: step >= 20)
    assert pruned.status == "pruned" and pruned.train_s == pytest.approx(0.2)
    assert pruned.value == pytest.approx(_accuracy(lr, 20, seed))


def test_diverged_lrs_replay_as_diverged_with_their_short_cost(table):
    ev = ReplayObjective(table, target_acc=0.3, seed=0)({"lr": 2.5})
    assert ev.status == "diverged" and ev.value == 0.0 and ev.train_s == pytest.approx(0.1)


def test_each_trial_draws_a_recorded_seed_reproducibly(table):
    def seeds(run_seed):
        objective = ReplayObjective(table, 0.3, run_seed)
        return [objective({"lr": 0.1}).record["recorded_seed"] for _ in range(30)]
    assert seeds(4) == seeds(4)
    assert set(seeds(4)) == {0, 1, 2}


def test_seed_draw_per_run_answers_every_trial_of_a_run_from_one_recorded_seed(table):
    def seeds(run_seed):
        objective = ReplayObjective(table, 0.3, run_seed, seed_draw="run")
        return {objective({"lr": 0.1}).record["recorded_seed"] for _ in range(20)}
    per_run = [seeds(s) for s in range(12)]
    assert all(len(s) == 1 for s in per_run) and set.union(*per_run) == {0, 1, 2}


@pytest.mark.parametrize("name", ["random", "optuna-tpe", "hyperopt-tpe", "nni-tpe"])
def test_strategies_run_unchanged_against_the_replay_and_find_the_optimum(table, name):
    evaluations = get_strategy(name, SPACE, seed=0).run(ReplayObjective(table, 0.3, seed=0), 24)
    assert len(evaluations) == 24
    best = max(evaluations, key=lambda e: e.value)
    assert 0.1 / 3 < best.params["lr"] < 0.1 * 3  # the synthetic optimum is at 0.1


@pytest.mark.parametrize("name", ["optuna-tpe-asha", "optuna-tpe-hyperband"])
def test_pruning_strategies_stop_replayed_trials_early_and_repeat_themselves(table, name):
    def run():
        evaluations = get_strategy(name, SPACE, seed=0).run(ReplayObjective(table, 0.3, seed=0), 24)
        return [(e.params["lr"], e.status, e.train_s) for e in evaluations]
    first = run()
    assert any(status == "pruned" for _, status, _ in first)
    assert run() == first  # Hyperband's brackets come from the study's name: it must not be random


REPLAYED = {name: experiment.options.get(name, {}) for experiment in
            (load_experiment(REPO / "experiments" / f"{config}.toml") for config in ("budgets-replay", "budgets-replay-slow"))
            for name in experiment.strategies}


@pytest.mark.parametrize("name", [n for n in REPLAYED if not REGISTRY[n].budget_aware])
def test_a_run_at_a_small_budget_is_the_first_trials_of_a_larger_run(name):
    """What the replay relies on to read every budget from one run: proposals do not depend on the budget."""
    def proposals(budget):
        def objective(params, report=None):
            return Evaluation(params, math.exp(-(math.log10(params["lr"]) + 1.0) ** 2))
        return [e.params for e in get_strategy(name, SPACE, seed=3, **REPLAYED[name]).run(objective, budget)]
    assert proposals(5) == proposals(12)[:5]


def test_grid_is_sized_to_its_budget_so_it_runs_every_budget():
    def lrs(budget):
        evaluations = get_strategy("grid", SPACE).run(lambda params, report=None: Evaluation(params, 0.0), budget)
        return [e.params["lr"] for e in evaluations]
    assert REGISTRY["grid"].budget_aware and lrs(4) != lrs(8)[:4]


def test_budget_runs_read_prefixes_best_so_far_and_time_to_target():
    trials = pd.DataFrame({
        "strategy": "random", "run_budget": 4, "seed": 0, "trial_index": range(4), "lr": [0.1, 0.2, 0.3, 0.4],
        "status": ["ok", "diverged", "ok", "ok"], "value": [0.3, math.nan, 0.5, 0.4], "final_test_acc": [0.31, None, 0.51, 0.41],
        "train_s": [2.0, 1.0, 2.0, 2.0], "overhead_s": 0.1, "time_to_target_s": [None, None, 1.5, 1.0]})
    runs = budget_runs(trials, [1, 2, 4]).set_index("budget")
    assert runs.loc[1, "best_val_acc"] == 0.3 and runs.loc[4, "best_val_acc"] == 0.5
    assert runs.loc[4, "best_lr"] == 0.3 and runs.loc[4, "test_acc_of_best"] == 0.51
    assert not runs.loc[2, "reached_target"] and math.isnan(runs.loc[2, "search_time_to_target_s"])
    assert runs.loc[4, "reached_target"] and runs.loc[4, "search_time_to_target_s"] == 2.0 + 1.0 + 1.5
    assert runs.loc[4, "trials_to_target"] == 3 and runs.loc[4, "n_diverged"] == 1


def _failing_run(statuses: list[str], values: list[float], seed: int = 0) -> pd.DataFrame:
    n = len(statuses)
    return pd.DataFrame({
        "strategy": "random", "run_budget": n, "seed": seed, "trial_index": range(n), "lr": [0.1 * (i + 1) for i in range(n)],
        "status": statuses, "value": values, "final_test_acc": values, "train_s": 1.0, "overhead_s": 0.0,
        "time_to_target_s": None})


def test_a_budgets_best_so_far_is_nan_until_the_first_value_and_skips_failed_trials():
    trials = _failing_run(["failed", "ok", "diverged", "ok"], [math.nan, 0.3, math.nan, 0.5])
    runs = budget_runs(trials, [1, 2, 3, 4]).set_index("budget")
    assert math.isnan(runs.loc[1, "best_val_acc"]) and math.isnan(runs.loc[1, "best_lr"])
    assert runs["best_val_acc"].tolist()[1:] == [0.3, 0.3, 0.5]
    assert runs.loc[3, "best_lr"] == pytest.approx(0.2) and runs.loc[4, "best_lr"] == pytest.approx(0.4)
    negative = budget_runs(_failing_run(["ok", "failed"], [-2.0, math.nan]), [1, 2]).set_index("budget")
    assert negative["best_val_acc"].tolist() == [-2.0, -2.0]  # a failed trial is no 0, better than -2


def test_a_seed_without_any_value_counts_as_the_worst_in_the_median():
    seeds = pd.concat([_failing_run(["failed"], [math.nan], seed=0), _failing_run(["ok"], [0.4], seed=1),
                       _failing_run(["ok"], [0.6], seed=2)])
    summary = budget_summary(budget_runs(seeds, [1]), n_boot=200)
    assert summary["median_best_val_acc"].tolist() == [0.4]
    most_failed = pd.concat([seeds, _failing_run(["diverged"], [math.nan], seed=3)])
    assert math.isnan(budget_summary(budget_runs(most_failed, [1]), n_boot=200)["median_best_val_acc"].iloc[0])


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I: 81/263 -> 0.2553 to 0.3662; 0/10 -> 0 to 0.2775
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-5)


def test_budget_needed_is_the_first_budget_with_90_percent():
    summary = pd.DataFrame({"strategy": "a", "budget": [1, 2, 4, 8], "p_target": [0.5, 0.85, 0.92, 1.0],
                            "p_ci_low": [0.4, 0.78, 0.86, 0.96], "p_ci_high": [0.6, 0.91, 0.96, 1.0]})
    row = budget_needed(summary).iloc[0]
    assert (row["budget_for_p90"], row["budget_optimistic"], row["budget_pessimistic"]) == (4, 2, 8)


def _replay_config(tmp_path, table_dir, extra="", strategies='["random", "optuna-tpe", "grid"]'):
    path = tmp_path / "replay.toml"
    path.write_text(f"""
name = "r"
task = "smoke"
strategies = {strategies}
budgets = [1, 2, 4, 8]
seeds = 30
target_acc = 0.5
results = "{tmp_path / 'out'}"
[space]
lr = {{ low = 1e-3, high = 3.0, log = true }}
[replay]
table = "{table_dir}"
workers = 2
{extra}
""")
    return path


COMMITTED_TABLE = REPO / "results" / "benchmark-cpu-table"  # 48 LRs x 3 seeds of the cpu task, really trained
COMMITTED_REAL = REPO / "results" / "replay-check-cpu"  # random and optuna-tpe at budgets 4 and 8, really trained


def _committed_replay_config(tmp_path) -> Path:
    """The committed budgets-replay, cut down: replayed from the committed recordings and checked against the
    committed real runs (`make replay-check`: trained by the trainer, not by the replay)."""
    path = tmp_path / "replay.toml"
    path.write_text(f"""
name = "r"
task = "cpu"
strategies = ["random", "optuna-tpe", "grid"]
budgets = [1, 2, 4, 8]
seeds = 40
target_acc = 0.46
results = "{tmp_path / 'out'}"
[space]
lr = {{ low = 1e-3, high = 3.0, log = true }}
[replay]
table = "{COMMITTED_TABLE}"
check = "{COMMITTED_REAL}"
check_budgets = [4, 8]
workers = 2
[options.optuna-tpe]
n_startup_trials = 4
""")
    return path


def test_replay_command_writes_tables_figures_report_and_the_check(tmp_path):
    config = _committed_replay_config(tmp_path)
    done = subprocess.run([sys.executable, "-m", "lrsearch", "replay", str(config)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    summary = pd.read_csv(out / "tables" / "summary.csv")
    assert set(summary["strategy"]) == {"random", "optuna-tpe", "grid"} and set(summary["budget"]) == {1, 2, 4, 8}
    assert (summary["n_seeds"] == 40).all()
    # more budget never lowers the best found by a prefix-read strategy
    for name in ("random", "optuna-tpe"):
        assert summary[summary["strategy"] == name].sort_values("budget")["median_best_val_acc"].is_monotonic_increasing
    # the replay against runs the trainer really made: the committed check's agreement holds (its gaps are
    # under 0.01, results/budgets-replay/tables/check.csv)
    check = pd.read_csv(out / "tables" / "check.csv")
    assert set(zip(check["strategy"], check["budget"])) == {("random", 4), ("random", 8), ("optuna-tpe", 4),
                                                            ("optuna-tpe", 8)}
    assert (check["n_real"] == 10).all()
    assert (check["median_gap"].abs() < 0.015).all() and (check["wasserstein"] < 0.02).all(), check
    for name in ("budgets_accuracy.png", "budgets_target.png", "replay_check.png"):
        assert (out / "figures" / name).stat().st_size > 10_000
    report = (out / "REPORT.md").read_text()
    assert "Budget needed" in report and "Check against real runs" in report and "git commit" in report
    assert "`tables/trials.parquet` (not committed" in report

    # ... and the check can fail: real runs 0.05 worse than recorded are told apart
    from lrsearch.reporting.budgets import budget_runs, compare_with_real, real_trials

    real = real_trials(COMMITTED_REAL)
    real["value"] -= 0.05
    worse = budget_runs(real, [4, 8])
    gap = compare_with_real(pd.read_parquet(out / "tables" / "runs.parquet"), worse[worse["budget"].isin([4, 8])])
    assert (gap["median_gap"] > 0.03).all() and (gap["wasserstein"] > 0.03).all() and (gap["ks_pvalue"] < 0.01).all()


@pytest.mark.parametrize("strategies, extra, field", [
    ('["random", "lr-range-clr"]', "", "strategies: lr-range-clr cannot be replayed"),
    ('["random"]', "", "space.lr: [0.0001, 3]"),
])
def test_replay_config_errors_name_the_field(tmp_path, table, strategies, extra, field):
    config = _replay_config(tmp_path, table.source, extra, strategies)
    if "space.lr" in field:
        config.write_text(config.read_text().replace("low = 1e-3", "low = 1e-4"))
    done = subprocess.run([sys.executable, "-m", "lrsearch", "replay", str(config)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and field in done.stderr and "Traceback" not in done.stderr


def test_replay_without_a_table_and_run_on_a_replay_config_say_what_to_do(tmp_path, table):
    missing = _replay_config(tmp_path, tmp_path / "nowhere")
    done = subprocess.run([sys.executable, "-m", "lrsearch", "replay", str(missing)], capture_output=True, text=True)
    assert done.returncode == 2 and "lrsearch tabulate" in done.stderr
    done = subprocess.run([sys.executable, "-m", "lrsearch", "run", str(missing)], capture_output=True, text=True)
    assert done.returncode == 2 and "lrsearch replay" in done.stderr


def test_seed_count_and_tabulation_config(tmp_path):
    experiment = load_experiment(REPO / "experiments" / "budgets-replay.toml")
    assert experiment.seeds == list(range(100)) and max(experiment.budgets) == 64
    table = tabulation(load_experiment(REPO / "experiments" / "benchmark-cpu.toml"), 48)
    assert (table.strategies, table.budgets, table.seeds) == (["grid"], [48], [0, 1, 2])
    assert table.results == "runs/benchmark-cpu-table"  # a fresh tabulation never overwrites the committed one
    path = tmp_path / "two.toml"
    path.write_text('name = "t"\ntask = "smoke"\nstrategies = ["random"]\nbudgets = [2]\nseeds = [0]\n'
                    "[space]\nlr = { low = 1e-3, high = 1.0, log = true }\nmomentum = { low = 0.8, high = 0.99 }\n")
    with pytest.raises(ValueError, match="options.grid.points: no count for momentum"):
        tabulation(load_experiment(path))
    path.write_text('name = "t"\ntask = "smoke"\nstrategies = ["random"]\nbudgets = [2]\nseeds = 0\n')
    with pytest.raises(ConfigError, match="'seeds': a seed count is >= 1"):
        load_experiment(path)


@pytest.mark.slow
def test_tabulate_records_real_trials_that_the_replay_answers(tmp_path):
    from conftest import JPEG

    config = tmp_path / "exp.toml"
    config.write_text('name = "tab"\ntask = "smoke"\nstrategies = ["random"]\nbudgets = [2]\nseeds = [0]\n'
                      f'results = "{tmp_path / "tab"}"\n[space]\nlr = {{ low = 0.01, high = 0.3, log = true }}\n')
    done = subprocess.run([sys.executable, "-m", "lrsearch", "tabulate", str(config), "--lrs", "3", "--seeds", "0",
                           "--data", str(JPEG)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    table = ReplayTable.load(tmp_path / "tab-table")
    assert table.task == "smoke" and [round(c.lr, 6) for c in table.curves[0]] == [0.01, round(math.sqrt(0.003), 6), 0.3]
    trials = pd.read_csv(tmp_path / "tab-table" / "tables" / "trials.csv")
    recorded = trials.iloc[1]
    replayed = ReplayObjective(table, 0.25, seed=0)({"lr": recorded["lr"]})
    assert replayed.value == pytest.approx(recorded["value"]) and replayed.train_s == pytest.approx(recorded["train_s"])
    assert replayed.value > 0.15  # the smoke task learns above chance at these LRs


def test_proposal_overhead_per_strategy_reads_the_largest_budget_and_skips_the_start_up():
    from lrsearch.reporting.budgets import proposal_overhead

    rows = [{"strategy": "slow", "run_budget": b, "seed": seed, "trial_index": i,
             "overhead_s": (0.0 if i < 2 else 1.0 + seed) if b == 4 else 99.0}
            for b in (2, 4) for seed in (0, 1) for i in range(b)]
    rows += [{"strategy": "fast", "run_budget": 4, "seed": 0, "trial_index": i, "overhead_s": 0.5} for i in range(4)]
    table = proposal_overhead(pd.DataFrame(rows), {"slow": 2}).set_index("strategy")
    # slow at budget 4 only (the 99 s of budget 2 left out): per proposal 0, 0, 1, 1 (seed 0) and 0, 0, 2, 2 (seed 1)
    assert table.loc["slow", "run_budget"] == 4 and table.loc["slow", "proposals"] == 8
    assert table.loc["slow", "median_s"] == pytest.approx(0.5) and table.loc["slow", "max_s"] == 2.0
    assert table.loc["slow", "median_past_startup_s"] == pytest.approx(1.5)  # 1, 1, 2, 2
    assert table.loc["slow", "median_per_run_s"] == pytest.approx(3.0)  # runs of 2 s and 4 s
    assert table.loc["fast", "median_past_startup_s"] == 0.5  # no start-up given: every proposal


def test_seed_chunks_follow_the_worker_count_and_a_seeds_replay_does_not_depend_on_its_chunk(table):
    from lrsearch.experiment.replay import _init_worker, _replay_runs, seed_chunks

    seeds = list(range(7))
    for workers in (1, 2, 3, 16):
        chunks = seed_chunks(seeds, workers)
        assert len(chunks) == min(len(seeds), workers) and sorted(s for c in chunks for s in c) == seeds
    _init_worker(table)
    job = ("optuna-tpe", 4, None, SPACE, {"n_startup_trials": 2}, 0.5, "trial")

    def rows(chunks):
        out = [r for chunk in chunks for r in _replay_runs(job[:2] + (chunk,) + job[3:])]
        return sorted((r["seed"], r["trial_index"], r["lr"], r["value"]) for r in out)

    assert rows(seed_chunks(seeds, 1)) == rows(seed_chunks(seeds, 3))
