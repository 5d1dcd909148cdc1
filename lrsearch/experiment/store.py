"""The results store: SQLite, one file per experiment (`<results>/results.sqlite`).

Runs, trials and curve points. A trial and its curve are committed in one transaction
as the trial finishes, so a process killed at any moment leaves every finished trial
whole and no half trial. (strategy, budget, seed) is unique per run and (run, index)
per trial, so a restart can neither duplicate a run nor a trial. One Store may serve several
threads of one process (a parallel runner's): each method holds the store's lock, so no
transaction interleaves with another thread's.

Several processes may share one store (workers): a process claims a run before training it
(`claim_run`, one SQLite write transaction), keeps its claim alive with heartbeats (`beat`),
and a claim whose heartbeat is older than `stale_after_s` is taken over, so a run is trained by
one live worker at a time and a dead worker's run is finished by another (as Optuna's RDB
storage fails a trial whose heartbeat stopped). Each run also records the definition it was
trained under (task, data, space, options), which the runner compares before resuming.

A trial without a value (diverged, failed, a range test) has NULL in `value`, never a number; its frames
read NaN there, and `stored_trials` too (the placeholder an `Evaluation` holds, which no library sees).

The file carries its schema version (`PRAGMA user_version`). A file that is not an SQLite
database, holds other tables, or comes from a newer lrsearch is refused with `StoreError`,
and never written to.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      INTEGER PRIMARY KEY,
    experiment  TEXT NOT NULL,
    task        TEXT NOT NULL,
    strategy    TEXT NOT NULL,
    budget      INTEGER NOT NULL,
    seed        INTEGER NOT NULL,
    status      TEXT NOT NULL,          -- running, complete
    started_at  REAL NOT NULL,
    finished_at REAL,
    environment TEXT NOT NULL,          -- JSON: command, date, device, git commit, versions
    definition  TEXT,                   -- JSON: what the run trains (task, data, space, options); NULL before v2
    worker      TEXT,                   -- the process that holds (or last held) the run
    heartbeat_at REAL,                  -- its last sign of life, while the run is running
    UNIQUE (experiment, strategy, budget, seed)
);
CREATE TABLE IF NOT EXISTS trials (
    trial_id         INTEGER PRIMARY KEY,
    run_id           INTEGER NOT NULL REFERENCES runs(run_id),
    trial_index      INTEGER NOT NULL,
    kind             TEXT NOT NULL,      -- train, range_test
    params           TEXT NOT NULL,      -- JSON
    lr               REAL,               -- the trial's representative LR (peak of its schedule)
    status           TEXT NOT NULL,      -- ok, diverged, pruned, failed
    value            REAL,               -- what the strategy maximised; NULL for a trial without one
    final_val_acc    REAL,
    final_test_acc   REAL,
    best_val_acc     REAL,
    train_s          REAL NOT NULL,
    wall_s           REAL,
    eval_s           REAL,               -- seconds in evaluations (test-time augmentation included)
    overhead_s       REAL NOT NULL,      -- strategy time before this trial
    time_to_target_s REAL,
    steps_to_target  INTEGER,
    steps            INTEGER,
    device           TEXT,
    error            TEXT,
    extra            TEXT NOT NULL,      -- JSON: strategy notes, a range test's curve
    finished_at      REAL NOT NULL,
    UNIQUE (run_id, trial_index)
);
CREATE TABLE IF NOT EXISTS curves (
    trial_id   INTEGER NOT NULL REFERENCES trials(trial_id),
    step       INTEGER NOT NULL,
    epoch      REAL,
    samples    INTEGER,
    lr         REAL,
    train_loss REAL,
    val_acc    REAL,
    test_acc   REAL,
    train_s    REAL,
    wall_s     REAL,
    PRIMARY KEY (trial_id, step)
);
"""

# 1: runs, trials and curves as first released (no version recorded, user_version 0);
# 2: trials.eval_s, runs.definition, runs.worker, runs.heartbeat_at. Older files gain these on open.
# 3: trials.value may be NULL (before: NOT NULL, a placeholder 0.0 or the workload's floor for a trial without a
#    value). A writer rebuilds an older trials table, placeholders made NULL; a reader reads them as NULL.
SCHEMA_VERSION = 3
ADDED_COLUMNS = [("trials", "eval_s", "REAL"), ("runs", "definition", "TEXT"), ("runs", "worker", "TEXT"),
                 ("runs", "heartbeat_at", "REAL")]

# A trial has a value when it is a training trial that ended ok or was pruned (the search's USABLE statuses,
# lrsearch.search.strategies.USABLE, not imported: it loads every search library). A range test is no candidate.
VALUED_STATUSES = ("ok", "pruned")
# a trial's value as read from `trials t`: NULL for a trial without one, whatever an older file holds there
_VALUE = f"CASE WHEN t.kind = 'train' AND t.status IN {VALUED_STATUSES} THEN t.value END AS value"


class StoreError(Exception):
    """A results file lrsearch cannot use; the message names the file and what to do."""

CURVE_COLUMNS = ("step", "epoch", "samples", "lr", "train_loss", "val_acc", "test_acc", "train_s", "wall_s")


@dataclass
class TrialRecord:
    """One finished trial, as `Store.add_trial` commits it."""
    run_id: int
    trial_index: int
    kind: str  # train, range_test
    params: dict
    lr: float | None  # the trial's representative LR (peak of its schedule); None for a range test
    status: str  # ok, pruned, diverged, failed
    value: float | None  # what the strategy maximised; None for a trial without one (see VALUED_STATUSES)
    train_s: float
    overhead_s: float  # strategy time before this trial
    extra: dict = field(default_factory=dict)  # JSON: strategy notes, a range test's curve
    curve: list[dict] = field(default_factory=list)  # one dict per evaluation, keys from CURVE_COLUMNS
    # the trainer's measurements, as TrialResult.to_dict() gives them; the store keeps final_val_acc,
    # final_test_acc, best_val_acc, wall_s, eval_s, time_to_target_s, steps_to_target, steps, device, error
    result: dict = field(default_factory=dict)


@dataclass
class StoredTrial:
    trial_index: int
    params: dict
    status: str
    value: float  # NaN for a trial without one
    train_s: float
    overhead_s: float
    extra: dict


def _statements(script: str) -> list[str]:
    """The SQL statements of a script, split where SQLite says a statement is complete (comments may hold ';')."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer)
            buffer = ""
    return statements + ([buffer] if buffer.strip() else [])


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _locked(method):
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class Store:
    def __init__(self, path: str | Path, create: bool = False):
        """Open the store at `path`. Writers (a run) pass `create`: the store is made, or an older schema brought
        up to date. By default only an existing store is opened, and read as it is (tables, reports and notebooks
        never make or rewrite a file: a typo in the path is a StoreError, not an empty new database). Raises
        StoreError for a file it must not touch."""
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"{self.path}: no results store here; run the experiment first (`lrsearch run ...`) "
                             "or give the folder that holds its results.sqlite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        try:
            self._open(migrate=create)
        except StoreError:
            self.conn.close()
            raise
        except sqlite3.DatabaseError as err:
            self.conn.close()
            raise StoreError(f"{self.path}: not an lrsearch results store ({err}); lrsearch leaves it as it is: "
                             "move it away, or give another folder with --results") from None

    def hand_writes_to_the_os(self) -> None:
        """Commit without waiting for the disk (`PRAGMA synchronous = OFF`): a trial committed survives this process
        crashing or being killed, though not the machine losing power. For runs that cost seconds to redo (a table's
        trials on a simulated clock), where an fsync per trial would be most of the run's time."""
        with self._lock:
            self.conn.execute("PRAGMA synchronous = OFF")

    def _open(self, migrate: bool) -> None:
        """Check what the file holds before writing anything, then (`migrate`) bring an older schema up to date.
        A writer checks and creates under SQLite's write lock, so that two workers starting together on a new
        folder never see each other's half-made schema: the second waits, then finds the first one's tables."""
        self.conn.execute("PRAGMA user_version").fetchone()  # raises for a file that is no database
        if not migrate:
            self._check(readonly=True)
        else:
            with self._write_lock():
                self._check(readonly=False)
                for statement in _statements(SCHEMA):  # not executescript: it would commit, and drop the lock
                    self.conn.execute(statement)
                for table, column, kind in ADDED_COLUMNS:
                    if column not in {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}:
                        self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                if any(row[1] == "value" and row[3] for row in self.conn.execute("PRAGMA table_info(trials)")):
                    self._rebuild_trials()
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        # after the rebuild: with foreign keys on, dropping the old trials table fails (its curves point at it);
        # a no-op inside a transaction: set outside one
        self.conn.execute("PRAGMA foreign_keys = ON")

    def _rebuild_trials(self) -> None:
        """The trials table of a schema-2 file, whose `value` is NOT NULL, rebuilt with this schema's (SQLite cannot
        drop a NOT NULL in place: https://sqlite.org/lang_altertable.html#otheralter), each trial without a value
        made NULL. Trial ids are kept, so the curves still point at their trials."""
        create = next(s for s in _statements(SCHEMA) if "TABLE IF NOT EXISTS trials " in s)
        self.conn.execute(create.replace("TABLE IF NOT EXISTS trials ", "TABLE trials_v3 ", 1))
        names = [row[1] for row in self.conn.execute("PRAGMA table_info(trials)")]
        self.conn.execute(f"INSERT INTO trials_v3 ({', '.join(names)}) SELECT {self._trial_columns()} FROM trials t")
        self.conn.execute("DROP TABLE trials")
        self.conn.execute("ALTER TABLE trials_v3 RENAME TO trials")

    def _check(self, readonly: bool) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: written by a newer lrsearch (store schema {version}; this one reads up to "
                             f"{SCHEMA_VERSION}); upgrade lrsearch, or give another folder with --results")
        if tables and not {"runs", "trials", "curves"} <= tables:
            raise StoreError(f"{self.path}: an SQLite file of another program (tables: {', '.join(sorted(tables))}); "
                             "lrsearch leaves it as it is: give another folder with --results")
        if readonly and not tables:
            raise StoreError(f"{self.path}: an empty file, not a results store; run the experiment first")

    @contextlib.contextmanager
    def _write_lock(self):
        """One transaction that holds SQLite's write lock from its start (BEGIN IMMEDIATE): a read and the write
        that depends on it, with no other process's write in between."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    @_locked
    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------ runs

    @_locked
    def run_status(self, experiment: str, strategy: str, budget: int, seed: int) -> str | None:
        row = self.conn.execute("SELECT status FROM runs WHERE experiment=? AND strategy=? AND budget=? AND seed=?",
                                (experiment, strategy, budget, seed)).fetchone()
        return row[0] if row else None

    @_locked
    def open_run(self, *, experiment: str, task: str, strategy: str, budget: int, seed: int, environment: dict,
                 definition: dict | None = None) -> int:
        """The run's id: a new run, or the unfinished one left by an earlier process (no claim: one process)."""
        with self.conn:
            self.conn.execute(
                "INSERT OR IGNORE INTO runs (experiment, task, strategy, budget, seed, status, started_at, environment, "
                "definition) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (experiment, task, strategy, budget, seed, time.time(), json.dumps(environment),
                 None if definition is None else json.dumps(definition, sort_keys=True)))
        return self.conn.execute("SELECT run_id FROM runs WHERE experiment=? AND strategy=? AND budget=? AND seed=?",
                                 (experiment, strategy, budget, seed)).fetchone()[0]

    @_locked
    def claim_run(self, *, experiment: str, task: str, strategy: str, budget: int, seed: int, environment: dict,
                  definition: dict, worker: str, stale_after_s: float,
                  holder_alive: Callable[[str], bool] = lambda holder: True) -> tuple[str, int | None]:
        """Claim a run for `worker`, atomically across processes. Returns ("claimed", run_id) for a new run, an
        unfinished one nobody holds, one this worker holds, or one whose holder's heartbeat is older than
        `stale_after_s` or whom `holder_alive` knows to be gone (taken over); ("complete", run_id) when it is
        done; ("busy", run_id) when a live worker holds it."""
        now = time.time()
        with self._write_lock():
            row = self.conn.execute("SELECT run_id, status, worker, heartbeat_at FROM runs WHERE experiment=? AND "
                                    "strategy=? AND budget=? AND seed=?", (experiment, strategy, budget, seed)).fetchone()
            if row is None:
                cur = self.conn.execute(
                    "INSERT INTO runs (experiment, task, strategy, budget, seed, status, started_at, environment, "
                    "definition, worker, heartbeat_at) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                    (experiment, task, strategy, budget, seed, now, json.dumps(environment),
                     json.dumps(definition, sort_keys=True), worker, now))
                return "claimed", cur.lastrowid
            run_id, status, holder, heartbeat = row
            if status == "complete":
                return "complete", run_id
            if (holder not in (None, worker) and heartbeat is not None and now - heartbeat < stale_after_s
                    and holder_alive(holder)):
                return "busy", run_id
            # the run keeps the environment it was started in; its definition is recorded if it had none yet
            self.conn.execute("UPDATE runs SET worker=?, heartbeat_at=?, definition=? WHERE run_id=?",
                              (worker, now, json.dumps(definition, sort_keys=True), run_id))
            return "claimed", run_id

    @_locked
    def beat(self, run_ids: list[int], worker: str) -> None:
        """The heartbeat of `worker` for the runs it holds."""
        with self.conn:
            self.conn.executemany("UPDATE runs SET heartbeat_at=? WHERE run_id=? AND worker=? AND status='running'",
                                  [(time.time(), run_id, worker) for run_id in run_ids])

    @_locked
    def release(self, run_ids: list[int], worker: str) -> None:
        """Give up `worker`'s claims on these runs (it stops before finishing them): another may take them at once."""
        with self.conn:
            self.conn.executemany("UPDATE runs SET worker=NULL, heartbeat_at=NULL WHERE run_id=? AND worker=? AND "
                                  "status='running'", [(run_id, worker) for run_id in run_ids])

    @_locked
    def definitions(self, experiment: str) -> dict[tuple[str, int, int], dict | None]:
        """(strategy, budget, seed) -> the definition each stored run was trained under (None: not recorded)."""
        rows = self.conn.execute("SELECT strategy, budget, seed, definition FROM runs WHERE experiment=?", (experiment,))
        return {(s, b, d): (None if x is None else json.loads(x)) for s, b, d, x in rows}

    @_locked
    def delete_runs(self, experiment: str, keys: list[tuple[str, int, int]]) -> None:
        """Forget these runs, their trials and curves (`lrsearch run --reset`)."""
        with self.conn:
            for strategy, budget, seed in keys:
                row = self.conn.execute("SELECT run_id FROM runs WHERE experiment=? AND strategy=? AND budget=? AND "
                                        "seed=?", (experiment, strategy, budget, seed)).fetchone()
                if row is None:
                    continue
                self.conn.execute("DELETE FROM curves WHERE trial_id IN (SELECT trial_id FROM trials WHERE run_id=?)",
                                  row)
                self.conn.execute("DELETE FROM trials WHERE run_id=?", row)
                self.conn.execute("DELETE FROM runs WHERE run_id=?", row)

    @_locked
    def complete_run(self, run_id: int) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET status='complete', finished_at=? WHERE run_id=?", (time.time(), run_id))

    # ------------------------------------------------------------ trials

    @_locked
    def stored_trials(self, run_id: int) -> list[StoredTrial]:
        rows = self.conn.execute(
            f"SELECT trial_index, params, status, {_VALUE}, train_s, overhead_s, extra FROM trials t "
            "WHERE run_id=? ORDER BY trial_index", (run_id,)).fetchall()
        return [StoredTrial(i, json.loads(p), s, math.nan if v is None else v, t, o, json.loads(x))
                for i, p, s, v, t, o, x in rows]

    @_locked
    def last_finished_at(self, run_id: int) -> float:
        """When the run's last trial finished (when the run started, before its first trial)."""
        return self.conn.execute(
            "SELECT COALESCE(MAX(finished_at), (SELECT started_at FROM runs WHERE run_id=?)) FROM trials WHERE run_id=?",
            (run_id, run_id)).fetchone()[0]

    @_locked
    def reported_values(self, run_id: int, trial_index: int) -> list[tuple[int, float]]:
        """(step, accuracy) as the trainer reported them to a pruner: validation accuracy,
        or test accuracy where the task has no validation split."""
        return self.conn.execute(
            "SELECT c.step, COALESCE(c.val_acc, c.test_acc) FROM curves c JOIN trials t USING (trial_id) "
            "WHERE t.run_id=? AND t.trial_index=? AND COALESCE(c.val_acc, c.test_acc) IS NOT NULL ORDER BY c.step",
            (run_id, trial_index)).fetchall()

    @_locked
    def drop_trials_from(self, run_id: int, trial_index: int) -> None:
        """Forget trials from `trial_index` on (a resumed strategy proposed something else there)."""
        with self.conn:
            ids = [r[0] for r in self.conn.execute(
                "SELECT trial_id FROM trials WHERE run_id=? AND trial_index>=?", (run_id, trial_index))]
            self.conn.executemany("DELETE FROM curves WHERE trial_id=?", [(i,) for i in ids])
            self.conn.executemany("DELETE FROM trials WHERE trial_id=?", [(i,) for i in ids])

    @_locked
    def add_trial(self, trial: TrialRecord) -> None:
        """One trial and its curve, in one transaction."""
        result = trial.result
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO trials (run_id, trial_index, kind, params, lr, status, value, final_val_acc, final_test_acc, "
                "best_val_acc, train_s, wall_s, eval_s, overhead_s, time_to_target_s, steps_to_target, steps, device, "
                "error, extra, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (trial.run_id, trial.trial_index, trial.kind, json.dumps(trial.params), trial.lr, trial.status,
                 _finite(trial.value), result.get("final_val_acc"), result.get("final_test_acc"),
                 result.get("best_val_acc"), trial.train_s, result.get("wall_s"), result.get("eval_s"), trial.overhead_s,
                 result.get("time_to_target_s"), result.get("steps_to_target"), result.get("steps"),
                 result.get("device"), result.get("error"), json.dumps(trial.extra), time.time()))
            self.conn.executemany(
                f"INSERT INTO curves (trial_id, {', '.join(CURVE_COLUMNS)}) VALUES (?, {', '.join('?' * len(CURVE_COLUMNS))})",
                [(cur.lastrowid, *(_finite(row.get(c)) for c in CURVE_COLUMNS)) for row in trial.curve])

    # ------------------------------------------------------------ tables

    @_locked
    def runs_frame(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", self.conn)

    @_locked
    def trials_frame(self) -> pd.DataFrame:
        return pd.read_sql_query(
            f"SELECT r.experiment, r.task, r.strategy, r.budget, r.seed, r.status AS run_status, {self._trial_columns()} "
            "FROM trials t JOIN runs r USING (run_id) ORDER BY t.run_id, t.trial_index", self.conn,
            dtype={"value": "float64"})  # NaN, not None, where no trial has a value

    def _trial_columns(self) -> str:
        """The trials table's columns, in order, for a SELECT from `trials t`, with `value` as `_VALUE` reads it."""
        return ", ".join(_VALUE if row[1] == "value" else f"t.{row[1]}"
                         for row in self.conn.execute("PRAGMA table_info(trials)"))

    @_locked
    def curves_frame(self) -> pd.DataFrame:
        return pd.read_sql_query(
            "SELECT r.strategy, r.budget, r.seed, t.trial_index, t.kind, c.* FROM curves c "
            "JOIN trials t USING (trial_id) JOIN runs r USING (run_id) ORDER BY c.trial_id, c.step", self.conn)
