"""Claims on an experiment's runs, beside the store: what every path that runs experiments goes through.

`lrsearch run` (runner.py), the CLR reproduction (paper/clr.py) and the NNI experiment (nni_experiment.py) each
plan their runs, then, through one `RunClaims`:
1. `check(...)`: stop before any training when stored runs were trained under another definition (the changed
   fields named), or with `reset` drop them;
2. `claim(...)`: take each run atomically across processes ("claimed", "complete", or "busy": a live worker
   holds it); a claimed run's heartbeat is kept by a thread while it trains; a worker that stops beating for
   three intervals loses its claim to the next one that asks;
3. `complete(run_id)` when a run is recorded whole; on leaving, the runs still held are released at once, for
   the next call to resume.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid

from lrsearch.experiment.config import Experiment
from lrsearch.experiment.store import Store
from lrsearch.training.errors import InputError
from lrsearch.training.workloads import Workload

RunKey = tuple[str, int, int]  # (strategy, budget, seed)


def heartbeat_s() -> float:
    """Seconds between a worker's heartbeats ($LRSEARCH_HEARTBEAT_S, default 10); a claim is taken over after
    three missed ones."""
    return float(os.environ.get("LRSEARCH_HEARTBEAT_S", "10"))


def new_worker_id() -> str:
    """This process's id in the store's claims: "host:pid:token" (`worker_alive` reads it back)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def worker_alive(worker: str) -> bool:
    """Whether the process behind a worker id ("host:pid:token") may still run: a process of this host
    is looked up; one of another host counts as alive (its heartbeat tells)."""
    host, _, rest = worker.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Heartbeat:
    """A thread that keeps this worker's claims alive while it trains them."""

    def __init__(self, store: Store, worker: str, interval_s: float):
        self.store, self.worker, self.interval_s = store, worker, interval_s
        self.held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lrsearch-heartbeat", daemon=True)
        self._thread.start()

    def hold(self, run_id: int) -> None:
        with self._lock:
            self.held.add(run_id)

    def drop(self, run_id: int) -> None:
        with self._lock:
            self.held.discard(run_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                held = list(self.held)
            if held:
                self.store.beat(held, self.worker)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- definitions


class DefinitionChanged(InputError):
    """Stored runs were trained under another definition than the experiment asks for now."""


def _flatten(value, prefix: str = "") -> dict[str, object]:
    """Leaves by dotted path; list items by index (`schedule.stages.0.base_lr`), so a change names its leaf."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) and value else None
    if items is None:
        return {prefix: value}
    out: dict[str, object] = {}
    for key, item in items:
        out |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    return out


def changed_fields(stored: dict, now: dict, defaults: dict | None = None, ignored: set[str] | None = None) -> list[str]:
    """'field: old -> new' for every leaf that differs between two definitions, but the `ignored` ones (a
    task's description). A leaf only one side has counts as its default there, when `defaults` (flattened)
    gives one: a field added to a task later, at its default, changes nothing."""
    a, b = _flatten(stored), _flatten(json.loads(json.dumps(now)))
    for key in ignored or ():
        a.pop(key, None)
        b.pop(key, None)
    defaults = defaults or {}
    missing = object()

    def leaf(side: dict, key: str):
        return side.get(key, defaults.get(key, missing))

    return [f"{key}: {a.get(key)!r} -> {b.get(key)!r}" for key in sorted(set(a) | set(b))
            if leaf(a, key) != leaf(b, key)]


def check_stored_definitions(store: Store, experiment: str, wanted: dict[RunKey, dict],
                             defaults: dict | None = None, ignored: set[str] | None = None,
                             reset: bool = False) -> None:
    """The store's side of the change check ((strategy, budget, seed) -> the definition it would train now):
    DefinitionChanged naming every changed field and the ways on, or with `reset` those runs dropped. Runs
    stored without a definition (before they were recorded) pass."""
    stored = store.definitions(experiment)
    stale: dict[tuple, list[str]] = {}
    for key, definition in wanted.items():
        old = stored.get(key)
        if old is not None:
            changes = changed_fields(old, definition, defaults, ignored)
            if changes:
                stale[key] = changes
    if not stale:
        return
    if reset:
        store.delete_runs(experiment, list(stale))
        return
    fields = sorted({c for changes in stale.values() for c in changes})
    names = sorted({strategy for strategy, _, _ in stale})
    raise DefinitionChanged(
        f"{store.path}: {len(stale)} stored run(s) of experiment {experiment!r} ({', '.join(names)}) were trained "
        f"under another definition ({'; '.join(fields[:6])}{'; ...' if len(fields) > 6 else ''}). Give a new "
        "--results folder, or --reset to drop those runs and train them again")


def run_definition(experiment: Experiment, spec, workload: Workload) -> dict:
    """What a run trains, as stored with it: the workload's definition (for a built-in task: the task with its
    overrides, its target aside since a new target is read off the stored curves, and the data source's name
    and size, not its path, which differs between machines), the search space, the strategy's options and
    the time budget."""
    definition = {**workload.definition(), "space": experiment.search_space().to_dict(),
                  "options": experiment.options.get(spec.strategy, {}), "time_budget_s": experiment.time_budget_s}
    if experiment.executor.kind == "simulated":  # K workers change what a run's trials see
        definition["simulated_workers"] = experiment.executor.workers or 1
    return definition


def check_definitions(store: Store, experiment: Experiment, specs: list, workload: Workload,
                      reset: bool) -> None:
    """Stop before any training when stored runs of these specs were trained under another definition; with
    `reset`, drop those runs (they are trained again). Runs stored before definitions were recorded pass."""
    wanted = {(s.strategy, s.budget, s.seed): run_definition(experiment, s, workload) for s in specs}
    check_stored_definitions(store, experiment.name, wanted, workload.definition_defaults(),
                             workload.definition_ignored(), reset)


# ---------------------------------------------------------------- one process's claims


class RunClaims:
    """This process's claims on one experiment's runs in `store` (see the module's docstring). A context manager:
    on leaving (an error and Ctrl-C included), the heartbeat stops and the runs still held are released."""

    def __init__(self, store: Store, experiment: str, environment: dict):
        self.store, self.experiment, self.environment = store, experiment, environment
        self.worker, self.interval_s = new_worker_id(), heartbeat_s()
        self.heartbeat = Heartbeat(store, self.worker, self.interval_s)

    def check(self, wanted: dict[RunKey, dict], defaults: dict | None = None, ignored: set[str] | None = None,
              reset: bool = False) -> None:
        """Before any training: DefinitionChanged when a stored run of `wanted` was trained under another
        definition (with `reset`, those runs dropped)."""
        check_stored_definitions(self.store, self.experiment, wanted, defaults, ignored, reset)

    def claim(self, *, task: str, strategy: str, budget: int, seed: int, definition: dict) -> tuple[str, int | None]:
        """("claimed", run_id): this process trains it (a new run, an unfinished one, or one whose worker
        stopped beating), its heartbeat kept; ("complete", run_id); ("busy", None): a live worker holds it."""
        state, run_id = self.store.claim_run(experiment=self.experiment, task=task, strategy=strategy, budget=budget,
                                             seed=seed, environment=self.environment, definition=definition,
                                             worker=self.worker, stale_after_s=3 * self.interval_s,
                                             holder_alive=worker_alive)
        if state == "claimed":
            self.heartbeat.hold(run_id)
        return state, run_id

    def complete(self, run_id: int) -> None:
        """The run is recorded whole: marked complete, its claim let go."""
        self.store.complete_run(run_id)
        self.heartbeat.drop(run_id)

    def close(self) -> None:
        self.heartbeat.close()
        self.store.release(sorted(self.heartbeat.held), self.worker)  # interrupted runs: free at once

    def __enter__(self) -> RunClaims:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
