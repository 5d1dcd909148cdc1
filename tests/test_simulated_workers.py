"""K parallel workers on a simulated clock, through the one runner (runner.py's `_SimulatedRecording`, a table's
trials): a schedule worked out by hand on a table written by hand, the K = 1 clock against the local executor on
the same table, decision time charged to the clock, a strategy that cannot run in parallel kept at one trial at a
time, Optuna's constant liar with trials in flight, and the K-worker tables (reporting/parallel.py)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_table import write_table

from lrsearch.experiment.config import Experiment
from lrsearch.experiment.runner import run_experiment
from lrsearch.experiment.store import Store
from lrsearch.reporting.parallel import parallel_runs, parallel_summary, simulated_trials
from lrsearch.reporting.tables import runs_table
from lrsearch.search.strategies.optuna_ import OptunaTPE

REPO = Path(__file__).resolve().parents[1]
NOBN = REPO / "results" / "tables" / "nobn"
CALIBRATION = REPO / "results" / "calibration"
NOBN_SPACE = {"lr": {"low": 1e-3, "high": 1.0, "log": True}}
TARGET = 0.43  # the nobn task's

# The hand-made table: five LRs (the five points grid proposes at budget 5, in this order), one seed, each with
# its training seconds and the seconds into its training at which it reaches the target 0.5 (None: never).
LRS = [float(x) for x in np.geomspace(1e-3, 1.0, 5)]
COSTS = dict(zip(LRS, [(3.0, None), (1.0, None), (2.0, 0.5), (1.0, None), (2.0, 1.5)]))


def _cells() -> dict:
    """`write_table`'s cells: two evaluations, the first at the time to target (0.6 >= 0.5), else half-way."""
    return {lr: ("ok", [(10, 0.1, train_s / 2), (20, 0.2, train_s)] if ttt is None else
                 [(10, 0.6, ttt), (20, 0.7, train_s)]) for lr, (train_s, ttt) in COSTS.items()}


@pytest.fixture(scope="module")
def hand_table(tmp_path_factory) -> Path:
    return write_table(tmp_path_factory.mktemp("hand") / "table", _cells())


def _trials(out: Path) -> pd.DataFrame:
    store = Store(out / "results.sqlite", create=False)
    try:
        return store.trials_frame().sort_values(["strategy", "seed", "trial_index"]).reset_index(drop=True)
    finally:
        store.close()


def _clock(trials: pd.DataFrame) -> list[dict]:
    return [json.loads(e)["simulated"] for e in trials["extra"]]


def _on_hand_table(table: Path, out: Path, workers: int, strategy: str = "grid", on_trial=None) -> Path:
    experiment = Experiment(name="hand", task="smoke", table=str(table), strategies=[strategy], budgets=[5],
                            seeds=[0], target_acc=0.5, space={"lr": {"low": 1e-3, "high": 1.0, "log": True}},
                            executor={"kind": "simulated", "workers": workers}, results=str(out))
    return run_experiment(experiment, progress=False, on_trial=on_trial)


def test_two_workers_follow_the_schedule_worked_out_by_hand(hand_table, tmp_path):
    told = []
    two = _trials(_on_hand_table(hand_table, tmp_path / "k2", 2, on_trial=lambda spec, ev: told.append(ev.params["lr"])))
    clock = _clock(two)
    # t=0: LRS[0] [0, 3] and LRS[1] [0, 1]; LRS[1] ends at 1: LRS[2] [1, 3]; at 3 both end, the first submitted
    # (LRS[0]) first: LRS[3] [3, 4], then LRS[4] [3, 5]; LRS[2] reaches the target at 1 + 0.5, LRS[4] at 3 + 1.5
    assert [json.loads(p)["lr"] for p in two["params"]] == pytest.approx(LRS)
    assert [c["start_s"] for c in clock] == [0.0, 0.0, 1.0, 3.0, 3.0]
    assert [c["finish_s"] for c in clock] == [3.0, 1.0, 3.0, 4.0, 5.0]
    assert [c["reached_at_s"] for c in clock] == [None, None, 1.5, None, 4.5]
    assert told == pytest.approx([LRS[1], LRS[0], LRS[2], LRS[3], LRS[4]])  # recorded in the order they finish
    assert set(c["workers"] for c in clock) == {2}

    one = _clock(_trials(_on_hand_table(hand_table, tmp_path / "k1", 1)))
    assert [c["start_s"] for c in one] == [0.0, 3.0, 4.0, 6.0, 7.0]  # one at a time: back to back
    assert [c["reached_at_s"] for c in one] == [None, None, 4.5, None, 8.5]


def test_run_and_summary_tables_read_the_schedule(hand_table, tmp_path):
    folders = [_on_hand_table(hand_table, tmp_path / f"k{k}", k) for k in (1, 2)]
    trials = pd.concat([simulated_trials(f) for f in folders], ignore_index=True)
    assert sorted(trials["workers"].unique()) == [1, 2] and not trials["ran_sequentially"].any()
    runs = parallel_runs(trials)
    assert runs["wall_to_target_s"].tolist() == [4.5, 1.5] and runs["makespan_s"].tolist() == [9.0, 5.0]
    summary = parallel_summary(runs).set_index("workers")
    assert summary.loc[2, "speedup"] == pytest.approx(4.5 / 1.5) and summary.loc[2, "makespan_speedup"] == pytest.approx(9 / 5)
    assert summary.loc[1, "speedup"] == 1.0

    # a seed that never reaches the target counts as infinitely slow: a median of inf has no speed-up
    never = runs.assign(wall_to_target_s=[4.5, np.nan], reached_target=[True, False])
    summary = parallel_summary(never).set_index("workers")
    assert summary.loc[2, "success_rate"] == 0.0 and np.isnan(summary.loc[2, "speedup"])


def test_a_strategy_that_cannot_run_in_parallel_runs_one_trial_at_a_time(hand_table, tmp_path):
    clock = _clock(_trials(_on_hand_table(hand_table, tmp_path / "k4", 4, strategy="hyperopt-tpe")))
    assert {c["workers"] for c in clock} == {1}
    assert [c["start_s"] for c in clock[1:]] == [c["finish_s"] for c in clock[:-1]]  # back to back, as K = 1
    assert clock[0]["start_s"] == 0.0


def _nobn(out: Path, workers: int | None, strategies=("optuna-tpe",), budget=6, seeds=2, startup=3, **more) -> Path:
    """A search on the committed nobn table; workers None: the local executor (no clock), one trial at a time."""
    executor = {"kind": "simulated", "workers": workers} if workers else {}
    options = {s: {"n_startup_trials": startup} for s in strategies if s in ("optuna-tpe", "hyperopt-tpe")}
    experiment = Experiment(name="nobn-k", task="nobn", table=str(NOBN), strategies=list(strategies),
                            budgets=[budget], seeds=seeds, target_acc=TARGET, space=NOBN_SPACE, options=options,
                            executor=executor, results=str(out), **more)
    return run_experiment(experiment, progress=False)


def test_one_simulated_worker_reproduces_the_local_run_trial_for_trial(tmp_path):
    """The simulated executor changes when trials run, nothing else: at K = 1 (no calibration, so no decision
    seconds, and a trial's price is its recorded seconds) the trials are the local executor's on the same table,
    back to back on the clock, and the clock's time-to-target is the sequential search time-to-target."""
    local, one = _trials(_nobn(tmp_path / "local", None)), _trials(_nobn(tmp_path / "k1", 1))
    assert len(local) == len(one) == 2 * 6
    for column in ("params", "status", "value", "train_s", "time_to_target_s"):
        assert local[column].equals(one[column]), column
    for _, run in one.groupby("seed"):
        clock = _clock(run)
        assert [c["start_s"] for c in clock] == pytest.approx(np.cumsum(run["train_s"]) - run["train_s"])
    times = [runs_table(t.assign(run_status="complete"))["search_time_to_target_s"].to_numpy(dtype=float)
             for t in (local, one)]
    assert np.allclose(times[0], times[1], equal_nan=True)


def test_decision_time_is_charged_to_the_clock_before_every_start(tmp_path):
    """One driver decides for all workers: with K = 2 each trial starts only after every decision before it."""
    clock_dir = tmp_path / "calibration"
    clock_dir.mkdir()
    (clock_dir / "calibration.csv").write_text((CALIBRATION / "calibration.csv").read_text())
    pd.DataFrame({"strategy": "random", "trial_index": [0], "decision_s": [1.0], "decision_s_min": 0.0,
                  "decision_s_max": 0.0, "runs": 1}).to_csv(clock_dir / "decisions.csv", index=False)
    clock = _clock(_trials(_nobn(tmp_path / "out", 2, ("random",), budget=6, seeds=1, calibration=str(clock_dir))))
    assert [c["decision_s"] for c in clock] == [1.0] * 6
    assert [c["start_s"] for c in clock[:2]] == [1.0, 2.0]  # both workers free: the second waits for two decisions
    assert all(c["start_s"] >= i + 1.0 for i, c in enumerate(clock)), [c["start_s"] for c in clock]


def test_optuna_tpe_with_four_workers_asks_four_before_the_first_tell_and_lies_about_them(tmp_path, monkeypatch):
    calls: list[str] = []
    ask, tell = OptunaTPE._ask, OptunaTPE._tell
    monkeypatch.setattr(OptunaTPE, "_ask", lambda self: calls.append("ask") or ask(self))
    monkeypatch.setattr(OptunaTPE, "_tell", lambda self, p, e: calls.append("tell") or tell(self, p, e))

    def run(name):
        calls.clear()
        trials = _trials(_nobn(tmp_path / name, 4, ("optuna-tpe",), budget=12, seeds=[3], startup=4))
        return list(calls), [json.loads(p)["lr"] for p in trials["params"]], [c["start_s"] for c in _clock(trials)]

    order, lrs, starts = run("liar")
    assert order[:5] == ["ask"] * 4 + ["tell"] and starts[:4] == [0.0] * 4
    assert len(set(lrs)) == len(lrs) == 12
    assert run("again")[1:] == (lrs, starts)  # seeded: the same proposals on the same schedule

    sampler = OptunaTPE.sampler
    monkeypatch.setattr(OptunaTPE, "sampler", lambda self, in_flight=1: sampler(self, in_flight=1))
    _, honest, _ = run("honest")
    assert honest[:4] == lrs[:4]  # the random start-up is the same ...
    assert honest[4:] != lrs[4:]  # ... what it proposes with trials in flight is the liar's doing


def test_hyperopt_gains_nothing_from_four_workers_and_is_flagged(tmp_path):
    folders = [_nobn(tmp_path / f"k{k}", k, ("random", "hyperopt-tpe"), budget=8, seeds=4, calibration=str(CALIBRATION))
               for k in (1, 4)]
    runs = parallel_runs(pd.concat([simulated_trials(f) for f in folders], ignore_index=True))
    runs = runs.set_index(["strategy", "workers", "seed"])
    hyperopt, random = runs.loc["hyperopt-tpe"], runs.loc["random"]
    assert hyperopt.loc[4, "ran_sequentially"].all() and not random["ran_sequentially"].any()
    assert np.allclose(hyperopt.loc[4, "makespan_s"], hyperopt.loc[1, "makespan_s"])
    assert np.allclose(hyperopt.loc[4, "wall_to_target_s"], hyperopt.loc[1, "wall_to_target_s"], equal_nan=True)
    # where the workers do help, 4 of them finish 8 trials of similar length in about a quarter of the time
    assert (random.loc[4, "makespan_s"] < 0.5 * random.loc[1, "makespan_s"]).all()


def test_the_k_tables_compare_each_strategy_at_its_largest_budget(tmp_path):
    """grid is sized to its budget, so it runs at every budget of the experiment: the K comparison reads its run
    at the largest one, as it reads the others' (which ran only there), not every run of a seed as one."""
    experiment = dict(name="grid-k", task="nobn", table=str(NOBN), strategies=["grid", "random"], budgets=[2, 4],
                      seeds=2, target_acc=TARGET, space=NOBN_SPACE)
    folders = [run_experiment(Experiment(**experiment, executor={"kind": "simulated", "workers": k},
                                         results=str(tmp_path / f"k{k}")), progress=False) for k in (1, 2)]
    trials = pd.concat([simulated_trials(f) for f in folders], ignore_index=True)
    runs = parallel_runs(trials)
    assert (runs["n_trials"] == 4).all() and len(runs) == 2 * 2 * 2
