"""What happens beside a run's trials, as listeners on the runner's trial events.

The runner (runner.py) plans, claims and trains; each finished trial, each run started or done, is an event
that every listener hears, in order, under one lock (runs may go side by side in threads):
- `Progress`: the bar on a terminal, and one `lrsearch` log line per trial and per run;
- `RunLog`: every `lrsearch` log line of the call, appended to `run.log` in the results folder;
- `Mirror`: each run as an Optuna study too (optuna-dashboard, see dashboard.py);
- `Callback`: the caller's own `on_trial(spec, evaluation)`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from lrsearch.experiment.config import Experiment
from lrsearch.experiment.dashboard import OptunaMirror, study_name
from lrsearch.experiment.store import Store
from lrsearch.search.strategies import USABLE, Evaluation
from lrsearch.training.progress import LOG, PROGRESS, Bar, bar_wanted
from lrsearch.training.workloads import Workload


class Listener:
    """The runner's trial events; each does nothing unless a listener says otherwise. `spec` is the run's
    RunSpec (strategy, budget, seed)."""

    def run_skipped(self, spec, run_id: int) -> None:
        """A run found complete in the store."""

    def trial(self, spec, run_id: int, evaluation: Evaluation, index: int, replayed: bool) -> None:
        """A trial finished (`replayed`: given back from the store while a run resumes, not trained)."""

    def run_done(self, spec, run_id: int, evaluations: list[Evaluation]) -> None:
        """A run ended and was marked complete."""

    def close(self) -> None:
        """The call ends (also on errors and Ctrl-C)."""


class Progress(Listener):
    """The run's progress: a bar on a terminal; one log line per finished trial and per finished run, always
    (to the console when there is no bar, see training/progress.py, and to run.log)."""

    def __init__(self, total: int, name: str, show_bar: bool, metric: str = "val_acc", sign: float = 1.0):
        self.total, self.done, self.best = total, 0, None
        self.metric, self.sign = metric, sign  # sign -1: a minimised metric, whose search value is its negative
        self.started = time.perf_counter()
        self.bar = Bar(total, name) if show_bar else None

    def run_skipped(self, spec, run_id: int) -> None:
        self.skip(spec.budget)

    def trial(self, spec, run_id: int, evaluation: Evaluation, index: int, replayed: bool = False) -> None:
        self.done += 1
        scored = evaluation.has_value and evaluation.extra.get("kind", "train") == "train"
        if scored:
            self.best = evaluation.value if self.best is None else max(self.best, evaluation.value)
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in evaluation.params.items()
                          if not isinstance(v, dict))
        record = evaluation.record
        value = f"{self.sign * evaluation.value:.4f}" if scored else "-"
        LOG.log(logging.DEBUG if replayed else logging.INFO,
                "%s b%d s%d trial %d: %s  %s  %s %s  train_s %.1f  (%d/%d trials, %.0f s)%s", spec.strategy,
                spec.budget, spec.seed, index, params or "range test", evaluation.status, self.metric, value,
                evaluation.train_s, self.done, self.total, time.perf_counter() - self.started,
                "  [from the store]" if replayed else "", extra=PROGRESS)
        if evaluation.status == "failed" and getattr(record, "error", None):
            LOG.warning("%s b%d s%d trial %d failed: %s", spec.strategy, spec.budget, spec.seed, index,
                        record.error.splitlines()[0])
        if self.bar:
            best = "-" if self.best is None else f"{self.sign * self.best:.3f}"
            self.bar.update(advance=1, info=f"{spec.strategy} b{spec.budget} s{spec.seed}  last {value} "
                                            f"({evaluation.status})  best {best}")

    def run_done(self, spec, run_id: int, evaluations: list[Evaluation]) -> None:
        counts = {s: sum(e.status == s for e in evaluations) for s in ("ok", "diverged", "pruned", "failed")}
        best = max((e.value for e in evaluations if e.status in USABLE and e.has_value), default=None)
        LOG.info("run done: %s b%d s%d: %d trials (%s), best %s %s, train_s %.1f", spec.strategy, spec.budget,
                 spec.seed, len(evaluations), ", ".join(f"{k} {v}" for k, v in counts.items()), self.metric,
                 "-" if best is None else f"{self.sign * best:.4f}", sum(e.train_s for e in evaluations), extra=PROGRESS)
        self.skip(spec.budget - len(evaluations))  # budget a strategy left unused (grid, range tests)

    def skip(self, n: int) -> None:
        self.done += n
        if self.bar:
            self.bar.update(advance=n)

    def close(self) -> None:
        if self.bar:
            self.bar.close()


class RunLog(Listener):
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


class Mirror(Listener):
    """Each run of `experiment` as an Optuna study beside the store, synced after every trial; a complete run of
    a store written before the mirror existed is mirrored when it is found."""

    def __init__(self, store: Store, experiment: str, mirror: OptunaMirror):
        self.store, self.experiment, self.mirror = store, experiment, mirror
        self.mirrored = mirror.studies()

    def _name(self, spec) -> str:
        return study_name(self.experiment, spec.strategy, spec.budget, spec.seed)

    def run_skipped(self, spec, run_id: int) -> None:
        if self._name(spec) not in self.mirrored:
            self.mirror.sync(self.store, run_id, self._name(spec))

    def trial(self, spec, run_id: int, evaluation: Evaluation, index: int, replayed: bool) -> None:
        self.mirror.sync(self.store, run_id, self._name(spec))


class Callback(Listener):
    """The caller's `on_trial(spec, evaluation)`, after every trial."""

    def __init__(self, on_trial: Callable):
        self.on_trial = on_trial

    def trial(self, spec, run_id: int, evaluation: Evaluation, index: int, replayed: bool) -> None:
        self.on_trial(spec, evaluation)


def default_listeners(experiment: Experiment, workload: Workload, store: Store, out: Path, specs: list,
               progress: bool | None, on_trial: Callable | None) -> list[Listener]:
    """Progress, the run log, the Optuna mirror (its objective named after the metric) and the caller's
    callback, in that order. A simulated experiment (trials read from a table, thousands of them a minute) has
    no mirror: it is for watching trainings live, and rewriting a study per trial would cost more than the run."""
    space = experiment.search_space()
    shown = bar_wanted() if progress is None else progress
    listeners: list[Listener] = [Progress(sum(s.budget for s in specs), experiment.name, shown, workload.metric,
                                          -1.0 if workload.direction == "minimize" else 1.0), RunLog(out)]
    if experiment.executor.kind == "simulated":
        return listeners + ([Callback(on_trial)] if on_trial is not None else [])
    metric = workload.metric if workload.direction == "maximize" else f"-{workload.metric}"
    mirror = OptunaMirror(out, space, metric, {"problem": experiment.name, "workload": workload.name,
                                               "metric": workload.metric, "direction": workload.direction,
                                               "space": json.dumps(space.to_dict(), sort_keys=True)})
    listeners.append(Mirror(store, experiment.name, mirror))
    return listeners + ([Callback(on_trial)] if on_trial is not None else [])
