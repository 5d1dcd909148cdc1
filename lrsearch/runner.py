"""The experiment runner: every (strategy, budget, seed) run not yet complete in the store.

Resuming is the default. A run left unfinished by a killed process is resumed by replaying
its strategy from the start with the same seed: each proposal that matches the stored trial
at that position gets the stored result back (its pruning reports re-issued from the stored
curve), so the library reaches the same state without training again; from the first
proposal that differs (a library that does not repeat itself), the stored trials are
dropped and trained afresh. Nothing finished is lost, nothing is recorded twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from lrsearch.config import Experiment
from lrsearch.data import resolve_source
from lrsearch.objective import TrainingObjective
from lrsearch.provenance import environment
from lrsearch.store import Store, StoredTrial
from lrsearch.strategies import Evaluation, ReportHook, get_strategy
from lrsearch.train import prepare_data, resolve_device


@dataclass(frozen=True)
class RunSpec:
    strategy: str
    budget: int
    seed: int


class Executor:
    """How trials are evaluated. The local executor runs them one after another in this
    process; a parallel or distributed one overrides `evaluate` (and may run several
    `RunSpec`s side by side) without the strategies knowing."""

    def evaluate(self, objective: TrainingObjective, params: dict, report: ReportHook | None) -> Evaluation:
        return objective(params, report)


class LocalExecutor(Executor):
    pass


def plan(experiment: Experiment, only: list[str] | None = None, seeds: list[int] | None = None) -> list[RunSpec]:
    strategies = experiment.strategies
    if only:
        unknown = [s for s in only if s not in strategies]
        if unknown:
            raise ValueError(f"--only {', '.join(unknown)}: not in the experiment's strategies ({', '.join(strategies)})")
        strategies = [s for s in strategies if s in only]
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
    rest through the executor; `record` (the on_trial callback) commits each new trial."""

    def __init__(self, objective: TrainingObjective, executor: Executor, store: Store, run_id: int):
        self.objective, self.executor, self.store, self.run_id = objective, executor, store, run_id
        self.stored: list[StoredTrial] = store.stored_trials(run_id)
        self.index = 0
        self._replayed: set[int] = set()

    def __call__(self, params: dict, report: ReportHook | None) -> Evaluation:
        k = self.index
        self.index += 1
        if k < len(self.stored):
            old = self.stored[k]
            if old.params == json.loads(json.dumps(params)):
                return self._replay(old, report)
            self.store.drop_trials_from(self.run_id, k)
            self.stored = self.stored[:k]
        return self.executor.evaluate(self.objective, params, report)

    def _replay(self, old: StoredTrial, report: ReportHook | None) -> Evaluation:
        if report is not None:
            for step, acc in self.store.reported_values(self.run_id, old.trial_index):
                if report(step, acc):
                    break
        evaluation = Evaluation(old.params, old.value, old.status, old.train_s, old.overhead_s, extra=old.extra)
        self._replayed.add(id(evaluation))
        return evaluation

    def record(self, evaluation: Evaluation) -> None:
        if id(evaluation) in self._replayed:
            return
        index = self.index - 1
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
        self.store.add_trial(self.run_id, index, kind, evaluation.params,
                             None if kind == "range_test" else representative_lr(evaluation.params),
                             evaluation.status, evaluation.value, evaluation.train_s, evaluation.overhead_s,
                             dict(evaluation.extra), curve, record)


def run_experiment(experiment: Experiment, results_dir: str | Path | None = None, only: list[str] | None = None,
                   seeds: list[int] | None = None, executor: Executor | None = None, device: str | None = None,
                   data_source: str | None = None, progress: bool = True,
                   on_trial: Callable[[RunSpec, Evaluation], None] | None = None) -> Path:
    """Run what is not complete yet; return the results folder."""
    task, space = experiment.task_spec(), experiment.search_space()
    # A missing or unreadable data source stops here with its one-line message (DataError), instead of
    # every trial being recorded as failed and the runs as complete. Resolved once, so that every trial
    # reads the same source (and the in-process data cache is keyed by it, not by "the default").
    data_source = str(resolve_source(data_source))
    prepare_data(task, resolve_device(device), data_source)
    out = experiment.results_dir(results_dir)
    store = Store(out / "results.sqlite")
    write_experiment_json(experiment, out)
    executor = executor or LocalExecutor()
    env = environment()
    specs = plan(experiment, only, seeds)
    bar = _Progress(sum(s.budget for s in specs), experiment.name) if progress else None
    try:
        for spec in specs:
            if store.run_status(experiment.name, spec.strategy, spec.budget, spec.seed) == "complete":
                if bar:
                    bar.skip(spec.budget)
                continue
            run_id = store.open_run(experiment.name, task.name, spec.strategy, spec.budget, spec.seed, env)
            objective = TrainingObjective(task, spec.seed, device, data_source)
            recording = _RecordingObjective(objective, executor, store, run_id)
            strategy = get_strategy(spec.strategy, space, seed=spec.seed, **experiment.options.get(spec.strategy, {}))

            def after_trial(evaluation: Evaluation, spec=spec, recording=recording) -> None:
                recording.record(evaluation)
                if bar:
                    bar.trial(spec, evaluation)
                if on_trial:
                    on_trial(spec, evaluation)

            evaluations = strategy.run(recording, spec.budget, experiment.time_budget_s, on_trial=after_trial)
            store.complete_run(run_id)
            if bar:
                bar.skip(spec.budget - len(evaluations))  # budget a strategy left unused (grid, range tests)
    finally:
        if bar:
            bar.close()
        store.close()
    return out


def write_experiment_json(experiment: Experiment, out: Path) -> None:
    """The validated config and the task it resolves to, for the report."""
    config = experiment.model_dump() | {"task": asdict(experiment.task_spec()), "space": experiment.search_space().to_dict()}
    (out / "experiment.json").write_text(json.dumps(config, indent=2))


class _Progress:
    def __init__(self, total: int, name: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.best = 0.0
        self.progress = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn())
        self.progress.start()
        self.id = self.progress.add_task(name, total=total, info="")

    def trial(self, spec: RunSpec, evaluation: Evaluation) -> None:
        self.best = max(self.best, evaluation.value)
        info = f"{spec.strategy} b{spec.budget} s{spec.seed}  last {evaluation.value:.3f} ({evaluation.status})  best {self.best:.3f}"
        self.progress.update(self.id, advance=1, info=info)

    def skip(self, n: int) -> None:
        self.progress.update(self.id, advance=n)

    def close(self) -> None:
        self.progress.stop()
