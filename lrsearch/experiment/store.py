"""The results store: SQLite, one file per experiment (`<results>/results.sqlite`).

Runs, trials and curve points. A trial and its curve are committed in one transaction
as the trial finishes, so a process killed at any moment leaves every finished trial
whole and no half trial. (strategy, budget, seed) is unique per run and (run, index)
per trial, so a restart can neither duplicate a run nor a trial. One Store may serve several
threads of one process (a parallel runner's): each method holds the store's lock, so no
transaction interleaves with another thread's.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
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
    value            REAL NOT NULL,      -- what the strategy maximised
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

# Columns added after a store's first release: (table, column, type), added to older files on open.
ADDED_COLUMNS = [("trials", "eval_s", "REAL")]

CURVE_COLUMNS = ("step", "epoch", "samples", "lr", "train_loss", "val_acc", "test_acc", "train_s", "wall_s")


@dataclass
class StoredTrial:
    trial_index: int
    params: dict
    status: str
    value: float
    train_s: float
    overhead_s: float
    extra: dict


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _locked(method):
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self.conn.execute("PRAGMA foreign_keys = ON")
        with self.conn:
            self.conn.executescript(SCHEMA)
            for table, column, kind in ADDED_COLUMNS:
                if column not in {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}:
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

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
    def open_run(self, experiment: str, task: str, strategy: str, budget: int, seed: int, environment: dict) -> int:
        """The run's id: a new run, or the unfinished one left by an earlier process."""
        with self.conn:
            self.conn.execute(
                "INSERT OR IGNORE INTO runs (experiment, task, strategy, budget, seed, status, started_at, environment) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                (experiment, task, strategy, budget, seed, time.time(), json.dumps(environment)))
        return self.conn.execute("SELECT run_id FROM runs WHERE experiment=? AND strategy=? AND budget=? AND seed=?",
                                 (experiment, strategy, budget, seed)).fetchone()[0]

    @_locked
    def complete_run(self, run_id: int) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET status='complete', finished_at=? WHERE run_id=?", (time.time(), run_id))

    # ------------------------------------------------------------ trials

    @_locked
    def stored_trials(self, run_id: int) -> list[StoredTrial]:
        rows = self.conn.execute(
            "SELECT trial_index, params, status, value, train_s, overhead_s, extra FROM trials "
            "WHERE run_id=? ORDER BY trial_index", (run_id,)).fetchall()
        return [StoredTrial(i, json.loads(p), s, v, t, o, json.loads(x)) for i, p, s, v, t, o, x in rows]

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
    def add_trial(self, run_id: int, trial_index: int, kind: str, params: dict, lr: float | None, status: str,
                  value: float, train_s: float, overhead_s: float, extra: dict, curve: list[dict],
                  record: dict | None = None) -> None:
        """One trial and its curve, in one transaction."""
        record = record or {}
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO trials (run_id, trial_index, kind, params, lr, status, value, final_val_acc, final_test_acc, "
                "best_val_acc, train_s, wall_s, eval_s, overhead_s, time_to_target_s, steps_to_target, steps, device, "
                "error, extra, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, trial_index, kind, json.dumps(params), lr, status, value, record.get("final_val_acc"),
                 record.get("final_test_acc"), record.get("best_val_acc"), train_s, record.get("wall_s"), record.get("eval_s"), overhead_s,
                 record.get("time_to_target_s"), record.get("steps_to_target"), record.get("steps"),
                 record.get("device"), record.get("error"), json.dumps(extra), time.time()))
            self.conn.executemany(
                f"INSERT INTO curves (trial_id, {', '.join(CURVE_COLUMNS)}) VALUES (?, {', '.join('?' * len(CURVE_COLUMNS))})",
                [(cur.lastrowid, *(_finite(row.get(c)) for c in CURVE_COLUMNS)) for row in curve])

    # ------------------------------------------------------------ tables

    @_locked
    def runs_frame(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", self.conn)

    @_locked
    def trials_frame(self) -> pd.DataFrame:
        return pd.read_sql_query(
            "SELECT r.experiment, r.task, r.strategy, r.budget, r.seed, r.status AS run_status, t.* "
            "FROM trials t JOIN runs r USING (run_id) ORDER BY t.run_id, t.trial_index", self.conn)

    @_locked
    def curves_frame(self) -> pd.DataFrame:
        return pd.read_sql_query(
            "SELECT r.strategy, r.budget, r.seed, t.trial_index, t.kind, c.* FROM curves c "
            "JOIN trials t USING (trial_id) JOIN runs r USING (run_id) ORDER BY c.trial_id, c.step", self.conn)
