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

import heapq
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import torch

from lrsearch.experiment.claims import DefinitionChanged, RunClaims, check_definitions, run_definition
from lrsearch.experiment.config import Experiment
from lrsearch.experiment.executors import Cancelled, Executor, make_executor
from lrsearch.experiment.listeners import default_listeners
from lrsearch.experiment.provenance import environment
from lrsearch.experiment.store import Store, StoredTrial, TrialRecord
from lrsearch.search.objective import WorkloadObjective
from lrsearch.search.strategies import REGISTRY, Evaluation, ReportHook, get_strategy
from lrsearch.training.errors import InputError
from lrsearch.training.progress import LOG
from lrsearch.training.trainer import resolve_device


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
    return [RunSpec(s, b, seed) for s in strategies for b in run_budgets(experiment, s)
            for seed in (seeds or experiment.seeds)]


def run_budgets(experiment: Experiment, strategy: str) -> list[int]:
    """The budgets `strategy` runs at. On a table (the simulated executor), a strategy whose proposals do not
    depend on its budget (all but grid: `Strategy.budget_aware`) runs once, at the largest budget; the report's
    Budgets section reads each smaller budget b off its first b trials (reporting/budgets.py), as tabular
    benchmarks read anytime performance. Trained for real, every budget is a run of its own."""
    if experiment.executor.kind == "simulated" and not REGISTRY[strategy].budget_aware:
        return [max(experiment.budgets)]
    return list(experiment.budgets)


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
        self.store.add_trial(TrialRecord(
            run_id=self.run_id, trial_index=index, kind=kind, params=evaluation.params,
            lr=None if kind == "range_test" else representative_lr(evaluation.params), status=evaluation.status,
            value=evaluation.value if evaluation.has_value and kind == "train" else None,
            train_s=evaluation.train_s, overhead_s=evaluation.overhead_s, extra=extra, curve=curve, result=record))
        return index, False


class _SimulatedRecording(_RecordingObjective):
    """The recording objective on a simulated clock (a SimulatedExecutor; trials read from a table). One per run:
    the run's clock starts at 0; a trial starts when it is submitted (or called) and finishes its price later,
    `width` of them in flight, as in Syne Tune's simulator. Its price is its steps x the calibrated seconds per
    step (the table workload's `price`), or its recorded training seconds without a calibration. Each trial's
    place on the clock is stored in its extra["simulated"]: start_s, finish_s, reached_at_s (start plus its
    time to target; None: it never reached it) and workers. A replayed stored trial keeps its stored duration.

    The strategy's own decision time is charged from the calibration's decisions table (calibration.py: the median
    seconds per strategy and trial index, measured once on a quiet machine), before each trial starts; without one
    it is not charged. Its measured seconds here (overhead_s) stay recorded as a check: they depend on the machine,
    which the clock is there to leave out."""

    def __init__(self, *args, workload=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.workload = workload
        self.clock_s = 0.0
        self._free = self.width
        self._finishes: list[tuple[float, int]] = []  # heap of (finish_s, trial index) of the trials in flight
        self._pending: dict[int, Evaluation] = {}

    def _price(self, evaluation: Evaluation) -> tuple[float, float | None]:
        """(seconds the trial takes, seconds until it reached the target or None) on the run's clock."""
        sim = evaluation.extra.get("simulated")
        if sim is not None:  # replayed from the store
            reached = sim.get("reached_at_s")
            return sim["finish_s"] - sim["start_s"], None if reached is None else reached - sim["start_s"]
        result, price = evaluation.record, getattr(self.workload, "price", lambda *a: None)
        if result is None:
            return evaluation.train_s, None
        steps = [row["step"] for row in result.curve]
        duration = price(evaluation.params, result.steps, len(steps))
        if duration is None:
            duration = result.train_s
        to_target = None
        if result.steps_to_target is not None:
            to_target = price(evaluation.params, result.steps_to_target, sum(s <= result.steps_to_target for s in steps))
            if to_target is None:
                to_target = result.time_to_target_s
        return duration, to_target

    def _decision_s(self, index: int) -> float:
        """The strategy's calibrated decision seconds before trial `index` (0 without a decisions table)."""
        calibration = getattr(self.workload, "calibration", None)
        decided = calibration.decision_s(self.strategy.name, index) if calibration is not None else None
        return decided or 0.0

    def _place(self, evaluation: Evaluation, index: int) -> float:
        """Put a trial on the clock: its strategy decides (the clock moves on by the calibrated decision seconds),
        then it runs for its price. A replayed trial keeps its stored start, decision and duration."""
        duration, to_target = self._price(evaluation)
        sim = evaluation.extra.get("simulated")
        decision = sim.get("decision_s", 0.0) if sim is not None else self._decision_s(index)
        self.clock_s += decision
        start = self.clock_s
        evaluation.extra = {**evaluation.extra, "simulated": {
            "workers": self.width, "decision_s": decision, "start_s": start, "finish_s": start + duration,
            "reached_at_s": None if to_target is None else start + to_target}}
        return start + duration

    def __call__(self, params: dict, report: ReportHook | None) -> Evaluation:
        k, old = self._stored(params)
        evaluation = self._replay(old, report) if old else self.executor.evaluate(self.objective, params, report)
        self._index_of[id(evaluation)] = k
        self.clock_s = self._place(evaluation, k)
        return evaluation

    def reserve(self, block: bool) -> bool:
        if self._free:
            self._free -= 1
            return True
        if block:  # nothing in flight could ever free a slot
            raise RuntimeError("reserve(block=True) with every simulated worker busy")
        return False

    def release(self) -> None:
        self._free += 1

    def submit(self, params: dict) -> int:
        k, old = self._stored(params)
        evaluation = self._replay(old, None) if old else self.executor.evaluate(self.objective, params, None)
        heapq.heappush(self._finishes, (self._place(evaluation, k), k))
        self._pending[k] = evaluation
        return k

    def wait(self, tokens: list[int]) -> tuple[int, Evaluation]:
        finish_s, k = heapq.heappop(self._finishes)  # the earliest finish; ties: the first proposed
        self.clock_s = max(self.clock_s, finish_s)
        self._free += 1
        evaluation = self._pending.pop(k)
        self._index_of[id(evaluation)] = k
        return k, evaluation


def run_experiment(experiment: Experiment, results_dir: str | Path | None = None, only: list[str] | None = None,
                   seeds: list[int] | None = None, executor: Executor | None = None, device: str | None = None,
                   data_source: str | None = None, progress: bool | None = None,
                   on_trial: Callable[[RunSpec, Evaluation], None] | None = None, reset: bool = False) -> Path:
    """Run what is not complete yet; return the results folder. The executor (default: the one the
    experiment's [executor] names, local unless it says otherwise) is closed at the end, also on
    errors and Ctrl-C (a Ray executor then stops its trials and its Ray).

    Several processes may run the same experiment on one results folder: each claims a run before
    training it (claims.py), runs another process holds are left to it, and a process returns once every run
    is complete (taking over the runs of a process that stopped sending heartbeats). Stored runs trained
    under another definition stop the call before any training (DefinitionChanged), unless `reset`
    drops them.

    Each finished trial is an event for the listeners (listeners.py): progress (a bar when `progress`,
    default: when stderr is a terminal; one `lrsearch` log line per finished trial and run in any case), the
    run log (`run.log` in the results folder), the Optuna mirror, and `on_trial(spec, evaluation)`."""
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
        if executor.simulated:  # thousands of trials a minute, each redone in milliseconds
            store.hand_writes_to_the_os()
        try:
            check_definitions(store, experiment, specs, workload, reset)
        except DefinitionChanged:
            store.close()
            raise
        # Trials in other processes prepare their own copy: here the data only need a CPU.
        workload.prepare(torch.device("cpu") if executor.remote else resolve_device(device))
        experiment.write_json(out, workload)
        claims = RunClaims(store, experiment.name, environment() | {"executor": executor.describe()})
        listeners = default_listeners(experiment, workload, store, out, specs, progress, on_trial)
        LOG.info("%s: %d runs (%s), results in %s", experiment.name, len(specs),
                 ", ".join(sorted({s.strategy for s in specs})), out)
        lock = threading.Lock()  # the listeners, from several threads

        def run_one(spec: RunSpec) -> bool:
            """Train the run unless it is complete (True) or a live worker holds it (False: try again later)."""
            state, run_id = claims.claim(task=workload.name, strategy=spec.strategy, budget=spec.budget,
                                         seed=spec.seed, definition=run_definition(experiment, spec, workload))
            if state == "busy":
                return False
            if state == "complete":
                with lock:
                    for listener in listeners:
                        listener.run_skipped(spec, run_id)
                return True
            objective = WorkloadObjective(workload, spec.seed, device)
            strategy = get_strategy(spec.strategy, space, seed=spec.seed, **experiment.options.get(spec.strategy, {}))
            if executor.simulated:  # a table's trials, `workers` in flight on the run's simulated clock
                parallel = executor.workers > 1 and strategy.parallel
                recording = _SimulatedRecording(objective, executor, store, run_id, executor.workers if parallel else 1,
                                                strategy.startup_trials, strategy, workload=workload)
            else:
                parallel = executor.slots > 1 and strategy.parallel
                recording = _RecordingObjective(objective, executor, store, run_id, executor.slots if parallel else 1,
                                                strategy.startup_trials, strategy)

            def after_trial(evaluation: Evaluation) -> None:
                index, replayed = recording.record(evaluation)
                with lock:
                    for listener in listeners:
                        listener.trial(spec, run_id, evaluation, index, replayed)

            if parallel:
                evaluations = strategy.run_parallel(recording, spec.budget, experiment.time_budget_s, on_trial=after_trial)
            else:
                evaluations = strategy.run(recording, spec.budget, experiment.time_budget_s, on_trial=after_trial)
            claims.complete(run_id)
            with lock:
                for listener in listeners:
                    listener.run_done(spec, run_id, evaluations)
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
                    time.sleep(min(claims.interval_s, 5.0))
        finally:
            claims.close()  # runs an error or Ctrl-C interrupted: free at once
            for listener in listeners:
                listener.close()
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
