"""Every run's trials as an Optuna study too, so that standard viewers see them.

    optuna-dashboard sqlite:///runs/benchmark-cpu/optuna.sqlite3

The runner mirrors each run of the store (results.sqlite, the record) into `optuna.sqlite3`
beside it, an Optuna RDB storage: one study per (strategy, budget, seed), named
`<experiment>/<strategy>/b<budget>/s<seed>`, maximising validation accuracy (or the workload's own metric,
negated where it is minimised), its objective named after the metric (`val_acc`) and the problem, workload
and search space in its user attributes. Each trial keeps
its params (those of the search space; others, such as a range test's request or a whole
schedule, as the user attribute `params`), its value, its intermediate values (the accuracy
at each evaluation, as a pruner saw them) and its state: COMPLETE, PRUNED, or FAIL for a trial without a
value (diverged, failed, a range test; the user attribute `status` says which). A run's study is rebuilt from the store after
each of its trials, so it never holds a trial the store dropped on a resume. The store stays the
record: a mirror that cannot be written (a locked file, say) costs a warning, never a trial.
"""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from pathlib import Path

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from lrsearch.experiment.store import Store
from lrsearch.search.strategies import SearchSpace
from lrsearch.training.progress import LOG

FILE = "optuna.sqlite3"
def study_name(experiment: str, strategy: str, budget: int, seed: int) -> str:
    return f"{experiment}/{strategy}/b{budget}/s{seed}"


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    return {d.name: (CategoricalDistribution(d.choices) if d.categorical else FloatDistribution(d.low, d.high, log=d.log))
            for d in space}


class OptunaMirror:
    """The results folder's Optuna storage; `sync(store, run_id, name)` rewrites one run's study."""

    def __init__(self, results_dir: str | Path, space: SearchSpace, metric: str = "val_acc",
                 attrs: dict | None = None):
        """`metric` names the studies' objective (optuna-dashboard shows it in place of "Objective 0"): the
        workload's metric, as `-metric` where the workload minimises it (a search maximises the value).
        `attrs`: each study's user attributes (the problem, its workload and space)."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.metric, self.attrs = metric, dict(attrs or {})
        self.url = f"sqlite:///{Path(results_dir).resolve() / FILE}"
        self.storage = None
        for attempt in range(5):  # workers starting together on a new file race to create its tables
            try:
                self.storage = optuna.storages.RDBStorage(self.url, engine_kwargs={"connect_args": {"timeout": 30}})
                break
            except Exception as err:
                if attempt == 4:
                    LOG.warning("%s: not opened (%s: %s); this call mirrors nothing, results.sqlite has every trial",
                                FILE, type(err).__name__, str(err).splitlines()[0] if str(err) else "")
                time.sleep(0.2 * (attempt + 1))
        self.distributions = distributions(space.flattened())  # a conditional space: every branch's parameters
        self._lock = threading.Lock()  # runs side by side sync from several threads

    def sync(self, store: Store, run_id: int, name: str) -> None:
        if self.storage is None:
            return
        try:
            trials = [self._trial(store, run_id, t) for t in store.stored_trials(run_id)]
            with self._lock:
                try:
                    optuna.delete_study(study_name=name, storage=self.storage)
                except KeyError:
                    pass
                study = optuna.create_study(study_name=name, storage=self.storage, direction="maximize")
                with warnings.catch_warnings():  # Optuna calls it experimental, once per call
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    study.set_metric_names([self.metric])
                for key, value in self.attrs.items():
                    study.set_user_attr(key, value)
                study.add_trials(trials)
        except Exception as err:  # the store has the trial; the next sync rewrites this study
            LOG.warning("%s: study %s not updated (%s: %s); results.sqlite has every trial", FILE, name,
                        type(err).__name__, str(err).splitlines()[0] if str(err) else "")

    def studies(self) -> set[str]:
        return {study.study_name for study in self.storage.get_all_studies()} if self.storage else set()

    def _trial(self, store: Store, run_id: int, stored) -> optuna.trial.FrozenTrial:
        if stored.status == "pruned":
            state = TrialState.PRUNED
        elif math.isnan(stored.value):  # Optuna's own failure state, never a number
            state = TrialState.FAIL
        else:
            state = TrialState.COMPLETE
        inside = {k: v for k, v in stored.params.items() if k in self.distributions
                  and self.distributions[k]._contains(self.distributions[k].to_internal_repr(v))}
        attrs = {"status": stored.status, "train_s": stored.train_s, "overhead_s": stored.overhead_s,
                 "kind": stored.extra.get("kind", "train")}
        if inside != stored.params:
            attrs["params"] = json.dumps(stored.params, sort_keys=True)
        return optuna.trial.create_trial(
            state=state, value=stored.value if state == TrialState.COMPLETE else None,
            params=inside, distributions={k: self.distributions[k] for k in inside},
            intermediate_values=dict(store.reported_values(run_id, stored.trial_index)), user_attrs=attrs)
