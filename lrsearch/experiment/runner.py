"""The experiment runner: every (strategy, budget, seed) run not yet complete in the store.

Resuming is the default. A run left unfinished by a killed process is resumed by replaying
its strategy from the start with the same seed: each proposal that matches the stored trial
at that position gets the stored result back (its pruning reports re-issued from the stored
curve), so the library reaches the same state without training again; from the first
proposal that differs (a library that does not repeat itself), the stored trials are
dropped and trained afresh. Nothing finished is lost, nothing is recorded twice.

With a parallel executor (`executor.slots` > 1, e.g. Ray), runs go side by side in driver
threads, one per slot, and a run of a strategy that can propose while trials run
(`Strategy.parallel`) keeps up to `slots` trials in flight; the executor's slots bound the
total. A trial's index is its proposal's position, whatever order trials finish in. Only
these threads write the store (its writes are serialised).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import torch

from lrsearch.experiment.config import Experiment
from lrsearch.experiment.dashboard import OptunaMirror, study_name
from lrsearch.experiment.executors import Cancelled, Executor, make_executor
from lrsearch.experiment.provenance import environment
from lrsearch.experiment.store import Store, StoredTrial
from lrsearch.search.objective import WorkloadObjective
from lrsearch.search.strategies import REGISTRY, USABLE, Evaluation, ReportHook, get_strategy
from lrsearch.training.errors import InputError
from lrsearch.training.progress import LOG, PROGRESS, Bar, bar_wanted
from lrsearch.training.trainer import resolve_device
from lrsearch.training.workloads import Workload


@dataclass(frozen=True)
class RunSpec:
    strategy: str
    budget: int
    seed: int


def plan(experiment: Experiment, only: list[str] | None = None, seeds: list[int] | None = None) -> list[RunSpec]:
    """The runs to make. Stops (ValueError) when a strategy's library is not installed here, before any training."""
    strategies = experiment.strategies
    if only:
        unknown = [s for s in only if s not in strategies]
        if unknown:
            raise InputError(f"--only {', '.join(unknown)}: not in the experiment's strategies ({', '.join(strategies)})")
        strategies = [s for s in strategies if s in only]
    missing = {s: REGISTRY[s].missing_packages() for s in strategies}
    missing = {s: m for s, m in missing.items() if m}
    if missing:
        raise InputError("strategies: " + "; ".join(f"{s} needs {', '.join(m)}" for s, m in missing.items())
                         + f", not installed here: `pip install {' '.join(sorted({p for m in missing.values() for p in m}))}`"
                         ", or leave them out with --only")
    return [RunSpec(s, b, seed) for s in strategies for b in experiment.budgets for seed in (seeds or experiment.seeds)]


def representative_lr(params: dict) -> float | None:
    """The LR a trial is known by: its `lr`, or its schedule's peak."""
    if "lr" in params:
        return float(params["lr"])
    schedule = params.get("schedule", {})
    for key in ("max_lr", "lr", "base_lr", "start_lr"):
        if key in schedule:
            return float(schedule[key])
    return None


class _RecordingObjective:
    """The objective as the runner hands it to a strategy: replays stored trials, trains the
    rest through the executor; `record` (the on_trial callback) commits each new trial.
    For `run_parallel` it is also the strategy's TrialPool (`reserve`, `submit`, `wait`)."""

    def __init__(self, objective: WorkloadObjective, executor: Executor, store: Store, run_id: int, width: int = 1,
                 startup_trials: int | None = None, strategy=None):
        self.objective, self.executor, self.store, self.run_id = objective, executor, store, run_id
        self.width = width
        self.startup_trials = startup_trials  # the strategy's random start-up proposals, marked in each trial
        self.strategy = strategy  # its space notes (a dimension flattened or ignored) are marked in each trial
        self.stored: dict[int, StoredTrial] = {t.trial_index: t for t in store.stored_trials(run_id)}
        self.index = 0
        self._index_of: dict[int, int] = {}  # id(evaluation) -> trial index, until recorded
        self._replayed: set[int] = set()

    def _stored(self, params: dict) -> tuple[int, StoredTrial | None]:
        """The next proposal's index, and its stored trial if the store has it with these params
        (if it has another, that trial and those after it are dropped)."""
        k = self.index
        self.index += 1
        old = self.stored.get(k)
        if old is not None and old.params != json.loads(json.dumps(params)):
            self.store.drop_trials_from(self.run_id, k)
            self.stored = {i: t for i, t in self.stored.items() if i < k}
            old = None
        return k, old

    def __call__(self, params: dict, report: ReportHook | None) -> Evaluation:
        k, old = self._stored(params)
        evaluation = self._replay(old, report) if old else self.executor.evaluate(self.objective, params, report)
        self._index_of[id(evaluation)] = k
        return evaluation

    # ------------------------------------------------------------ TrialPool, for run_parallel

    def reserve(self, block: bool) -> bool:
        return self.executor.reserve(block)

    def release(self) -> None:
        self.executor.release()

    def submit(self, params: dict) -> Future:
        k, old = self._stored(params)
        if old is not None:
            self.release()
            future: Future = Future()
            future.set_result(self._replay(old, None))
        else:
            future = self.executor.submit(self.objective, params)
        future.trial_index = k
        return future

    def wait(self, futures: list[Future]) -> tuple[Future, Evaluation]:
        done = [f for f in futures if f.done()] or list(wait(futures, return_when=FIRST_COMPLETED).done)
        future = min(done, key=lambda f: f.trial_index)  # of those finished, the first proposed
        evaluation = future.result()  # raises Cancelled when the executor is stopping
        self._index_of[id(evaluation)] = future.trial_index
        return future, evaluation

    # ------------------------------------------------------------ replay and record

    def _replay(self, old: StoredTrial, report: ReportHook | None) -> Evaluation:
        if report is not None:
            for step, acc in self.store.reported_values(self.run_id, old.trial_index):
                if report(step, acc):
                    break
        evaluation = Evaluation(old.params, old.value, old.status, old.train_s, old.overhead_s, extra=old.extra)
        self._replayed.add(id(evaluation))
        return evaluation

    def record(self, evaluation: Evaluation) -> tuple[int, bool]:
        """Commit a new trial; returns its index and whether it was replayed from the store (not committed)."""
        index = self._index_of.pop(id(evaluation))
        if id(evaluation) in self._replayed:
            return index, True
        kind = evaluation.extra.get("kind", "train")
        record, curve = {}, []
        if kind == "range_test":
            test = evaluation.record
            if test is not None:
                curve = test.table.to_dict("records")  # step, lr, train_loss, val_acc are stored
                record = {"wall_s": test.wall_s, "steps": len(test.table), "error": None if test.status == "ok" else test.stop_reason}
        elif evaluation.record is not None:
            record = evaluation.record.to_dict()
            curve = record.pop("curve")
        else:  # the executor lost the trial (e.g. its worker process was killed)
            record = {"error": evaluation.extra.get("error")}
        extra = dict(evaluation.extra)
        if self.startup_trials is not None:
            extra["random_startup"] = index < self.startup_trials
        if self.strategy is not None and self.strategy.space_notes():
            extra["space_notes"] = self.strategy.space_notes()
            extra["flattens_space"] = bool(self.strategy.flattens_space)
        self.store.add_trial(self.run_id, index, kind, evaluation.params,
                             None if kind == "range_test" else representative_lr(evaluation.params),
                             evaluation.status, evaluation.value, evaluation.train_s, evaluation.overhead_s,
                             extra, curve, record)
        return index, False


def heartbeat_s() -> float:
    """Seconds between a worker's heartbeats ($LRSEARCH_HEARTBEAT_S, default 10); a claim is taken over after
    three missed ones."""
    return float(os.environ.get("LRSEARCH_HEARTBEAT_S", "10"))


def run_definition(experiment: Experiment, spec: RunSpec, workload: Workload) -> dict:
    """What a run trains, as stored with it: the workload's definition (for a built-in task: the task with its
    overrides, its target aside since a new target is read off the stored curves, and the data source's name
    and size, not its path, which differs between machines), the search space, the strategy's options and
    the time budget."""
    return {**workload.definition(), "space": experiment.search_space().to_dict(),
            "options": experiment.options.get(spec.strategy, {}), "time_budget_s": experiment.time_budget_s}


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


def check_definitions(store: Store, experiment: Experiment, specs: list[RunSpec], workload: Workload,
                      reset: bool) -> None:
    """Stop before any training when stored runs of these specs were trained under another definition; with
    `reset`, drop those runs (they are trained again). Runs stored before definitions were recorded pass."""
    wanted = {(s.strategy, s.budget, s.seed): run_definition(experiment, s, workload) for s in specs}
    check_stored_definitions(store, experiment.name, wanted, workload.definition_defaults(),
                             workload.definition_ignored(), reset)


def check_stored_definitions(store: Store, experiment: str, wanted: dict[tuple[str, int, int], dict],
                             defaults: dict | None = None, ignored: set[str] | None = None,
                             reset: bool = False) -> None:
    """The store's side of the change check, for any caller that plans runs ((strategy, budget, seed) ->
    the definition it would train now): DefinitionChanged naming every changed field and the ways on, or
    with `reset` those runs dropped. Runs stored without a definition (before they were recorded) pass."""
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


def run_experiment(experiment: Experiment, results_dir: str | Path | None = None, only: list[str] | None = None,
                   seeds: list[int] | None = None, executor: Executor | None = None, device: str | None = None,
                   data_source: str | None = None, progress: bool | None = None,
                   on_trial: Callable[[RunSpec, Evaluation], None] | None = None, reset: bool = False) -> Path:
    """Run what is not complete yet; return the results folder. The executor (default: the one the
    experiment's [executor] names, local unless it says otherwise) is closed at the end, also on
    errors and Ctrl-C (a Ray executor then stops its trials and its Ray).

    Several processes may run the same experiment on one results folder: each claims a run before
    training it, runs another process holds are left to it, and a process returns once every run is
    complete (taking over the runs of a process that stopped sending heartbeats). Stored runs trained
    under another definition stop the call before any training (DefinitionChanged), unless `reset`
    drops them.

    Progress: a bar when `progress` (default: when stderr is a terminal); one `lrsearch` log line per
    finished trial and run in any case, also appended to `run.log` in the results folder."""
    executor = executor or make_executor(**experiment.executor.model_dump())
    with executor:
        workload, space = experiment.workload(data_source), experiment.search_space()
        # A built-in task's definition resolves its data source: a missing or unreadable one stops here with
        # its one-line message (DataError), instead of every trial being recorded as failed and the runs as
        # complete. Resolved once, so that every trial reads the same source. Nothing named and nothing in
        # ./data/: the official archive is downloaded there first (md5-checked).
        workload.definition()
        specs = plan(experiment, only, seeds)  # a strategy whose library is missing stops here, before the store
        out = experiment.results_dir(results_dir)
        store = Store(out / "results.sqlite", create=True)
        try:
            check_definitions(store, experiment, specs, workload, reset)
        except DefinitionChanged:
            store.close()
            raise
        # Trials in other processes prepare their own copy: here the data only need a CPU.
        workload.prepare(torch.device("cpu") if executor.remote else resolve_device(device))
        write_experiment_json(experiment, out, workload)
        env = environment() | {"executor": executor.describe()}
        worker = new_worker_id()
        interval = heartbeat_s()
        heartbeat = Heartbeat(store, worker, interval)
        # every run as an Optuna study too (optuna-dashboard, see dashboard.py), its objective named after the metric
        metric = workload.metric if workload.direction == "maximize" else f"-{workload.metric}"
        mirror = OptunaMirror(out, space, metric, {"problem": experiment.name, "workload": workload.name,
                                                   "metric": workload.metric, "direction": workload.direction,
                                                   "space": json.dumps(space.to_dict(), sort_keys=True)})
        mirrored = mirror.studies()
        run_log = _RunLog(out)
        LOG.info("%s: %d runs (%s), results in %s", experiment.name, len(specs),
                 ", ".join(sorted({s.strategy for s in specs})), out)
        bar = _Progress(sum(s.budget for s in specs), experiment.name, bar_wanted() if progress is None else progress,
                        workload.metric, -1.0 if workload.direction == "minimize" else 1.0)
        lock = threading.Lock()  # progress and the caller's callback, from several threads

        def run_one(spec: RunSpec) -> bool:
            """Train the run unless it is complete (True) or a live worker holds it (False: try again later)."""
            state, run_id = store.claim_run(experiment.name, workload.name, spec.strategy, spec.budget, spec.seed, env,
                                            run_definition(experiment, spec, workload), worker, 3 * interval,
                                            worker_alive)
            if state == "busy":
                return False
            name = study_name(experiment.name, spec.strategy, spec.budget, spec.seed)
            if state == "complete":
                if name not in mirrored:  # a store written before the mirror existed
                    mirror.sync(store, run_id, name)
                bar.skip(spec.budget)
                return True
            heartbeat.hold(run_id)
            objective = WorkloadObjective(workload, spec.seed, device)
            strategy = get_strategy(spec.strategy, space, seed=spec.seed, **experiment.options.get(spec.strategy, {}))
            parallel = executor.slots > 1 and strategy.parallel
            recording = _RecordingObjective(objective, executor, store, run_id, executor.slots if parallel else 1,
                                            strategy.startup_trials, strategy)

            def after_trial(evaluation: Evaluation) -> None:
                index, replayed = recording.record(evaluation)
                mirror.sync(store, run_id, name)
                with lock:
                    bar.trial(spec, evaluation, index, replayed)
                    if on_trial:
                        on_trial(spec, evaluation)

            if parallel:
                evaluations = strategy.run_parallel(recording, spec.budget, experiment.time_budget_s, on_trial=after_trial)
            else:
                evaluations = strategy.run(recording, spec.budget, experiment.time_budget_s, on_trial=after_trial)
            store.complete_run(run_id)
            heartbeat.drop(run_id)
            with lock:
                bar.run_done(spec, evaluations)
                bar.skip(spec.budget - len(evaluations))  # budget a strategy left unused (grid, range tests)
            return True

        try:
            pending = specs
            while pending:
                if executor.slots == 1:
                    done = [run_one(spec) for spec in pending]
                else:
                    done = _side_by_side(run_one, pending, executor)
                pending = [spec for spec, ok in zip(pending, done) if not ok]
                if pending:  # runs other workers hold: wait for them to finish, or to stop beating
                    time.sleep(min(interval, 5.0))
        finally:
            heartbeat.close()
            store.release(sorted(heartbeat.held), worker)  # runs an error or Ctrl-C interrupted: free at once
            bar.close()
            run_log.close()
            store.close()
    return out


def _side_by_side(run_one: Callable[[RunSpec], bool], specs: list[RunSpec], executor: Executor) -> list[bool]:
    """Runs in `executor.slots` threads, in plan order; returns each run_one's answer. The first error (Ctrl-C
    included) cancels the executor's trials; the runs it interrupts stay open in the store, for the next call
    to resume."""
    with ThreadPoolExecutor(executor.slots, thread_name_prefix="lrsearch-run") as threads:
        futures = [threads.submit(run_one, spec) for spec in specs]
        try:
            for future in wait(futures, return_when=FIRST_EXCEPTION).done:
                future.result()
        except BaseException:
            executor.cancel()
            threads.shutdown(wait=True, cancel_futures=True)
            errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
            real = [e for e in errors if not isinstance(e, Cancelled)]
            if real:  # an error in a run, not the cancelling that followed it
                raise real[0] from None
            raise
        return [future.result() for future in futures]


def write_experiment_json(experiment: Experiment, out: Path, workload: Workload | None = None) -> None:
    """The validated config and the workload it resolves to (for a built-in task, the Task's fields), for the
    report."""
    workload = workload or experiment.workload()
    config = experiment.model_dump() | {"task": workload.describe(), "space": experiment.search_space().to_dict(),
                                        "workload": {"spec": experiment.task, "metric": workload.metric,
                                                     "direction": workload.direction, "target": workload.target,
                                                     "defaults": workload.defaults()}}
    (out / "experiment.json").write_text(json.dumps(config, indent=2))


class _Progress:
    """The run's progress: a bar on a terminal; one log line per finished trial and per finished run, always
    (to the console when there is no bar, see training/progress.py, and to run.log)."""

    def __init__(self, total: int, name: str, show_bar: bool, metric: str = "val_acc", sign: float = 1.0):
        self.total, self.done, self.best = total, 0, -float("inf")
        self.metric, self.sign = metric, sign  # sign -1: a minimised metric, whose search value is its negative
        self.started = time.perf_counter()
        self.bar = Bar(total, name) if show_bar else None

    def trial(self, spec: RunSpec, evaluation: Evaluation, index: int, replayed: bool = False) -> None:
        self.done += 1
        self.best = max(self.best, evaluation.value)
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in evaluation.params.items()
                          if not isinstance(v, dict))
        record = evaluation.record
        scored = evaluation.status in USABLE and evaluation.extra.get("kind", "train") == "train"
        acc = f"{self.sign * evaluation.value:.4f}" if scored else "-"
        LOG.log(logging.DEBUG if replayed else logging.INFO,
                "%s b%d s%d trial %d: %s  %s  %s %s  train_s %.1f  (%d/%d trials, %.0f s)%s", spec.strategy,
                spec.budget, spec.seed, index, params or "range test", evaluation.status, self.metric, acc, evaluation.train_s,
                self.done, self.total, time.perf_counter() - self.started, "  [from the store]" if replayed else "",
                extra=PROGRESS)
        if evaluation.status == "failed" and getattr(record, "error", None):
            LOG.warning("%s b%d s%d trial %d failed: %s", spec.strategy, spec.budget, spec.seed, index,
                        record.error.splitlines()[0])
        if self.bar:
            info = f"{spec.strategy} b{spec.budget} s{spec.seed}  last {self.sign * evaluation.value:.3f} ({evaluation.status})  best {self.sign * self.best:.3f}"
            self.bar.update(advance=1, info=info)

    def run_done(self, spec: RunSpec, evaluations: list[Evaluation]) -> None:
        counts = {s: sum(e.status == s for e in evaluations) for s in ("ok", "diverged", "pruned", "failed")}
        best = max((e.value for e in evaluations if e.status in USABLE), default=None)
        LOG.info("run done: %s b%d s%d: %d trials (%s), best %s %s, train_s %.1f", spec.strategy, spec.budget,
                 spec.seed, len(evaluations), ", ".join(f"{k} {v}" for k, v in counts.items()), self.metric,
                 "-" if best is None else f"{self.sign * best:.4f}", sum(e.train_s for e in evaluations), extra=PROGRESS)

    def skip(self, n: int) -> None:
        self.done += n
        if self.bar:
            self.bar.update(advance=n)

    def close(self) -> None:
        if self.bar:
            self.bar.close()


class _RunLog:
    """Every `lrsearch` log line of this call, appended to `run.log` in the results folder."""

    def __init__(self, out: Path):
        self.handler = logging.FileHandler(out / "run.log", encoding="utf-8")
        self.handler.setLevel(logging.INFO)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        LOG.addHandler(self.handler)
        self.level = LOG.level
        if LOG.getEffectiveLevel() > logging.INFO:  # a library caller who configured nothing: the file gets info
            LOG.setLevel(logging.INFO)

    def close(self) -> None:
        LOG.removeHandler(self.handler)
        self.handler.close()
        LOG.setLevel(self.level)
