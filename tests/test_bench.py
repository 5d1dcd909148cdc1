"""`lrsearch.bench`: a recorded table answered as an HPOBench benchmark.

The reference is the committed table itself, read here with plain sqlite3 (not through the store or Table):
every objective value, its cost and its curve must be what results/tables/nobn recorded for that LR, seed and
step, and the cost what results/calibration/calibration.csv prices those steps at.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ConfigSpace import Configuration, UniformFloatHyperparameter, UniformIntegerHyperparameter

import lrsearch
from lrsearch.experiment.bench import TableBenchmark, bench, export_syne_tune, to_blackbox
from lrsearch.experiment.table import CURVE_FIELDS, Cell, Table
from lrsearch.search.strategies import parse_space
from lrsearch.training.errors import InputError

REPO = Path(__file__).resolve().parents[1]
NOBN = REPO / "results" / "tables" / "nobn"
CHANCE_ERROR = 1 - 1 / 10  # CIFAR-10's ten classes


def stored_runs(folder: Path) -> dict:
    """(lr, seed) -> {"status", "steps", "curve": {step: row}} of every tabulated run, read with sqlite3."""
    con = sqlite3.connect(folder / "results.sqlite")
    con.row_factory = sqlite3.Row
    runs = {}
    for t in con.execute("SELECT t.trial_id, t.params, t.status, t.steps, r.seed FROM trials t JOIN runs r "
                         "USING (run_id) WHERE r.strategy = 'grid' AND t.kind = 'train'"):
        curve = {row["step"]: dict(row) for row in con.execute(
            "SELECT step, val_acc, test_acc, train_s, wall_s FROM curves WHERE trial_id = ?", (t["trial_id"],))}
        runs[(json.loads(t["params"])["lr"], t["seed"])] = {"status": t["status"], "steps": t["steps"], "curve": curve}
    con.close()
    return runs


def calibrated_rate(workload: str, optimizer: str) -> tuple[float, float]:
    """(seconds per step, seconds before each evaluation) from the committed calibration.csv, read with csv."""
    with open(REPO / "results" / "calibration" / "calibration.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["workload"] == workload and r["optimizer"] == optimizer)
    return float(row["s_per_step"]), float(row["pre_eval_s"])


@pytest.fixture(scope="module")
def runs():
    return stored_runs(NOBN)


@pytest.fixture(scope="module")
def nobn():
    return bench("nobn", rng=0)


def test_every_reading_is_the_stored_curve_priced_on_the_cost_clock(nobn, runs):
    rate, pre_eval = calibrated_rate("nobn", "sgd")
    assert nobn.calibration is not None and "calibration" in nobn.cost_clock
    recorded = filled = 0
    for (lr, seed), run in runs.items():
        for step in (50, 100, 150):
            answer = nobn.objective({"lr": lr}, fidelity=step, seed=seed)
            info = answer["info"]
            assert info["config"] == {"lr": lr} and info["seed"] == seed and info["status"] == run["status"]
            row = run["curve"].get(step)
            if row is not None and row["val_acc"] is not None:
                recorded += 1
                evaluations = sum(s <= step for s in run["curve"])
                assert answer["function_value"] == pytest.approx(1 - row["val_acc"], abs=1e-12)
                assert info["val_acc"] == row["val_acc"] and info["test_acc"] == row["test_acc"]
                assert answer["cost"] == pytest.approx(step * rate + evaluations * pre_eval)
                assert info["train_s"] == row["train_s"] and info["wall_s"] == row["wall_s"]
                assert info["recorded"] and info["diverged_at_step"] is None and info["note"] is None
                assert [r["step"] for r in info["curve"]] == sorted(s for s in run["curve"] if s <= step)
            else:  # past a divergence: chance error, said to be filled, priced at what the run spent
                filled += 1
                assert run["status"] == "diverged" and step >= run["steps"]
                assert answer["function_value"] == pytest.approx(CHANCE_ERROR)
                assert not info["recorded"] and info["val_acc"] is None
                assert info["diverged_at_step"] == run["steps"] and f"diverged at step {run['steps']}" in info["note"]
                assert answer["cost"] == pytest.approx(run["steps"] * rate + len(run["curve"]) * pre_eval)
                assert info["steps_trained"] == run["steps"]
    assert recorded + filled == 3 * len(runs) == 960 and filled > 0


def test_test_error_and_the_recorded_clock_without_a_calibration(runs):
    wall = bench(NOBN, calibration=False)  # a folder, not a name
    assert wall.calibration is None and "recorded training seconds" in wall.cost_clock
    for (lr, seed), run in list(runs.items())[::37]:
        row = run["curve"][50]
        answer = wall.objective_test({"lr": lr}, fidelity={"steps": 50}, seed=seed)
        assert answer["cost"] == row["train_s"]
        if row["test_acc"] is not None:
            assert answer["function_value"] == pytest.approx(1 - row["test_acc"], abs=1e-12)


def test_a_config_between_two_grid_points_snaps_to_the_nearer_in_log_scale(nobn, runs):
    grid = sorted({lr for lr, _ in runs})
    low, high = grid[10], grid[11]
    geometric, arithmetic = math.sqrt(low * high), (low + high) / 2
    between = (geometric + arithmetic) / 2  # nearer `low` on a linear scale, nearer `high` on a log one
    answer = nobn.objective({"lr": between}, fidelity=150, seed=3)
    assert answer["info"]["config"] == {"lr": high}
    assert answer["function_value"] == pytest.approx(1 - runs[(high, 3)]["curve"][150]["val_acc"], abs=1e-12)
    assert nobn.objective({"lr": 0.99 * geometric}, seed=3)["info"]["config"] == {"lr": low}


def test_spaces_follow_the_tables_space_and_recorded_steps(nobn, runs):
    space = json.loads((NOBN / "experiment.json").read_text())["space"]["lr"]
    lr = nobn.configspace["lr"]
    assert isinstance(lr, UniformFloatHyperparameter) and lr.log and (lr.lower, lr.upper) == (space["low"], space["high"])
    steps = sorted({s for run in runs.values() if run["status"] == "ok" for s in run["curve"]})
    assert nobn.fidelities == steps == [50, 100, 150]
    fidelity = nobn.fidelity_space["steps"]
    assert isinstance(fidelity, UniformIntegerHyperparameter) and (fidelity.lower, fidelity.upper) == (50, 150)
    config = nobn.configspace.sample_configuration()
    assert isinstance(config, Configuration)
    assert nobn.objective(config, seed=0)["info"]["config"]["lr"] in {lr for lr, _ in runs}
    assert lrsearch.bench is bench


def test_fidelity_forms_and_seeds_drawn_with_the_rng(nobn):
    config = {"lr": 0.01}
    same = [nobn.objective(config, fidelity, seed=2)["function_value"]
            for fidelity in (None, 150, {"steps": 150}, np.int64(150))]
    assert len(set(same)) == 1
    one, two = TableBenchmark(nobn.table, rng=7), TableBenchmark(nobn.table, rng=7)
    drawn = [one.objective(config)["info"]["seed"] for _ in range(20)]
    assert drawn == [two.objective(config)["info"]["seed"] for _ in range(20)]
    assert set(drawn) <= set(nobn.seeds) and len(set(drawn)) > 1


@pytest.mark.parametrize("call, named", [
    (lambda b: b.objective({"lr": 0.01}, fidelity=75), "steps [50, 100, 150]"),
    (lambda b: b.objective({"lr": 0.01}, fidelity={"epochs": 1}), "'steps'"),
    (lambda b: b.objective({"lr": 0.01}, seed=99), "seed 99"),
    (lambda b: b.objective({"lr": 5.0}), "lr=5.0"),
    (lambda b: b.objective({"lr": 0.01, "momentum": 0.9}), "answers lr"),
    (lambda b: b.objective([0.01]), "expected a dict"),
])
def test_bad_calls_name_what_is_wrong(nobn, call, named):
    with pytest.raises(InputError) as err:
        call(nobn)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_name_or_a_missing_folder_names_the_path(tmp_path):
    with pytest.raises(InputError) as err:
        bench("no-such-table")
    assert str(REPO / "results" / "tables" / "no-such-table") in str(err.value) and "nobn" in str(err.value)
    with pytest.raises(InputError) as err:
        bench(tmp_path / "missing" / "table")
    assert str(tmp_path / "missing" / "table") in str(err.value)
    with pytest.raises(InputError) as err:
        bench("nobn", calibration=tmp_path / "no-calibration")
    assert str(tmp_path / "no-calibration") in str(err.value)


def _cell(point: tuple[float, ...], status: str, steps: list[int], accs: list[float | None]) -> Cell:
    """A made-up run at `point` (seed 0), evaluated at `steps`."""
    curve = pd.DataFrame([{"step": s, "epoch": s / 10, "samples": 100 * s, "lr": point[0], "train_loss": 1.0,
                           "val_acc": a, "test_acc": a, "train_s": s / 10, "wall_s": s / 5}
                          for s, a in zip(steps, accs)], columns=list(CURVE_FIELDS)).astype({"val_acc": float,
                                                                                              "test_acc": float})
    return Cell(point, 0, status, curve, steps[-1] / 10 if steps else 0.0, 0.0, "cpu")


def test_a_failed_run_has_no_value_past_its_last_evaluation_and_the_export_refuses_it():
    space = parse_space({"lr": {"low": 0.01, "high": 0.1, "log": True}}, "space")
    table = Table(Path("synthetic"), "nobn", space, {"lr": np.array([0.01, 0.1])}, [0],
                  {((0.01,), 0): _cell((0.01,), "ok", [10, 20], [0.3, 0.4]),
                   ((0.1,), 0): _cell((0.1,), "failed", [10], [0.2])},
                  {"task": {"optimizer": "sgd", "classes": [3, 5]}})
    b = TableBenchmark(table)
    assert b.chance_error == 0.5  # two classes
    assert b.objective({"lr": 0.1}, fidelity=10, seed=0)["function_value"] == pytest.approx(0.8)
    late = b.objective({"lr": 0.1}, fidelity=20, seed=0)
    assert late["function_value"] is None and not late["info"]["recorded"] and "failed" in late["info"]["note"]
    with pytest.raises(InputError, match="no value.*lr=0.1 seed 0 at step 20"):
        to_blackbox(b)


def test_a_two_axis_table_snaps_a_linear_axis_linearly_and_round_trips_through_syne_tune(tmp_path):
    from syne_tune.blackbox_repository.blackbox_tabular import deserialize

    space = parse_space({"lr": {"low": 0.01, "high": 1.0, "log": True}, "momentum": {"low": 0.0, "high": 0.9}}, "space")
    accs = {(0.01, 0.0): 0.2, (0.01, 0.9): 0.3, (1.0, 0.0): 0.4, (1.0, 0.9): 0.5}
    table = Table(Path("synthetic"), "nobn", space, {"lr": np.array([0.01, 1.0]), "momentum": np.array([0.0, 0.9])},
                  [0], {(p, 0): _cell(p, "ok", [10, 20], [acc - 0.1, acc]) for p, acc in accs.items()},
                  {"task": {"optimizer": "sgd"}})
    b = TableBenchmark(table, rng=0)
    # lr's midpoint in log scale is 0.1: 0.09 snaps to 0.01 and 0.11 to 1.0 (on a linear scale both are nearer
    # 0.01); momentum is linear, its midpoint 0.45: 0.5 snaps to 0.9 and 0.4 to 0.0
    assert b.objective({"lr": 0.09, "momentum": 0.5}, seed=0)["info"]["config"] == {"lr": 0.01, "momentum": 0.9}
    assert b.objective({"lr": 0.11, "momentum": 0.4}, seed=0)["info"]["config"] == {"lr": 1.0, "momentum": 0.0}
    blackbox = deserialize(export_syne_tune(b, tmp_path / "synthetic"))["nobn"]
    assert blackbox.objectives_evaluations.shape == (4, 1, 2, 6)
    assert not blackbox.configuration_space["momentum"].log_scale
    for (lr, momentum), acc in accs.items():
        got = blackbox.objective_function({"lr": lr, "momentum": momentum, "task": "nobn"}, {"steps": 20}, seed=0)
        assert got["metric_valid_error"] == pytest.approx(1 - acc, abs=1e-6)
