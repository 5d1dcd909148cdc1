"""A table is a workload: trials answered from recorded runs (experiment/table.py), on a simulated clock with K
workers (runner.py's `_SimulatedRecording`), through the one runner.

References: the committed nobn table read with plain sqlite3; a tabulated function with a known answer; a table
written by hand with the store (`write_table`: known curves and seconds); the calibration's published rate; a run
resumed after its last trials were dropped."""

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrsearch.experiment.calibration import Calibration
from lrsearch.experiment.config import ConfigError, Experiment, load_experiment
from lrsearch.experiment.runner import run_experiment
from lrsearch.experiment.store import Store, TrialRecord
from lrsearch.experiment.table import Table, TableWorkload
from lrsearch.experiment.tabulation import tabulation
from lrsearch.reporting.tables import runs_table

ROOT = Path(__file__).resolve().parents[1]
NOBN = ROOT / "results" / "tables" / "nobn"
CALIBRATION = ROOT / "results" / "calibration"


def write_table(folder: Path, cells: dict[float, tuple[str, list[tuple[int, float | None, float]]]],
                seeds=(0,), task: str = "smoke", space: dict | None = None) -> Path:
    """A table written by hand with the store, as `lrsearch tabulate` leaves one: for each seed, a grid run whose
    trial at `lr` has the status and curve `cells[lr]` gives, a curve as (step, val_acc, train_s) rows (val_acc
    None: no accuracy, as the trainer records a diverged evaluation); `cells` may also be a function of (lr, seed)
    returning that pair. Exact curves and seconds: a trial's answer and its place on the clock are known."""
    space = space or {"lr": {"low": min(cells), "high": max(cells), "log": True}}
    folder.mkdir(parents=True, exist_ok=True)
    store = Store(folder / "results.sqlite", create=True)
    env = {"command": "test", "date": "-", "device": "-", "git_commit": "-", "versions": {}}
    for seed in seeds:
        run = store.open_run(experiment="hand-made-table", task=task, strategy="grid", budget=len(cells), seed=seed,
                             environment=env)
        for i, (lr, cell) in enumerate(cells.items()):
            status, curve = cell(lr, seed) if callable(cell) else cell
            rows = [{"step": step, "val_acc": acc, "test_acc": acc, "train_s": train_s} for step, acc, train_s in curve]
            store.add_trial(TrialRecord(run_id=run, trial_index=i, kind="train", params={"lr": float(lr)}, lr=float(lr),
                                        status=status, value=rows[-1]["val_acc"], train_s=rows[-1]["train_s"],
                                        overhead_s=0.0, curve=rows))
        store.complete_run(run)
    store.close()
    (folder / "experiment.json").write_text(json.dumps({"space": space}))
    return folder


def stored_curve(lr: float, seed: int) -> pd.DataFrame:
    """The nobn table's recorded curve at (lr, seed), read with sqlite3 alone."""
    with sqlite3.connect(NOBN / "results.sqlite") as conn:
        return pd.read_sql_query(
            "SELECT c.step, c.val_acc, c.train_s, t.status FROM curves c JOIN trials t USING (trial_id) "
            "JOIN runs r USING (run_id) WHERE r.seed = ? AND abs(t.lr - ?) < 1e-12 ORDER BY c.step", conn,
            params=(seed, lr))


@pytest.fixture(scope="module")
def nobn() -> Table:
    return Table.load(NOBN)


def test_the_nobn_table_is_a_32_point_log_grid_with_10_seeds(nobn):
    lrs = nobn.axes["lr"]
    assert len(lrs) == 32 and nobn.seeds == list(range(10)) and len(nobn.cells) == 320
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1.0)
    assert np.diff(np.log(lrs)) == pytest.approx(np.full(31, math.log(1000) / 31))


def test_a_proposal_snaps_to_the_nearest_grid_point_in_log_scale(nobn):
    lrs = nobn.axes["lr"]
    a, b = lrs[10], lrs[11]
    above_middle = math.exp((math.log(a) + math.log(b)) / 2) * 1.001  # nearer b in log, nearer a linearly
    assert above_middle - a < b - above_middle
    assert nobn.snap({"lr": above_middle}) == (b,)
    assert nobn.snap({"lr": 5.0}) == (lrs[-1],) and nobn.snap({"lr": 1e-9}) == (lrs[0],)
    with pytest.raises(Exception, match="the table answers lr"):
        nobn.snap({"lr": 0.1, "weight_decay": 1e-4})


def test_a_trial_returns_the_recorded_curve_of_the_drawn_seed(nobn):
    workload = TableWorkload(nobn, target=0.43, calibration=Calibration.load(CALIBRATION))
    point = nobn.snap({"lr": 0.07})
    result = workload.trial({"lr": 0.07}, seed=3)
    recorded = result.notes["recorded_seed"]
    assert result.notes["table_point"] == {"lr": point[0]}
    stored = stored_curve(point[0], recorded)
    assert [r["step"] for r in result.curve] == stored["step"].tolist()
    assert [r["val_acc"] for r in result.curve] == stored["val_acc"].tolist()
    assert result.final_val_acc == stored["val_acc"].iloc[-1] and result.status == stored["status"].iloc[0]
    hit = stored[stored["val_acc"] >= 0.43]
    assert result.steps_to_target == (int(hit["step"].iloc[0]) if len(hit) else None)
    # its price: steps x the calibrated seconds per step of nobn under its own optimizer (SGD)
    rate = pd.read_csv(CALIBRATION / "calibration.csv").query("workload == 'nobn' and optimizer == 'sgd'")
    assert workload.price({"lr": 0.07}, result.steps, 3) == pytest.approx(result.steps * rate["s_per_step"].iloc[0])


def test_the_recorded_seed_is_drawn_per_point_and_repeats(nobn):
    counts = np.bincount([nobn.draw_seed(run, p) for run in range(20) for p in nobn.points], minlength=10)
    assert counts.sum() == 640 and counts.min() > 40 and counts.max() < 90  # about uniform (64 each)
    draws = [nobn.draw_seed(7, p) for p in nobn.points]
    assert draws == [nobn.draw_seed(7, p) for p in nobn.points]  # the same run asks again: the same answers
    assert draws != [nobn.draw_seed(8, p) for p in nobn.points]


def test_a_pruning_hook_stops_the_answered_curve_where_it_says(nobn):
    workload = TableWorkload(nobn, target=0.43)
    seen = []
    result = workload.trial({"lr": 0.05}, seed=0, report=lambda step, value: seen.append(step) or step >= 100)
    assert result.status == "pruned" and seen == [50, 100] and [r["step"] for r in result.curve] == [50, 100]


def _experiment(tmp_path, workers: int, strategies=("random", "grid"), budget=8, seeds=3, **more) -> Experiment:
    return Experiment(name="nobn-table", task="nobn", table=str(NOBN), calibration=str(CALIBRATION),
                      strategies=list(strategies), budgets=[budget], seeds=seeds, target_acc=0.43,
                      space={"lr": {"low": 1e-3, "high": 1.0, "log": True}},
                      executor={"kind": "simulated", "workers": workers}, results=str(tmp_path / f"k{workers}"), **more)


def _trials(out: Path) -> pd.DataFrame:
    store = Store(out / "results.sqlite", create=False)
    try:
        return store.trials_frame()
    finally:
        store.close()


def test_one_simulated_worker_runs_trials_back_to_back_on_the_cost_clock(tmp_path):
    out = run_experiment(_experiment(tmp_path, 1), progress=False)
    trials = _trials(out)
    calibration = Calibration.load(CALIBRATION)
    rate = calibration.rate("nobn", "sgd")[0]
    for _, run in trials.groupby("run_id"):
        run = run.sort_values("trial_index")
        sim = [json.loads(e)["simulated"] for e in run["extra"]]
        prices = run["steps"].to_numpy() * rate
        # each trial waits for its strategy's calibrated decision (none where the calibration has no decisions.csv)
        decisions = np.array([calibration.decision_s(s, i) or 0.0 for s, i in zip(run["strategy"], run["trial_index"])])
        starts = np.cumsum(decisions) + np.concatenate([[0], np.cumsum(prices)[:-1]])
        assert [s["start_s"] for s in sim] == pytest.approx(starts)
        assert [s["finish_s"] for s in sim] == pytest.approx(starts + prices)
    assert len(trials) == 2 * 3 * 8 and (trials["device"].str.startswith("table")).all()


def test_four_workers_start_four_trials_at_once_and_reach_the_target_sooner(tmp_path):
    one, four = (_trials(run_experiment(_experiment(tmp_path, k, ("random",)), progress=False)) for k in (1, 4))
    # random search proposes the same configurations whatever K: only when they run changes
    assert one.sort_values(["seed", "trial_index"])["params"].tolist() == \
        four.sort_values(["seed", "trial_index"])["params"].tolist()
    for _, run in four.groupby("run_id"):
        sim = [json.loads(e)["simulated"] for e in run.sort_values("trial_index")["extra"]]
        first_finish = min(s["finish_s"] for s in sim[:4])
        # the first four start at once (only the strategy's calibrated decisions, about a millisecond, apart)
        assert max(s["start_s"] for s in sim[:4]) < 0.01 < first_finish <= min(s["start_s"] for s in sim[4:])
    ttt_one = runs_table(one)["search_time_to_target_s"].to_numpy()
    ttt_four = runs_table(four)["search_time_to_target_s"].to_numpy()
    reached = np.isfinite(ttt_one)
    assert reached.any() and (ttt_four[reached] <= ttt_one[reached] + 1e-9).all()


def test_a_simulated_run_resumes_to_the_same_clock(tmp_path):
    experiment = _experiment(tmp_path, 4, ("optuna-tpe",), options={"optuna-tpe": {"n_startup_trials": 3}}, seeds=1)
    out = run_experiment(experiment, progress=False)
    before = _trials(out)
    store = Store(out / "results.sqlite", create=False)
    run_id = int(before["run_id"].iloc[0])
    store.drop_trials_from(run_id, 5)  # as if the process died after 5 trials
    store.conn.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", (run_id,))
    store.conn.commit()
    store.close()
    after = _trials(run_experiment(experiment, progress=False))
    assert len(after) == 8
    assert after["params"].tolist() == before["params"].tolist()
    assert [json.loads(e)["simulated"] for e in after["extra"]] == [json.loads(e)["simulated"] for e in before["extra"]]


# ---------------------------------------------------------------- a table of several dimensions, known answer

OBJECTIVE = '''
import math

def objective(params, report, seed):
    # a known answer: a bump in log10(lr), shifted by weight decay, plus 0.001 x seed; evaluations at steps 10, 20
    base = 0.8 - 0.1 * (math.log10(params["lr"]) + 2) ** 2 - 0.05 * abs(math.log10(params["weight_decay"]) + 4)
    for step in (10, 20):
        report(step, base * step / 20 + 0.001 * seed)
'''


def known(lr, wd, seed, step=20):
    return (0.8 - 0.1 * (math.log10(lr) + 2) ** 2 - 0.05 * abs(math.log10(wd) + 4)) * step / 20 + 0.001 * seed


@pytest.fixture(scope="module")
def grid_table(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("grid")
    (where / "fn.py").write_text(OBJECTIVE)
    experiment = Experiment(name="bump", task=f"{where}/fn.py:objective", strategies=["grid"], budgets=[1], seeds=[0],
                            space={"lr": {"low": 1e-4, "high": 1.0, "log": True},
                                   "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True}})
    table = tabulation(experiment, n_lrs=5, seeds=[0, 1], results=str(where / "table"), points={"weight_decay": 3})
    return run_experiment(table, progress=False)


def test_a_grid_of_two_dimensions_answers_the_known_value_at_the_snapped_point(grid_table):
    table = Table.load(grid_table)
    assert {n: len(v) for n, v in table.axes.items()} == {"lr": 5, "weight_decay": 3} and table.seeds == [0, 1]
    assert table.axes["weight_decay"] == pytest.approx([1e-6, 1e-4, 1e-2])
    workload = TableWorkload(table)
    result = workload.trial({"lr": 0.012, "weight_decay": 2e-4}, seed=5)  # nearest: lr 1e-2, wd 1e-4 (log)
    point, seed = result.notes["table_point"], result.notes["recorded_seed"]
    assert point == pytest.approx({"lr": 1e-2, "weight_decay": 1e-4})
    assert result.final_val_acc == pytest.approx(known(1e-2, 1e-4, seed))
    assert [r["val_acc"] for r in result.curve] == pytest.approx([known(1e-2, 1e-4, seed, s) for s in (10, 20)])


def test_every_strategy_runs_on_a_grid_table_through_the_runner(grid_table, tmp_path):
    fn = f"{grid_table.parent}/fn.py:objective"
    experiment = Experiment(name="bump-search", task=fn, table=str(grid_table), strategies=["random", "optuna-tpe"],
                            budgets=[6], seeds=2, space={"lr": {"low": 1e-4, "high": 1.0, "log": True},
                                                         "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True}},
                            executor={"kind": "simulated", "workers": 2}, results=str(tmp_path / "search"))
    trials = _trials(run_experiment(experiment, progress=False))
    assert len(trials) == 2 * 2 * 6
    for t in trials.itertuples():
        extra = json.loads(t.extra)
        p = extra["table_point"]
        assert t.value == pytest.approx(known(p["lr"], p["weight_decay"], extra["recorded_seed"]))


@pytest.mark.parametrize("change, says", [
    ({"space": {"lr": {"low": 1e-5, "high": 1.0, "log": True}}}, "reaches outside the table's grid"),
    ({"space": {"lr": {"low": 1e-3, "high": 1.0, "log": True}, "weight_decay": {"low": 1e-4, "high": 1e-2}}},
     "the table answers lr; search exactly those"),
    ({"strategies": ["random", "lr-range-clr"]}, "lr-range-clr: a table holds fixed-schedule runs"),
    ({"task": "cpu"}, "records task 'nobn', not 'cpu'"),
    ({"task_overrides": {"epochs": 4}}, "task_overrides: a table's training is fixed"),
    ({"table": "no/such/folder"}, "table no/such/folder: no results.sqlite"),
])
def test_what_a_table_cannot_answer_stops_with_the_field_named(change, says):
    config = {"name": "t", "task": "nobn", "table": str(NOBN), "strategies": ["random"], "budgets": [4], "seeds": [0],
              "space": {"lr": {"low": 1e-3, "high": 1.0, "log": True}}} | change
    with pytest.raises(ConfigError, match=says):
        Experiment(**config)


def test_a_simulated_executor_needs_a_table():
    with pytest.raises(ConfigError, match="a simulated clock needs the trials' costs from a table"):
        Experiment(name="t", task="smoke", strategies=["random"], budgets=[4], seeds=[0],
                   executor={"kind": "simulated", "workers": 4})


def test_calibrated_decision_seconds_are_charged_before_each_trial(tmp_path):
    clock = tmp_path / "calibration"
    clock.mkdir()
    (clock / "calibration.csv").write_text((CALIBRATION / "calibration.csv").read_text())
    # random: 1 s before its first two trials, 2 s before each later one (the last measured index carries on)
    pd.DataFrame({"strategy": "random", "trial_index": [0, 1, 2], "decision_s": [1.0, 1.0, 2.0],
                  "decision_s_min": 0.0, "decision_s_max": 0.0, "runs": 1}).to_csv(clock / "decisions.csv", index=False)
    experiment = _experiment(tmp_path, 1, ("random",), seeds=1).model_copy(update={"calibration": str(clock)})
    trials = _trials(run_experiment(experiment, progress=False)).sort_values("trial_index")
    rate = Calibration.load(clock).rate("nobn", "sgd")[0]
    sim = [json.loads(e)["simulated"] for e in trials["extra"]]
    decisions = [1.0, 1.0] + [2.0] * 6
    assert [s["decision_s"] for s in sim] == decisions
    assert [s["start_s"] for s in sim] == pytest.approx(
        np.cumsum(decisions) + np.concatenate([[0], np.cumsum(trials["steps"].to_numpy() * rate)[:-1]]))


def test_decision_seconds_are_measured_per_strategy_and_trial_index(tmp_path):
    from lrsearch.experiment.decisions import measure_decisions

    table = measure_decisions(NOBN, tmp_path, ["random", "optuna-tpe"], seeds=2, budget=5, progress=lambda _: None)
    assert set(table["strategy"]) == {"random", "optuna-tpe"} and (table["runs"] == 2).all()
    assert sorted(table["trial_index"].unique()) == [0, 1, 2, 3, 4] and (table["decision_s"] > 0).all()
    clock = Calibration(pd.DataFrame(), tmp_path / "calibration.csv", decisions=pd.read_csv(tmp_path / "decisions.csv"))
    tpe = table.set_index(["strategy", "trial_index"])["decision_s"]
    assert clock.decision_s("optuna-tpe", 4) == tpe[("optuna-tpe", 4)] and clock.decision_s("optuna-tpe", 40) == tpe[
        ("optuna-tpe", 4)] and clock.decision_s("grid", 0) is None
    assert "DECISIONS" in (tmp_path / "DECISIONS.md").read_text().upper()
    # a slow tool measured apart, with its own options: it joins the table, the others keep their rows
    before = pd.read_csv(tmp_path / "decisions.csv")
    measure_decisions(NOBN, tmp_path, ["optuna-gp"], seeds=1, budget=3, progress=lambda _: None,
                      options={"optuna-gp": {"n_startup_trials": 2}})
    after = pd.read_csv(tmp_path / "decisions.csv")
    assert set(after["strategy"]) == {"random", "optuna-tpe", "optuna-gp"}
    pd.testing.assert_frame_equal(after[after["strategy"] != "optuna-gp"].reset_index(drop=True), before)
    notes = (tmp_path / "DECISIONS.md").read_text()
    assert notes.count("Each strategy ran") == 2 and "## Then optuna-gp" in notes and "n_startup_trials': 2" in notes


def test_a_report_names_the_strategies_that_could_not_use_the_simulated_workers(tmp_path):
    from lrsearch.reporting.report import build_report

    experiment = _experiment(tmp_path, 4, ("random", "hyperopt-tpe"), budget=4, seeds=1)
    out = run_experiment(experiment, progress=False)
    widths = {s: {json.loads(e)["simulated"]["workers"] for e in g["extra"]} for s, g in _trials(out).groupby("strategy")}
    assert widths == {"random": {4}, "hyperopt-tpe": {1}}
    report = build_report(out).read_text()
    assert "With 4 workers, hyperopt-tpe ran one trial at a time" in report and "placed on a simulated clock" in report


# ---------------------------------------------------------------- a table written by hand: exact answers

STEPS = [10, 20, 30]


def bump(lr: float, step: int, seed: int) -> float:
    """A synthetic learning curve: a bump in log-LR peaking at 0.1, rising with steps, a seed offset."""
    return 0.1 + 0.5 * math.exp(-(math.log10(lr) + 1.0) ** 2) * step / STEPS[-1] + 0.01 * seed


def bump_cells(n_lrs: int = 24, diverge_above: float = 1.0) -> dict:
    """`write_table`'s cells of the bump on n_lrs log-spaced LRs in [1e-3, 3]: 0.01 s per step; above
    `diverge_above` a run diverges at its first evaluation (no accuracy)."""
    def cell(lr, seed):
        if lr > diverge_above:
            return "diverged", [(STEPS[0], None, 0.01 * STEPS[0])]
        return "ok", [(s, bump(lr, s, seed), 0.01 * s) for s in STEPS]
    return {float(lr): cell for lr in np.geomspace(1e-3, 3.0, n_lrs)}


@pytest.fixture(scope="module")
def bump_table(tmp_path_factory) -> Path:
    return write_table(tmp_path_factory.mktemp("bump") / "table", bump_cells(), seeds=(0, 1, 2))


def test_a_hand_written_table_answers_its_curve_time_to_target_and_pruning_exactly(bump_table):
    table = Table.load(bump_table)
    assert table.task == "smoke" and table.seeds == [0, 1, 2] and len(table.axes["lr"]) == 24
    lr = float(table.axes["lr"][12])
    workload = TableWorkload(table, target=0.3)
    seen = []
    full = workload.trial({"lr": lr}, seed=0, report=lambda step, acc: seen.append(step) or False)
    seed = full.notes["recorded_seed"]
    assert seen == STEPS and full.status == "ok" and full.train_s == pytest.approx(0.3)
    assert [r["val_acc"] for r in full.curve] == pytest.approx([bump(lr, s, seed) for s in STEPS])
    first_hit = next(s for s in STEPS if bump(lr, s, seed) >= 0.3)
    assert full.steps_to_target == first_hit and full.time_to_target_s == pytest.approx(0.01 * first_hit)

    pruned = workload.trial({"lr": lr}, seed=0, report=lambda step, acc: step >= 20)
    assert pruned.status == "pruned" and pruned.train_s == pytest.approx(0.2)
    assert pruned.final_val_acc == pytest.approx(bump(lr, 20, seed))


def test_a_diverged_cell_answers_diverged_with_its_short_cost(bump_table):
    result = TableWorkload(Table.load(bump_table), target=0.3).trial({"lr": 2.5}, seed=0)
    assert result.status == "diverged" and result.final_val_acc is None and result.train_s == pytest.approx(0.1)
    assert [r["step"] for r in result.curve] == STEPS[:1]


def test_seed_count_and_tabulation_config(tmp_path):
    experiment = load_experiment(ROOT / "experiments" / "budgets-replay.toml")
    assert experiment.seeds == list(range(100)) and max(experiment.budgets) == 32
    assert experiment.table == "results/tables/nobn" and experiment.executor.kind == "simulated"
    table = tabulation(load_experiment(ROOT / "experiments" / "benchmark-cpu.toml"), 48)
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
def test_tabulate_records_real_trials_that_the_table_answers(tmp_path):
    from conftest import JPEG

    config = tmp_path / "exp.toml"
    config.write_text('name = "tab"\ntask = "smoke"\nstrategies = ["random"]\nbudgets = [2]\nseeds = [0]\n'
                      f'results = "{tmp_path / "tab"}"\n[space]\nlr = {{ low = 0.01, high = 0.3, log = true }}\n')
    done = subprocess.run([sys.executable, "-m", "lrsearch", "tabulate", str(config), "--lrs", "3", "--seeds", "0",
                           "--data", str(JPEG)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    table = Table.load(tmp_path / "tab-table")
    assert table.task == "smoke" and table.seeds == [0]
    assert table.axes["lr"] == pytest.approx([0.01, math.sqrt(0.003), 0.3])
    trials = pd.read_csv(tmp_path / "tab-table" / "tables" / "trials.csv")
    recorded = trials.iloc[1]
    answered = TableWorkload(table, 0.25).trial({"lr": recorded["lr"]}, seed=0)
    assert answered.final_val_acc == pytest.approx(recorded["value"])
    assert answered.train_s == pytest.approx(recorded["train_s"], rel=1e-6)
    assert answered.final_val_acc > 0.15  # the smoke task learns above chance at these LRs
