"""`lrsearch export --format syne-tune`: the committed nobn table in Syne Tune's blackbox layout.

The export is loaded back with Syne Tune's own `deserialize`, its arrays checked against the table read with
plain sqlite3 (test_bench.stored_runs' query, repeated here so that each file stands alone), and a Syne Tune
scheduler is run on it through Syne Tune's simulator backend.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
from syne_tune import StoppingCriterion, Tuner
from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
from syne_tune.blackbox_repository.blackbox_tabular import deserialize
from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
from syne_tune.config_space import OrdinalNearestNeighbor
from syne_tune.optimizer.baselines import ASHA

from lrsearch.cli import main

REPO = Path(__file__).resolve().parents[1]
NOBN = REPO / "results" / "tables" / "nobn"
OBJECTIVES = ["metric_valid_error", "metric_test_error", "metric_elapsed_time", "metric_runtime",
              "metric_recorded_train_time", "metric_diverged"]
CHANCE_ERROR = 1 - 1 / 10  # CIFAR-10's ten classes
FLOAT32 = 1e-6  # Syne Tune's serialize stores the objectives as float32


@pytest.fixture(scope="module")
def runs():
    """(lr, seed) -> {"status", "steps", "curve": {step: row}}, read with sqlite3."""
    con = sqlite3.connect(NOBN / "results.sqlite")
    con.row_factory = sqlite3.Row
    found = {}
    for t in con.execute("SELECT t.trial_id, t.params, t.status, t.steps, r.seed FROM trials t JOIN runs r "
                         "USING (run_id) WHERE r.strategy = 'grid' AND t.kind = 'train'"):
        curve = {row["step"]: dict(row) for row in con.execute(
            "SELECT step, val_acc, test_acc, train_s FROM curves WHERE trial_id = ?", (t["trial_id"],))}
        found[(json.loads(t["params"])["lr"], t["seed"])] = {"status": t["status"], "steps": t["steps"],
                                                              "curve": curve}
    con.close()
    return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("syne-tune") / "nobn"
    assert main(["export", "--format", "syne-tune", "nobn", str(folder), "-q"]) == 0
    return folder


@pytest.fixture(scope="module")
def blackbox(exported):
    return deserialize(exported)["nobn"]


def expected(run: dict, step: int) -> tuple[float, float, bool]:
    """(valid error, test error, diverged by then) that the table says for a run at `step`."""
    row = run["curve"].get(step)
    if row is not None and row["val_acc"] is not None:
        return 1 - row["val_acc"], 1 - row["test_acc"], False
    assert run["status"] == "diverged" and step >= run["steps"]
    return CHANCE_ERROR, CHANCE_ERROR, True


def test_the_folder_round_trips_through_syne_tunes_deserialize(exported, blackbox, runs):
    assert {p.name for p in exported.iterdir()} == {"hyperparameters.parquet", "objectives_evaluations.npy",
                                                    "fidelities_values.npy", "configspace.json",
                                                    "fidelityspace.json", "metadata.json"}
    grid = sorted({lr for lr, _ in runs})
    seeds = sorted({seed for _, seed in runs})
    assert blackbox.objectives_evaluations.shape == (len(grid), len(seeds), 3, len(OBJECTIVES)) == (32, 10, 3, 6)
    assert not np.isnan(blackbox.objectives_evaluations).any()
    assert blackbox.objectives_names == OBJECTIVES
    assert list(blackbox.fidelity_values) == [50, 100, 150]
    assert blackbox.hyperparameters["lr"].tolist() == grid
    lr = blackbox.configuration_space["lr"]
    assert isinstance(lr, OrdinalNearestNeighbor) and lr.log_scale and lr.categories == grid
    assert blackbox.fidelity_space["steps"].upper == 150
    metadata = json.loads((exported / "metadata.json").read_text())
    assert metadata["metric_default"] == "metric_valid_error"
    assert metadata["metric_elapsed_time"] == "metric_elapsed_time" and metadata["time_attr"] == "steps"
    assert metadata["seeds"] == seeds and "chance error 0.9" in metadata["diverged_fill"]
    value = blackbox.objective_function({"lr": grid[12], "task": "nobn"}, fidelity={"steps": 100},
                                        seed=seeds.index(4))
    assert value["metric_valid_error"] == pytest.approx(1 - runs[(grid[12], 4)]["curve"][100]["val_acc"], abs=FLOAT32)


def test_every_exported_value_is_the_stored_curve_with_cumulative_cost(blackbox, runs):
    with open(REPO / "results" / "calibration" / "calibration.csv") as f:
        row = next(r for r in csv.DictReader(f) if (r["workload"], r["optimizer"]) == ("nobn", "sgd"))
    rate, pre_eval = float(row["s_per_step"]), float(row["pre_eval_s"])
    grid = blackbox.hyperparameters["lr"].tolist()
    seeds = sorted({seed for _, seed in runs})
    values = blackbox.objectives_evaluations
    column = {name: i for i, name in enumerate(OBJECTIVES)}
    for (lr, seed), run in runs.items():
        cell = values[grid.index(lr), seeds.index(seed)]
        for k, step in enumerate((50, 100, 150)):
            valid, test, diverged = expected(run, step)
            trained = run["steps"] if diverged else step
            evaluations = sum(s <= trained for s in run["curve"])
            got = dict(zip(OBJECTIVES, cell[k]))
            assert got["metric_valid_error"] == pytest.approx(valid, abs=FLOAT32)
            assert got["metric_test_error"] == pytest.approx(test, abs=FLOAT32)
            assert got["metric_diverged"] == float(diverged)
            assert got["metric_elapsed_time"] == pytest.approx(trained * rate + evaluations * pre_eval, rel=FLOAT32)
            assert got["metric_recorded_train_time"] == pytest.approx(run["curve"][trained]["train_s"], rel=FLOAT32)
        elapsed = cell[:, column["metric_elapsed_time"]]
        assert np.all(np.diff(elapsed) >= 0)
        assert np.cumsum(cell[:, column["metric_runtime"]]) == pytest.approx(elapsed, rel=FLOAT32)


def test_asha_on_syne_tunes_simulator_reports_values_from_the_table(blackbox, runs, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNETUNE_FOLDER", str(tmp_path))  # where the Tuner writes its results
    scheduler = ASHA(blackbox.configuration_space, metric="metric_valid_error", time_attr="steps", max_t=150,
                     grace_period=50, reduction_factor=3, random_seed=0)
    callback = SimulatorCallback()
    tuner = Tuner(trial_backend=UserBlackboxBackend(blackbox, elapsed_time_attr="metric_elapsed_time"),
                  scheduler=scheduler, stop_criterion=StoppingCriterion(max_num_trials_started=12), n_workers=2,
                  sleep_time=0, callbacks=[callback], save_tuner=False, print_update_interval=1e9)
    tuner.run()
    results = callback.dataframe()
    assert results["trial_id"].nunique() >= 10
    seeds = sorted({seed for _, seed in runs})
    for trial_id, reported in results.groupby("trial_id"):
        lr = reported["config_lr"].iloc[0]
        # the backend reads one recorded seed for all of a trial's results: some seed must give every one of them
        fits = [seed for seed in seeds if all(
            abs(expected(runs[(lr, seed)], int(r.steps))[0] - r.metric_valid_error) < FLOAT32
            for r in reported.itertuples())]
        assert fits, f"trial {trial_id} (lr {lr}) reported values no recorded seed has"
        assert set(reported["steps"].astype(int)) <= {50, 100, 150}


def test_a_missing_table_is_one_line_naming_the_path(tmp_path, capsys):
    assert main(["export", "no-such-table", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(REPO / "results" / "tables" / "no-such-table") in err
    assert not (tmp_path / "out").exists()


def test_without_syne_tune_the_export_is_one_line_saying_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "syne_tune.blackbox_repository", None)  # as if it could not be imported
    assert main(["export", "nobn", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install" in err and "syne-tune==0.16.0" in err
    assert not (tmp_path / "out").exists()
