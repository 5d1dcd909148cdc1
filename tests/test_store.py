"""The results store under real use: several worker processes on one store, a changed experiment on the
same folder, and files the store must refuse (not a database, another program's, a newer schema)."""

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import JPEG, trial_count

from lrsearch.cli import main
from lrsearch.experiment.store import SCHEMA_VERSION, Store, StoreError

REPO = Path(__file__).resolve().parents[1]
SMOKE = """
name = "store-test"
task = "smoke"
strategies = ["random", "optuna-tpe", "grid"]
budgets = [3]
seeds = [0, 1]
[space]
lr = {{ low = {low}, high = {high}, log = true }}
[task_overrides]  # the smoke task cut to 1,000 training images: a second or two per trial
epochs = {epochs}
train_subset = 1300
val_size = 300
test_subset = 300
eval_every = 5
[options.optuna-tpe]
n_startup_trials = {startup}
"""


def _config(tmp_path: Path, name: str = "exp.toml", low: float = 1e-3, high: float = 3.0, epochs: int = 1,
            startup: int = 2) -> Path:
    path = tmp_path / name
    path.write_text(SMOKE.format(low=low, high=high, epochs=epochs, startup=startup))
    return path


def _worker(config: Path, results: Path, *extra: str, heartbeat_s: float = 1.0, threads: int | None = None
            ) -> subprocess.Popen:
    env = os.environ | {"LRSEARCH_DATA": str(JPEG), "LRSEARCH_HEARTBEAT_S": str(heartbeat_s)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen([sys.executable, "-m", "lrsearch", "run", str(config), "--results", str(results), *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _trials(results: Path) -> pd.DataFrame:
    with sqlite3.connect(results / "results.sqlite") as conn:
        return pd.read_sql_query("SELECT r.strategy, r.seed, r.status AS run_status, t.trial_index FROM trials t "
                                 "JOIN runs r USING (run_id)", conn)


WORKER_RUNS = ["--only", "random", "grid"]  # 4 runs of 3 trials: enough to share, quick on 2 cores


def _every_run_once(results: Path) -> None:
    trials = _trials(results)
    per_run = trials.groupby(["strategy", "seed"])["trial_index"].apply(sorted).to_dict()
    assert per_run == {(s, seed): [0, 1, 2] for s in ("random", "grid") for seed in (0, 1)}
    assert set(trials["run_status"]) == {"complete"}


def test_two_workers_on_one_store_share_the_runs(tmp_path):
    config, results = _config(tmp_path), tmp_path / "shared"
    # one thread each: two workers on a 2-core machine, not four threads fighting over two cores
    first, second = (_worker(config, results, *WORKER_RUNS, threads=1) for _ in range(2))
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    _every_run_once(results)  # none twice (a UNIQUE index would have failed), none missing
    with sqlite3.connect(results / "results.sqlite") as conn:
        workers = {w for (w,) in conn.execute("SELECT worker FROM runs")}
    assert len(workers) == 2, "both workers trained runs"


def test_a_killed_workers_claim_is_taken_over(tmp_path):
    config, results = _config(tmp_path), tmp_path / "killed"
    victim = _worker(config, results, *WORKER_RUNS)
    deadline = time.time() + 300
    while trial_count(results) < 1 and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    with sqlite3.connect(results / "results.sqlite") as conn:
        held = conn.execute("SELECT run_id, worker FROM runs WHERE status = 'running'").fetchall()
    assert len(held) == 1  # the victim held a run when it died
    (victims_run, victim_id), = held
    rescuer = _worker(config, results, *WORKER_RUNS)
    output = rescuer.communicate(timeout=600)[0]
    assert rescuer.returncode == 0, output
    _every_run_once(results)
    with sqlite3.connect(results / "results.sqlite") as conn:
        (holder,) = conn.execute("SELECT worker FROM runs WHERE run_id = ?", (victims_run,)).fetchone()
    assert holder != victim_id  # finished by the rescuer, once the victim's heartbeat had gone stale


def test_a_changed_experiment_stops_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    results = tmp_path / "changing"
    run = ["run", "--results", str(results), "--only", "random", "optuna-tpe", "--seeds", "0"]
    assert main([run[0], str(_config(tmp_path)), *run[1:]]) == 0
    before = _trials(results)
    capsys.readouterr()
    for changed, field in ((_config(tmp_path, "space.toml", low=0.5, high=0.6), "space.lr.low: 0.001 -> 0.5"),
                           (_config(tmp_path, "task.toml", epochs=2), "task.epochs: 1 -> 2"),
                           (_config(tmp_path, "option.toml", startup=3), "options.n_startup_trials: 2 -> 3")):
        assert main([run[0], str(changed), *run[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and field in err and "--reset" in err and "--results" in err, err
    pd.testing.assert_frame_equal(_trials(results), before)  # nothing trained, nothing dropped

    # a new target alone is read off the stored curves: no error, no training, the tables follow it
    assert main([run[0], str(_config(tmp_path)), *run[1:], "--target", "0.99"]) == 0
    pd.testing.assert_frame_equal(_trials(results), before)
    runs = pd.read_csv(results / "tables" / "runs.csv")
    assert not runs["reached_target"].any()
    # --reset retrains the runs of the changed definition
    assert main([run[0], str(_config(tmp_path, "space.toml", low=0.5, high=0.6)), *run[1:], "--reset"]) == 0
    trials = _trials(results)
    assert len(trials) == len(before)
    with sqlite3.connect(results / "results.sqlite") as conn:
        lrs = [lr for (lr,) in conn.execute("SELECT lr FROM trials WHERE kind = 'train'")]
    assert all(0.5 <= lr <= 0.6 for lr in lrs)


def test_a_file_that_is_no_store_is_refused_and_left_alone(tmp_path, capsys):
    garbage = tmp_path / "garbage" / "results.sqlite"
    garbage.parent.mkdir()
    garbage.write_bytes(os.urandom(4096))
    content = garbage.read_bytes()
    with pytest.raises(StoreError, match="not an lrsearch results store"):
        Store(garbage, create=True)
    assert garbage.read_bytes() == content
    assert main(["report", str(garbage.parent)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(garbage) in err and err.count("\n") == 0

    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(StoreError, match="another program"):
        Store(foreign, create=True)
    with sqlite3.connect(foreign) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["songs"]

    for create in ({"create": False}, {}):  # a reader's default: never an empty new database
        with pytest.raises(StoreError, match="no results store here"):
            Store(tmp_path / "typo" / "results.sqlite", **create)
    assert not (tmp_path / "typo").exists()


def test_a_store_from_a_newer_lrsearch_is_refused(tmp_path):
    path = tmp_path / "results.sqlite"
    Store(path, create=True).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=f"newer lrsearch \\(store schema {SCHEMA_VERSION + 1}"):
        Store(path)


def test_claims_are_exclusive_until_the_holder_goes_stale_or_is_gone(tmp_path):
    store = Store(tmp_path / "results.sqlite", create=True)
    key = {"experiment": "e", "task": "smoke", "strategy": "random", "budget": 3, "seed": 0, "environment": {},
           "definition": {"space": 1}}
    assert store.claim_run(**key, worker="a", stale_after_s=0.5)[0] == "claimed"
    assert store.claim_run(**key, worker="b", stale_after_s=0.5)[0] == "busy"
    assert store.claim_run(**key, worker="a", stale_after_s=0.5)[0] == "claimed"  # its own claim, again
    assert store.claim_run(**key, worker="b", stale_after_s=0.5, holder_alive=lambda w: w != "a")[0] == "claimed"
    time.sleep(0.3)
    store.beat([1], "b")
    time.sleep(0.3)
    assert store.claim_run(**key, worker="c", stale_after_s=0.5)[0] == "busy"  # b's heartbeat is 0.3 s old
    time.sleep(0.6)
    state, run_id = store.claim_run(**key, worker="c", stale_after_s=0.5)
    assert state == "claimed"  # b stopped beating: taken over
    store.release([run_id], "c")
    assert store.claim_run(**key, worker="d", stale_after_s=100)[0] == "claimed"  # released: free at once
    store.complete_run(run_id)
    assert store.claim_run(**key, worker="e", stale_after_s=0.5) == ("complete", run_id)
    store.close()


def test_a_strategy_whose_library_is_missing_stops_the_run_before_anything_is_written(tmp_path, monkeypatch, capsys):
    from lrsearch.search.strategies import REGISTRY

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    monkeypatch.setattr(REGISTRY["grid"], "requires", (("no_such_module_xyz", "no-such-package==1.0"),))
    results = tmp_path / "missing"
    assert main(["run", str(_config(tmp_path)), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert "grid needs no-such-package==1.0" in err and "--only" in err and err.count("\n") == 0
    assert not results.exists()
    assert REGISTRY["optunity-pso"].missing_packages() == []  # installed with lrsearch


def test_a_store_another_worker_is_still_creating_is_waited_for_not_refused(tmp_path):
    """Two workers starting on a new folder: the one that comes second must never judge the first one's half-made
    schema (it once read as "an SQLite file of another program"). Here the first has made `runs` and holds the
    write lock while it makes the rest; the second waits for it and opens the finished store."""
    import threading

    from lrsearch.experiment.store import SCHEMA, _statements

    path = tmp_path / "results.sqlite"
    first = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    statements = _statements(SCHEMA)
    first.execute(statements[0])  # CREATE TABLE runs, committed
    first.execute("BEGIN IMMEDIATE")

    def finish() -> None:
        time.sleep(0.5)
        for statement in statements[1:]:
            first.execute(statement)
        first.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        first.execute("COMMIT")

    worker = threading.Thread(target=finish)
    worker.start()
    store = Store(path, create=True)  # waits on the lock, then finds every table
    worker.join()
    assert store.runs_frame().empty and store.trials_frame().empty
    store.close()
    first.close()


def test_fields_added_at_their_default_and_descriptions_change_no_definition():
    from lrsearch.experiment.claims import changed_fields

    stored = {"task": {"lr": 0.05, "description": "old words"}, "space": {"lr": {"low": 0.001}}}
    now = {"task": {"lr": 0.05, "description": "new words", "beta2": 0.999}, "space": {"lr": {"low": 0.001}}}
    defaults = {"task.beta2": 0.999}
    assert changed_fields(stored, now, defaults, {"task.description"}) == []
    assert changed_fields(stored, now | {"task": now["task"] | {"beta2": 0.9}}, defaults, {"task.description"}) == [
        "task.beta2: None -> 0.9"]
    assert changed_fields(stored, now) == ["task.beta2: None -> 0.999", "task.description: 'old words' -> 'new words'"]


@pytest.mark.usefixtures("jpeg_data")
def test_the_committed_reference_still_resumes_under_todays_tasks():
    """results/benchmark-cpu was trained before tasks had today's fields: its runs are today's runs."""
    from lrsearch.experiment.claims import check_definitions
    from lrsearch.experiment.config import load_experiment
    from lrsearch.experiment.runner import plan
    from lrsearch.experiment.store import Store

    root = Path(__file__).resolve().parents[1]
    experiment = load_experiment(root / "experiments" / "benchmark-cpu.toml")
    store = Store(root / "results" / "benchmark-cpu" / "results.sqlite", create=False)
    try:
        check_definitions(store, experiment, plan(experiment), experiment.workload(str(JPEG)), reset=False)
    finally:
        store.close()


# ---------------------------------------------------------------- a trial without a value

V2_SCHEMA = """
CREATE TABLE runs (run_id INTEGER PRIMARY KEY, experiment TEXT NOT NULL, task TEXT NOT NULL, strategy TEXT NOT NULL,
    budget INTEGER NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL,
    environment TEXT NOT NULL, definition TEXT, worker TEXT, heartbeat_at REAL,
    UNIQUE (experiment, strategy, budget, seed));
CREATE TABLE trials (trial_id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(run_id),
    trial_index INTEGER NOT NULL, kind TEXT NOT NULL, params TEXT NOT NULL, lr REAL, status TEXT NOT NULL,
    value REAL NOT NULL, final_val_acc REAL, final_test_acc REAL, best_val_acc REAL, train_s REAL NOT NULL,
    wall_s REAL, eval_s REAL, overhead_s REAL NOT NULL, time_to_target_s REAL, steps_to_target INTEGER, steps INTEGER,
    device TEXT, error TEXT, extra TEXT NOT NULL, finished_at REAL NOT NULL, UNIQUE (run_id, trial_index));
CREATE TABLE curves (trial_id INTEGER NOT NULL REFERENCES trials(trial_id), step INTEGER NOT NULL, epoch REAL,
    samples INTEGER, lr REAL, train_loss REAL, val_acc REAL, test_acc REAL, train_s REAL, wall_s REAL,
    PRIMARY KEY (trial_id, step));
PRAGMA user_version = 2;
"""


def _v2_store(path: Path) -> Path:
    """A store as lrsearch wrote it before trials without a value held NULL: value NOT NULL, a failed trial and a
    range test at the placeholder 0.0, beside an ok trial; each with a curve point."""
    with sqlite3.connect(path) as conn:
        conn.executescript(V2_SCHEMA)
        conn.execute("INSERT INTO runs VALUES (1, 'e', 'smoke', 'random', 3, 0, 'running', 0, NULL, '{}', NULL, NULL, "
                     "NULL)")
        for trial_id, kind, status, value in [(1, "range_test", "ok", 0.0), (2, "train", "failed", 0.0),
                                              (3, "train", "ok", 0.4)]:
            conn.execute("INSERT INTO trials (trial_id, run_id, trial_index, kind, params, lr, status, value, train_s, "
                         "overhead_s, extra, finished_at) VALUES (?, 1, ?, ?, '{\"lr\": 0.1}', 0.1, ?, ?, 1.0, 0.0, "
                         "'{}', 0)", (trial_id, trial_id - 1, kind, status, value))
            conn.execute("INSERT INTO curves (trial_id, step, val_acc) VALUES (?, 10, 0.2)", (trial_id,))
    return path


def _record(run_id: int, index: int, status: str, value: float | None):
    from lrsearch.experiment.store import TrialRecord

    return TrialRecord(run_id=run_id, trial_index=index, kind="train", params={"lr": 0.1 * (index + 1)},
                       lr=0.1 * (index + 1), status=status, value=value, train_s=1.0, overhead_s=0.0)


def _run(store: Store, seed: int = 0) -> int:
    return store.open_run(experiment="e", task="smoke", strategy="random", budget=4, seed=seed, environment={})


def test_the_stores_valued_statuses_are_the_searchs():
    from lrsearch.experiment.store import VALUED_STATUSES
    from lrsearch.search.strategies import USABLE

    assert VALUED_STATUSES == USABLE


def test_a_failed_trial_is_stored_without_a_value(tmp_path):
    store = Store(tmp_path / "results.sqlite", create=True)
    run_id = _run(store)
    store.add_trial(_record(run_id, 0, "failed", None))
    store.add_trial(_record(run_id, 1, "ok", 0.3))
    trials, stored = store.trials_frame(), store.stored_trials(run_id)
    store.close()
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        assert conn.execute("SELECT value FROM trials ORDER BY trial_index").fetchall() == [(None,), (0.3,)]
    assert trials["value"].isna().tolist() == [True, False] and trials["value"].iloc[1] == 0.3
    assert math.isnan(stored[0].value) and stored[1].value == 0.3


def test_a_store_whose_only_trial_failed_reads_nan_not_none(tmp_path):
    store = Store(tmp_path / "results.sqlite", create=True)
    store.add_trial(_record(_run(store), 0, "diverged", None))
    trials = store.trials_frame()
    store.close()
    assert trials["value"].dtype == float and trials["value"].isna().all()


def test_an_old_store_reads_its_placeholders_as_no_value_and_is_left_as_it_is(tmp_path):
    path = _v2_store(tmp_path / "results.sqlite")
    before = path.read_bytes()
    store = Store(path)  # a reader (tables, reports) never rewrites the file
    trials, stored = store.trials_frame(), store.stored_trials(1)
    store.close()
    assert trials["value"].isna().tolist() == [True, True, False] and trials["value"].iloc[2] == 0.4
    assert [math.isnan(t.value) for t in stored] == [True, True, False]
    assert path.read_bytes() == before


def test_an_old_store_opened_by_a_writer_holds_null_for_no_value_and_keeps_its_curves(tmp_path):
    path = _v2_store(tmp_path / "results.sqlite")
    store = Store(path, create=True)
    store.add_trial(_record(1, 3, "failed", None))  # NOT NULL before: refused
    trials, curves = store.trials_frame(), store.curves_frame()
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT trial_id, value FROM trials ORDER BY trial_id").fetchall() == [
            (1, None), (2, None), (3, 0.4), (4, None)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert {name: notnull for _, name, _, notnull, *_ in conn.execute("PRAGMA table_info(trials)")}["value"] == 0
    assert trials["trial_index"].tolist() == [0, 1, 2, 3]
    assert curves.sort_values("trial_index")["trial_index"].tolist() == [0, 1, 2]


def test_a_resumed_failed_trial_is_a_failed_evaluation_for_the_strategy(tmp_path):
    """Resuming replays stored trials into the strategy: one without a value comes back as an Evaluation
    without one (has_value False; its value a NaN placeholder, never a number a library could take)."""
    from lrsearch.experiment.runner import _RecordingObjective

    store = Store(tmp_path / "results.sqlite", create=True)
    run_id = _run(store)
    store.add_trial(_record(run_id, 0, "failed", None))
    store.add_trial(_record(run_id, 1, "ok", 0.3))
    objective = _RecordingObjective(objective=None, executor=None, store=store, run_id=run_id)
    failed, ok = objective({"lr": 0.1}, None), objective({"lr": 0.2}, None)
    store.close()
    assert failed.status == "failed" and not failed.has_value and math.isnan(failed.value)
    assert ok.has_value and ok.value == 0.3


def _anytime_best(tmp_path: Path, outcomes: list[tuple[str, float | None]]) -> tuple[list[float], float]:
    """The anytime table's best-so-far of one run with these (status, value) trials, and its runs-table best."""
    from lrsearch.reporting.tables import anytime_table, runs_table, trials_table

    store = Store(tmp_path / "results.sqlite", create=True)
    run_id = _run(store)
    for i, (status, value) in enumerate(outcomes):
        store.add_trial(_record(run_id, i, status, value))
    trials = trials_table(store)
    store.close()
    return anytime_table(trials)["best_val_acc"].tolist(), runs_table(trials)["best_val_acc"].iloc[0]


def test_a_runs_best_so_far_is_nan_until_its_first_value_and_skips_failed_trials(tmp_path):
    best, run_best = _anytime_best(tmp_path, [("failed", None), ("ok", 0.3), ("failed", None), ("ok", 0.5)])
    assert math.isnan(best[0]) and best[1:] == [0.3, 0.3, 0.5] and run_best == 0.5


def test_a_negative_best_is_not_raised_to_zero_by_a_failed_trial(tmp_path):
    """A minimised metric is searched as its negative: a failed trial must not count as 0, better than -2."""
    best, run_best = _anytime_best(tmp_path, [("ok", -2.0), ("failed", None)])
    assert best == [-2.0, -2.0] and run_best == -2.0
