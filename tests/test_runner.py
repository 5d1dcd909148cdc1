"""Experiment configs, the store's resume after SIGKILL, the analysis math, and the smoke
benchmark end to end."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import trial_count

from lrsearch.experiment.config import ConfigError, load_experiment
from lrsearch.reporting.tables import bootstrap_ci, median_with_failures, runs_table, search_time_to_target

REPO = Path(__file__).resolve().parents[1]
GOOD = """
name = "t"
task = "smoke"
strategies = ["random"]
budgets = [2]
seeds = [0]
"""


def _write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("change, field, allowed", [
    ('colour = "red"', "'colour'", "allowed keys: name, task"),
    ('budgets = ["8"]', "'budgets.0'", "integer"),
    ('strategies = ["random", "optuna-foo"]', "'strategies'", "allowed: grid, random"),
    ("target_acc = 1.5", "'target_acc'", "less than or equal to 1"),
    ("target_acc = 0", "'target_acc'", "greater than 0"),
    ("seeds = []", "'seeds'", "at least 1 item"),
    ('task = "imagenet"', "'task'", "allowed: smoke, cpu"),
    ("[space]\nlr = { low = 1.0, high = 0.1 }", "'space'", "low (1.0) must be below high"),
])
def test_config_errors_name_file_field_and_what_is_allowed(tmp_path, change, field, allowed):
    lines = [line for line in GOOD.strip().splitlines() if not line.startswith(change.split(" =")[0] + " =")]
    path = _write(tmp_path, "\n".join(lines + [change]))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    message = str(info.value)
    assert str(path) in message and field in message and allowed in message, message


# Every preset's target, as its file or its task's table (results/tables/README.md) sets it: a preset added, or a
# target changed, must be written here too.
PRESET_TARGETS = {
    "benchmark-cpu.toml": [0.46], "benchmark-gpu.toml": [0.9], "benchmark-smoke.toml": [0.25],
    "budgets-replay-slow.toml": [0.43], "contenders-cpu.toml": [0.435, 0.43, 0.70, 0.235], "budgets-replay.toml": [0.43], "budgets.toml": [0.33],
    "parallel-check-cpu-k1.toml": [0.46], "parallel-check-cpu.toml": [0.46], "parallel-replay.toml": [0.43],
    "replay-check-cpu.toml": [0.46],
    "suite-cpu.toml": [0.435, 0.435, 0.43, 0.43, 0.70, 0.70, 0.235, 0.235],
    "suite-cpu-tables.toml": [0.435, 0.43, 0.70, 0.235, 0.435, 0.42, 0.70, 0.235], "tables-check-cpu.toml": [0.43, 0.42],
    "suite-cpu-tables-slow.toml": [0.435, 0.43, 0.70, 0.235, 0.435, 0.42, 0.70, 0.235],
    "suite-gpu-table.toml": [0.9],
}
# presets whose table is recorded on a GPU (benchmarks/gpu_tables.sh): until it is, loading one names the table
# and how to record it
GPU_TABLES = {"suite-gpu-table.toml": REPO / "results" / "tables" / "gpu"}


def test_good_config_and_presets_load(tmp_path):
    assert load_experiment(_write(tmp_path, GOOD)).budgets == [2]
    from lrsearch.experiment.suite import Suite, load_config

    presets = sorted(p for p in (REPO / "experiments").glob("*.toml") if p.name != "clr_paper.toml")
    assert [p.name for p in presets] == sorted(PRESET_TARGETS)
    for preset in presets:
        table = GPU_TABLES.get(preset.name)
        if table is not None and not (table / "results.sqlite").exists():
            with pytest.raises(ConfigError, match=f"table {table.relative_to(REPO)}: no results.sqlite.*lrsearch tabulate"):
                load_config(preset)
            continue
        config = load_config(preset)
        experiments = config.experiments() if isinstance(config, Suite) else [config]
        assert [e.target_value() for e in experiments] == PRESET_TARGETS[preset.name], preset


def test_cli_config_error_is_one_line(tmp_path, capsys):
    from lrsearch.cli import main

    assert main(["run", str(_write(tmp_path, GOOD.replace("seeds = [0]", "seeds = []")))]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "seeds" in err


# ------------------------------------------------------------ analysis math on hand-made records


def test_search_time_to_target_counts_trials_before_and_part_of_the_hit():
    # trials of 10 s, 20 s, 30 s; the second reaches the target 7 s into its training
    assert search_time_to_target([10, 20, 30], [None, 7.0, 3.0]) == (17.0, 2)
    assert search_time_to_target([10, 20], [4.0, 1.0]) == (4.0, 1)
    assert search_time_to_target([10, 20], [None, None]) == (None, None)
    assert search_time_to_target([10, 20], [math.nan, 2.0]) == (12.0, 2)


def test_runs_table_on_hand_made_trials():
    rows = []
    for i, (status, value, ttt, train_s) in enumerate([("diverged", 0.0, None, 3.0), ("ok", 0.6, 8.0, 10.0),
                                                        ("ok", 0.7, 2.0, 10.0)]):
        rows.append({"strategy": "s", "budget": 3, "seed": 0, "run_status": "complete", "trial_index": i,
                     "kind": "train", "status": status, "value": value, "lr": 0.1 * (i + 1),
                     "final_test_acc": value - 0.05, "time_to_target_s": ttt, "train_s": train_s,
                     "overhead_s": 0.5, "wall_s": train_s + 1, "extra": json.dumps({"random_startup": i < 2})})
    # the same trials for a model-based strategy that never left its start-up, and for one without a start-up
    rows += [r | {"strategy": "t", "extra": json.dumps({"random_startup": True})} for r in rows[:3]]
    rows += [r | {"strategy": "u", "extra": "{}"} for r in rows[:3]]
    runs = runs_table(pd.DataFrame(rows)).set_index("strategy")
    assert runs["random_startup_only"].to_dict() == {"s": False, "t": True, "u": False}
    row = runs.loc["s"]
    assert row["search_time_to_target_s"] == 3.0 + 8.0 and row["trials_to_target"] == 2
    assert row["best_val_acc"] == 0.7 and row["best_lr"] == pytest.approx(0.3)
    assert row["test_acc_of_best"] == pytest.approx(0.65) and row["n_diverged"] == 1
    assert row["train_s"] == 23.0 and row["overhead_s"] == 1.5


def test_median_with_failures_and_bootstrap():
    assert median_with_failures(np.array([1.0, 2.0, np.nan])) == 2.0
    assert median_with_failures(np.array([1.0, np.nan, np.nan])) == np.inf
    values = np.random.default_rng(0).normal(10, 1, 50)
    low, high = bootstrap_ci(values, statistic=np.median)
    assert low < np.median(values) < high and high - low < 1.5
    assert bootstrap_ci([5.0] * 10, statistic=np.median) == (5.0, 5.0)
    # under 10 values no interval: over 3 the percentile interval of the median is their min-max, which covers the
    # true median only 1 - 2 x 0.5^3 = 75% of the time
    assert all(np.isnan(bootstrap_ci([4.0, 5.0, 6.0], statistic=np.median)))
    assert bootstrap_ci([4.0, 5.0, 6.0], statistic=np.median, min_n=0) == (4.0, 6.0)
    rng = np.random.default_rng(2)
    covered = np.mean([low <= 0 <= high for low, high in
                       (bootstrap_ci(rng.normal(0, 1, 3), statistic=np.median, n_boot=400, min_n=0) for _ in range(400))])
    assert 0.68 < covered < 0.82


# ------------------------------------------------------------ resume after SIGKILL

RESUME = """
name = "resume"
task = "smoke"
strategies = ["random", "optuna-tpe-asha", "lr-range-clr"]
budgets = [4]
seeds = [0, 1]
[task_overrides]
epochs = 1
train_subset = 1300
val_size = 300
test_subset = 300
eval_every = 5
[space]
lr = { low = 1e-3, high = 3.0, log = true }
"""


def _run_cli(config, results, env):
    return subprocess.Popen([sys.executable, "-m", "lrsearch", "run", str(config), "--results", str(results)],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _rows(results):
    with sqlite3.connect(results / "results.sqlite") as conn:
        return conn.execute(
            "SELECT r.strategy, r.budget, r.seed, t.trial_index, t.params, t.status, t.value, "
            "(SELECT COUNT(*) FROM curves c WHERE c.trial_id = t.trial_id) FROM trials t JOIN runs r USING (run_id) "
            "ORDER BY 1, 2, 3, 4").fetchall()


@pytest.mark.usefixtures("jpeg_data")
def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path):
    from conftest import JPEG

    env = dict(os.environ, LRSEARCH_DATA=str(JPEG), PYTHONUNBUFFERED="1")
    config = tmp_path / "resume.toml"
    config.write_text(RESUME)
    killed = tmp_path / "killed"
    proc = _run_cli(config, killed, env)
    deadline = time.time() + 120
    while trial_count(killed) < 7 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _rows(killed)
    assert 7 <= len(partial) < 20
    assert _run_cli(config, killed, env).wait() == 0  # same command again: resumes
    whole = tmp_path / "whole"
    assert _run_cli(config, whole, env).wait() == 0
    resumed, uninterrupted = _rows(killed), _rows(whole)
    keys = [r[:4] for r in resumed]
    assert len(keys) == len(set(keys))  # no duplicates
    assert keys == [r[:4] for r in uninterrupted]  # same (strategy, budget, seed, trial) rows
    assert [r[4:6] for r in resumed] == [r[4:6] for r in uninterrupted]  # same params and statuses (seeded, CPU)
    assert all(r[7] > 0 for r in resumed)  # every trial has its curve
    assert set(partial) <= set(resumed)  # nothing finished before the kill was lost or changed
    with sqlite3.connect(killed / "results.sqlite") as conn:
        assert {s for (s,) in conn.execute("SELECT status FROM runs")} == {"complete"}


# ------------------------------------------------------------ the smoke benchmark end to end


@pytest.mark.usefixtures("jpeg_data")
def test_smoke_benchmark_end_to_end(tmp_path, monkeypatch):
    from conftest import JPEG

    from lrsearch.cli import main

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    out = tmp_path / "smoke"
    # the preset as `make benchmark PRESET=smoke` runs it, with one epoch and 300 test images a trial (CI's time)
    config = tmp_path / "benchmark-smoke.toml"
    config.write_text((REPO / "experiments" / "benchmark-smoke.toml").read_text()
                      + "\n[task_overrides]\nepochs = 1\ntest_subset = 300\n")
    assert main(["run", str(config), "--results", str(out), "--seeds", "0"]) == 0
    for table in ("trials", "runs", "anytime", "summary", "curves"):
        for suffix in ("csv", "parquet"):
            assert (out / "tables" / f"{table}.{suffix}").stat().st_size > 0
    for figure in ("anytime", "time_to_target", "trials_lr", "learning_curves", "range_tests"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 10_000
    assert not (out / "figures" / "accuracy_vs_budget.png").exists()  # one budget: no budget axis to draw
    # one log line per finished trial and per run, in run.log (and on stderr, which is not a terminal here)
    log = (out / "run.log").read_text()
    assert log.count(" trial ") == 20 and log.count("run done: ") == 7 and "optuna-tpe b3 s0 trial 2: lr=" in log
    # every run is an Optuna study too, trial for trial as in the store (optuna-dashboard reads it)
    import optuna

    from lrsearch.reporting.tables import load_results
    results = load_results(out)
    storage = f"sqlite:///{out / 'optuna.sqlite3'}"
    assert len(optuna.get_all_study_names(storage)) == 7
    states = {"ok": "COMPLETE", "diverged": "FAIL", "pruned": "PRUNED", "failed": "FAIL"}  # FAIL: no value
    for (strategy, seed), stored in results.trials.groupby(["strategy", "seed"]):
        study = optuna.load_study(study_name=f"benchmark-smoke/{strategy}/b3/s{seed}", storage=storage)
        assert study.metric_names == ["val_acc"]  # optuna-dashboard names the objective, not "Objective 0"
        assert study.user_attrs["problem"] == "benchmark-smoke" and study.user_attrs["workload"] == "smoke"
        assert json.loads(study.user_attrs["space"]) == {"lr": {"low": 1e-3, "high": 3.0, "log": True}}
        assert [t.state.name for t in study.trials] == ["FAIL" if kind == "range_test" else states[status]
                                                        for kind, status in zip(stored["kind"], stored["status"])]
        assert [t.user_attrs["status"] for t in study.trials] == list(stored["status"])
        for trial, row in zip(study.trials, stored.itertuples()):
            if trial.state.name == "COMPLETE":
                assert trial.value == pytest.approx(row.value)
            if row.kind == "train" and "lr" in trial.params:
                assert trial.params["lr"] == pytest.approx(row.params_lr)
            curve = results.curves[(results.curves["strategy"] == strategy) & (results.curves["seed"] == seed)
                                   & (results.curves["trial_index"] == row.trial_index)].dropna(subset=["val_acc"])
            assert trial.intermediate_values == dict(zip(curve["step"], curve["val_acc"]))
    runs = pd.read_parquet(out / "tables" / "runs.parquet")
    assert len(runs) == 7 and set(runs["strategy"]) >= {"grid", "optuna-tpe", "lr-range-clr"}
    summary = pd.read_csv(out / "tables" / "summary.csv")
    assert sorted(summary["rank"]) == list(range(1, 8))
    # a budget of 3 is inside the TPE strategies' default 10 start-up trials: flagged as random search in effect
    flagged = set(runs.loc[runs["random_startup_only"], "strategy"])
    assert flagged == {"optuna-tpe", "optuna-tpe-asha", "hyperopt-tpe", "nni-tpe"}
    report = (out / "REPORT.md").read_text()
    assert "**nni-tpe** at budget 3: 1 of 1 runs never left the strategy's random start-up" in report
    assert "git commit" in report and "device" in report and "![anytime](figures/anytime.png)" in report
    # the report rebuilds from the store alone
    for f in (out / "tables").iterdir():
        f.unlink()
    assert main(["report", str(out)]) == 0 and (out / "tables" / "runs.csv").exists()
    assert json.loads((out / "experiment.json").read_text())["task"]["name"] == "smoke"
    # time-to-target re-read off the stored curves for the task's own target is what the trainer recorded
    from lrsearch.experiment.store import Store
    from lrsearch.reporting.tables import retarget
    store = Store(out / "results.sqlite", create=False)
    trials, curves = store.trials_frame(), store.curves_frame()
    store.close()
    again = retarget(trials, curves, json.loads((out / "experiment.json").read_text())["task"]["target_acc"])
    train = trials["kind"] == "train"
    pd.testing.assert_series_equal(again.loc[train, "time_to_target_s"].astype(float),
                                   trials.loc[train, "time_to_target_s"].astype(float))
    assert trials.loc[train, "time_to_target_s"].notna().any()


def test_missing_data_stops_before_any_run_is_recorded(tmp_path, monkeypatch):
    """A missing data source is one message at the start, not every trial stored as failed (and then skipped
    as complete by the next, resumed, run)."""
    from lrsearch.experiment.runner import run_experiment
    from lrsearch.training.data import DataError

    monkeypatch.setenv("LRSEARCH_DATA", str(tmp_path / "no-such-archive.tar.gz"))
    experiment = load_experiment(_write(tmp_path, GOOD))
    with pytest.raises(DataError, match="no-such-archive.tar.gz"):
        run_experiment(experiment, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_store_from_before_eval_s_gains_the_column_and_keeps_its_trials(tmp_path):
    from lrsearch.experiment.store import ADDED_COLUMNS, SCHEMA, Store, TrialRecord

    path = tmp_path / "old.sqlite"
    added = tuple(f"    {column} " for _, column, _ in ADDED_COLUMNS)
    with sqlite3.connect(path) as conn:  # the schema as first released: no eval_s, no run definitions or claims
        conn.executescript("\n".join(line for line in SCHEMA.splitlines() if not line.startswith(added)))
        conn.execute("INSERT INTO runs VALUES (1, 'e', 'smoke', 'random', 2, 0, 'running', 0, NULL, '{}')")
        conn.execute("INSERT INTO trials (run_id, trial_index, kind, params, status, value, train_s, overhead_s, extra, "
                     "finished_at) VALUES (1, 0, 'train', '{}', 'ok', 0.5, 1.0, 0.0, '{}', 0)")
        assert "eval_s" not in {r[1] for r in conn.execute("PRAGMA table_info(trials)")}
        assert "definition" not in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    store = Store(path, create=True)
    store.add_trial(TrialRecord(run_id=1, trial_index=1, kind="train", params={"lr": 0.1}, lr=0.1, status="ok", value=0.6,
                                train_s=2.0, overhead_s=0.0, result={"eval_s": 0.25}))
    trials = store.trials_frame()
    store.close()
    assert trials["trial_index"].tolist() == [0, 1] and trials["eval_s"].tolist()[1] == 0.25


@pytest.mark.usefixtures("jpeg_data")
def test_a_categorical_schedule_space_trains_through_the_runner(tmp_path):
    """The documented `schedule = {choices = [...]}` hands the trainer a family name: every trial trains."""
    from conftest import JPEG

    from lrsearch import Experiment, load_results, run_experiment

    experiment = Experiment(name="sched", task="smoke", strategies=["grid"], budgets=[2], seeds=[0],
                            results=str(tmp_path / "out"), task_overrides={"epochs": 1},
                            space={"schedule": {"choices": ["constant", "cosine"]}})  # lr: the task's 0.05
    trials = load_results(run_experiment(experiment, data_source=str(JPEG))).trials
    assert sorted(trials["params_schedule"]) == ["constant", "cosine"] and set(trials["status"]) == {"ok"}
    curves = load_results(tmp_path / "out").curves
    cosine = curves[curves["trial_id"] == trials.loc[trials["params_schedule"] == "cosine", "trial_id"].iloc[0]]
    assert cosine["lr"].iloc[-1] < 0.5 * 0.05  # the cosine decays from the peak; a constant LR stays at it
