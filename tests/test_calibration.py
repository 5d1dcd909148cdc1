"""The cost clock (experiment/calibration.py): a calibration measured, trials priced by their steps, and the same
run trained on a quiet and on a loaded machine: the same cost-clock time-to-target, different wall-clock ones."""

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lrsearch.experiment.calibration import COLUMNS, Calibration, calibrate
from lrsearch.training.errors import InputError
from lrsearch.training.tasks import get_task

EXPERIMENT = """
name = "clock"
task = "smoke"
strategies = ["grid"]
budgets = [3]
seeds = [0]
target_acc = 0.2
[space]
lr = { low = 0.01, high = 0.2, log = true }
[task_overrides]
epochs = 1
eval_every = 5
"""


@pytest.mark.usefixtures("jpeg_data")
def test_calibrate_writes_a_median_of_at_least_five_repeats_with_the_machine(tmp_path, monkeypatch):
    from conftest import JPEG

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    with pytest.raises(InputError, match="at least 5 repeats"):
        calibrate([get_task("smoke")], tmp_path, steps=2, repeats=3)
    smoke = get_task("smoke", train_subset=1000, val_size=200, test_subset=200)
    table = calibrate([smoke], tmp_path, steps=3, repeats=5, progress=lambda line: None)
    assert list(table.columns) == COLUMNS
    assert list(table["optimizer"])[:1] == ["sgd"] and "schedulefree-sgd" in set(table["optimizer"])
    assert (table["s_per_step_min"] <= table["s_per_step"]).all() and (table["s_per_step"] <= table["s_per_step_max"]).all()
    assert (table["s_per_step"] > 0).all() and (table["repeats"] == 5).all()
    # Schedule-Free recalibrates BatchNorm before each evaluation (the tiny net has BatchNorm): charged to it
    assert (table.loc[table["optimizer"].str.startswith("schedulefree"), "pre_eval_s"] > 0).all()
    assert (table.loc[table["optimizer"] == "sgd", "pre_eval_s"] == 0).all()
    readme = (tmp_path / "README.md").read_text()
    assert "processor:" in readme and "git commit" in readme and "versions" in readme
    clock = Calibration.load(tmp_path)
    assert clock.rate("smoke", "sgd")[0] == pytest.approx(float(table.loc[0, "s_per_step"]))
    with pytest.raises(InputError, match="no calibration of workload 'nobn'"):
        clock.rate("nobn", "sgd")


def test_a_timed_block_waits_for_the_devices_queued_work_at_both_ends():
    """On a GPU a step's kernels run after its Python call returns: a block is timed from a synchronised start to
    a synchronised end, so queued work (here a 50 ms sleep standing for it) is inside the block's seconds."""
    import time

    from lrsearch.experiment.calibration import _timed

    calls = []
    seconds = _timed(lambda: calls.append("step"), 3, sync=lambda: (calls.append("sync"), time.sleep(0.05)))
    assert calls == ["sync", "step", "step", "step", "sync"]
    assert seconds >= 0.05


def test_calibrating_a_gpu_that_is_not_there_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(InputError, match="--device cuda: torch sees no GPU"):
        calibrate([get_task("smoke")], tmp_path, device="cuda")
    with pytest.raises(InputError, match="--device tpu: expected cpu or cuda"):
        calibrate([get_task("smoke")], tmp_path, device="tpu")


@pytest.mark.usefixtures("jpeg_data")
def test_a_loaded_machine_changes_wall_clock_time_to_target_not_the_cost_clock(tmp_path, monkeypatch):
    from conftest import JPEG

    from lrsearch.experiment.config import load_experiment
    from lrsearch.experiment.runner import run_experiment
    from lrsearch.reporting.report import build_report
    from lrsearch.reporting.tables import build_tables

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    config = tmp_path / "clock.toml"
    config.write_text(EXPERIMENT)
    rate = 0.01  # a calibration of 10 ms per step (its measurement is the test above)
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    pd.DataFrame([{"workload": "smoke", "optimizer": "sgd", "s_per_step": rate, "s_per_step_min": rate,
                   "s_per_step_max": rate, "repeats": 5, "steps": 20, "batch_size": 100, "pre_eval_s": 0.0,
                   "threads": 1}]).to_csv(calibration / "calibration.csv", index=False)
    clock = Calibration.load(calibration)

    quiet = run_experiment(load_experiment(config), tmp_path / "quiet", progress=False)
    # four busy processes beside the run (plain subprocesses: multiprocessing would leave its resource tracker
    # running in this worker, which the Ray tests would count as a process left behind)
    spin = "import time\nend = time.time() + 120\nwhile time.time() < end:\n    pass"
    load = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(4)]
    try:
        loaded = run_experiment(load_experiment(config), tmp_path / "loaded", progress=False)
    finally:
        for p in load:
            p.kill()
            p.wait()

    a, b = (build_tables(folder, 0.2, calibration=clock) for folder in (quiet, loaded))
    ta, tb = a["trials"].sort_values("trial_index"), b["trials"].sort_values("trial_index")
    assert ta["steps_to_target"].notna().any(), "no trial reached the target: the test measures nothing"
    # the cost clock: steps to the target x 10 ms, whatever the machine did meanwhile
    assert ta["time_to_target_s"].tolist() == pytest.approx(tb["time_to_target_s"].tolist(), nan_ok=True)
    assert ta["time_to_target_s"].dropna().tolist() == pytest.approx((ta["steps_to_target"].dropna() * rate).tolist())
    assert a["runs"]["search_time_to_target_s"].tolist() == pytest.approx(b["runs"]["search_time_to_target_s"].tolist())
    # the wall clock, kept beside it: not the same
    assert ta["wall_time_to_target_s"].tolist() != tb["wall_time_to_target_s"].tolist()
    report = Path(build_report(loaded, calibration=calibration)).read_text()
    assert "cost clock" in report and str(calibration / "calibration.csv") in report
    assert "wall-clock training seconds" in Path(build_report(quiet)).read_text()


def test_the_cost_clock_charges_each_strategys_calibrated_decision_seconds(tmp_path):
    from lrsearch.reporting.tables import cost_clock, runs_table

    rate = 0.01
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    pd.DataFrame([{"workload": "smoke", "optimizer": "sgd", "s_per_step": rate, "s_per_step_min": rate,
                   "s_per_step_max": rate, "repeats": 5, "steps": 20, "batch_size": 100, "pre_eval_s": 0.0,
                   "threads": 1}]).to_csv(calibration / "calibration.csv", index=False)
    trials = pd.DataFrame([{"task": "smoke", "strategy": "random", "budget": 2, "seed": 0, "run_status": "complete",
                            "trial_id": i + 1, "trial_index": i, "kind": "train", "params": '{"lr": 0.1}', "lr": 0.1,
                            "status": "ok", "value": v, "final_test_acc": v, "train_s": 9.0, "wall_s": 9.0,
                            "overhead_s": 0.5, "time_to_target_s": ttt, "steps_to_target": stt, "steps": 100,
                            "extra": "{}"} for i, (v, ttt, stt) in enumerate([(0.1, math.nan, math.nan),
                                                                              (0.5, 4.0, 50)])])
    curves = pd.DataFrame({"kind": "train", "trial_id": [1, 1, 2, 2], "step": [50, 100, 50, 100]})
    without = runs_table(cost_clock(trials, curves, Calibration.load(calibration)))
    pd.DataFrame({"strategy": "random", "trial_index": [0, 1], "decision_s": [2.0, 3.0], "decision_s_min": 0.0,
                  "decision_s_max": 0.0, "runs": 1}).to_csv(calibration / "decisions.csv", index=False)
    charged = runs_table(cost_clock(trials, curves, Calibration.load(calibration)))
    # trial 0: 100 steps x 10 ms; trial 1 reaches the target at step 50: 0.5 s
    assert without["search_time_to_target_s"].iloc[0] == pytest.approx(1.0 + 0.5)
    assert charged["search_time_to_target_s"].iloc[0] == pytest.approx(2.0 + 1.0 + 3.0 + 0.5)
