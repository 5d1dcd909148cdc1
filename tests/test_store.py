"""The results store under real use: several worker processes on one store, a changed experiment on the
same folder, and files the store must refuse (not a database, another program's, a newer schema)."""

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
    key = ("e", "smoke", "random", 3, 0, {}, {"space": 1})
    assert store.claim_run(*key, worker="a", stale_after_s=0.5)[0] == "claimed"
    assert store.claim_run(*key, worker="b", stale_after_s=0.5)[0] == "busy"
    assert store.claim_run(*key, worker="a", stale_after_s=0.5)[0] == "claimed"  # its own claim, again
    assert store.claim_run(*key, worker="b", stale_after_s=0.5, holder_alive=lambda w: w != "a")[0] == "claimed"
    time.sleep(0.3)
    store.beat([1], "b")
    time.sleep(0.3)
    assert store.claim_run(*key, worker="c", stale_after_s=0.5)[0] == "busy"  # b's heartbeat is 0.3 s old
    time.sleep(0.6)
    state, run_id = store.claim_run(*key, worker="c", stale_after_s=0.5)
    assert state == "claimed"  # b stopped beating: taken over
    store.release([run_id], "c")
    assert store.claim_run(*key, worker="d", stale_after_s=100)[0] == "claimed"  # released: free at once
    store.complete_run(run_id)
    assert store.claim_run(*key, worker="e", stale_after_s=0.5) == ("complete", run_id)
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
    from lrsearch.experiment.runner import changed_fields

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
    from lrsearch.experiment.config import load_experiment
    from lrsearch.experiment.runner import check_definitions, plan
    from lrsearch.experiment.store import Store

    root = Path(__file__).resolve().parents[1]
    experiment = load_experiment(root / "experiments" / "benchmark-cpu.toml")
    store = Store(root / "results" / "benchmark-cpu" / "results.sqlite", create=False)
    try:
        check_definitions(store, experiment, plan(experiment), experiment.workload(str(JPEG)), reset=False)
    finally:
        store.close()
