"""K parallel workers in a replay, on a simulated clock (as Syne Tune's simulated backend).

The replay (`lrsearch.experiment.replay`) answers a trial at once from recorded curves; its
training seconds are the time the trial would have taken. `SimulatedPool` is the `TrialPool`
that `AskTellStrategy.run_parallel` fills, with those seconds on an event queue:

- `submit(params)` looks the trial up now and schedules its finish at `clock + train_s`; the
  trial starts at the clock.
- `wait(tokens)` pops the earliest finish (ties: the first submitted), moves the clock to it
  (never back: decisions may already have taken it past), and frees the trial's slot.
- The strategy's own decision time, the real seconds between leaving one pool call and
  entering the next (its `_ask` and `_tell`), is added to the clock, as Syne Tune charges a
  scheduler's time (`charge_decisions`; off, the clock holds training seconds only and a seed
  repeats its schedule exactly). Each batch of runs in a worker process starts with a short
  untimed run that imports the strategy's library, so the import is not charged.

Per trial it records when it started and finished and when, on that clock, it reached the
target: its start plus the replay's `time_to_target_s` (None if it never did).

A strategy that cannot propose while trials run (`parallel = False`, or not ask/tell at all)
runs one trial at a time on the same clock, whatever K: it gains nothing from K workers, and
its rows say so (`ran_sequentially`). What the libraries do with several asks before tells:

- grid and random: proposals do not depend on results; K workers change only when they run.
- Optuna TPE (optuna-tpe): `constant_liar` is on when trials run side by side (optuna_.py): a
  running trial counts as a bad result, so the next proposals move away from it.
- Optuna GP (optuna-gp): Optuna 5.0's GPSampler conditions on the running trials itself
  (q-batch log EI, candidates chosen greedily), with no option to set.
- NNI TPE (nni-tpe): NNI's TpeTuner applies its own constant liar, `constant_liar_type =
  "best"` by default: running trials count as the best result so far.
- Hyperopt (hyperopt-*): driven through `fmin`, which proposes after each result: `parallel =
  False`, sequential here. (Hyperopt's TPE itself counts pending trials as infinitely bad.)
- Optunity (optunity-*): its solvers call the objective in a loop: sequential here.

Simplifications. A pruning hook (a Proposal's `report`) is answered when the trial is
submitted, from its whole recorded curve at once, before later-started trials finish. The
pruning strategies are all `parallel = False` (their pruners decide from the study in this
process), so they run one at a time, where no other result could come in between and the
answers are a real run's; `run_parallel` hands a pool params only, so a parallel strategy
prunes nothing, here as on Ray. The clock ignores the time a real executor needs to start a
trial and return its result (Ray's scheduling and transfers).
"""

from __future__ import annotations

import heapq
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import pandas as pd

from lrsearch.experiment import replay
from lrsearch.experiment.config import Experiment
from lrsearch.experiment.replay import ReplayObjective, ReplayTable, check_replayable
from lrsearch.search.strategies import Evaluation, Objective, ReportHook, Strategy, get_strategy
from lrsearch.search.strategies.base import AskTellStrategy
from lrsearch.training.errors import InputError
from lrsearch.training.progress import LOG, PROGRESS, Bar, bar_wanted

WORKERS = (1, 2, 4, 8)


@dataclass
class SimulatedTrial:
    """One trial on the simulated clock (seconds from the run's start)."""

    evaluation: Evaluation
    start_s: float
    finish_s: float
    reached_at_s: float | None  # start_s + time_to_target_s; None: it never reached the target


class SimulatedPool:
    """A `TrialPool` of `width` workers over an event queue on a simulated clock (see the module
    docstring). One pool serves one run: `wait` is given every trial in flight. `evaluate` is the
    one-at-a-time path (reserve, submit, wait) for strategies that do not run in parallel.

    The objective's Evaluations carry `record["time_to_target_s"]`, as `ReplayObjective`'s do."""

    def __init__(self, objective: Objective, width: int, charge_decisions: bool = True):
        if width < 1:
            raise ValueError(f"width: a pool has at least 1 worker, got {width}")
        self.objective, self.width, self.charge_decisions = objective, width, charge_decisions
        self.clock_s = 0.0
        self.decision_s = 0.0  # real seconds spent by the strategy between pool calls (charged or not)
        self.trials: list[SimulatedTrial] = []  # in submit order; a token is an index here
        self._finishes: list[tuple[float, int]] = []  # heap of (finish_s, token) of the trials in flight
        self._free = width
        self._left = time.perf_counter()  # when control last went back to the strategy

    def _enter(self) -> None:
        spent = time.perf_counter() - self._left
        self.decision_s += spent
        if self.charge_decisions:
            self.clock_s += spent

    def _leave(self) -> None:
        self._left = time.perf_counter()

    def reserve(self, block: bool) -> bool:
        self._enter()
        try:
            if self._free:
                self._free -= 1
                return True
            if block:  # nothing in flight could ever free a slot
                raise RuntimeError("reserve(block=True) with every slot taken: a run never waits on its own slots")
            return False
        finally:
            self._leave()

    def release(self) -> None:
        self._enter()
        self._free += 1
        self._leave()

    def submit(self, params: dict, report: ReportHook | None = None) -> int:
        self._enter()
        evaluation = self.objective(params, report)
        ttt = evaluation.record["time_to_target_s"]
        start_s = self.clock_s
        self.trials.append(SimulatedTrial(evaluation, start_s, start_s + evaluation.train_s,
                                          None if ttt is None else start_s + ttt))
        token = len(self.trials) - 1
        heapq.heappush(self._finishes, (self.trials[token].finish_s, token))
        self._leave()
        return token

    def wait(self, tokens: list) -> tuple[int, Evaluation]:
        self._enter()
        finish_s, token = heapq.heappop(self._finishes)
        if token not in tokens:
            raise ValueError(f"wait: the next trial to finish (token {token}) is not among those waited on; "
                             "a SimulatedPool serves one run")
        self.clock_s = max(self.clock_s, finish_s)
        self._free += 1
        self._leave()
        return token, self.trials[token].evaluation

    def evaluate(self, params: dict, report: ReportHook | None = None) -> Evaluation:
        """One trial, run to its end before the strategy decides again: the objective for `Strategy.run`."""
        self.reserve(block=True)
        return self.wait([self.submit(params, report)])[1]


def runs_in_parallel(strategy: Strategy) -> bool:
    """Whether the strategy keeps several trials in flight (ask/tell and declared parallel)."""
    return isinstance(strategy, AskTellStrategy) and strategy.parallel


def simulate_run(strategy: Strategy, objective: Objective, budget: int, workers: int,
                 charge_decisions: bool = True) -> SimulatedPool:
    """One run of `budget` trials with `workers` workers on a simulated clock; the pool holds its trials.
    A strategy that cannot run in parallel runs one trial at a time (a pool of width 1)."""
    if runs_in_parallel(strategy):
        pool = SimulatedPool(objective, workers, charge_decisions)
        strategy.run_parallel(pool, budget)
    else:
        pool = SimulatedPool(objective, 1, charge_decisions)
        strategy.run(pool.evaluate, budget)
    return pool


def _simulated_runs(job: tuple) -> list[dict]:
    """One strategy for a list of seeds at each K: its trials as rows (in a worker process)."""
    strategy_name, workers_list, budget, seeds, space, options, target_acc, seed_draw, charge_decisions = job
    table = replay._worker_table
    # untimed: the first run in a process imports the strategy's library, which is no decision time
    simulate_run(get_strategy(strategy_name, space, seed=0, **options), ReplayObjective(table, target_acc), 2, 1, False)
    rows = []
    for seed in seeds:
        for workers in workers_list:
            strategy = get_strategy(strategy_name, space, seed=seed, **options)
            pool = simulate_run(strategy, ReplayObjective(table, target_acc, seed, seed_draw), budget, workers,
                                charge_decisions)
            sequential = not runs_in_parallel(strategy)
            for i, trial in enumerate(pool.trials):
                ev = trial.evaluation
                rows.append({"strategy": strategy_name, "workers": workers, "seed": seed, "trial_index": i,
                             "lr": float(ev.params["lr"]), "status": ev.status,
                             "value": ev.value if ev.has_value else math.nan,
                             "train_s": ev.train_s, "overhead_s": ev.overhead_s, "start_s": trial.start_s,
                             "finish_s": trial.finish_s,
                             "reached_at_s": math.nan if trial.reached_at_s is None else trial.reached_at_s,
                             "time_to_target_s": ev.record["time_to_target_s"], "ran_sequentially": sequential})
    return rows


def parallel_budget(experiment: Experiment) -> int:
    """The trials per run of the replay with K simulated workers: `[replay] simulated_budget`, else the largest
    budget."""
    return (experiment.replay.simulated_budget if experiment.replay else None) or max(experiment.budgets)


def replay_parallel(experiment: Experiment, table: ReplayTable | None = None,
                    workers_list: tuple[int, ...] | list[int] = WORKERS, budget: int | None = None,
                    seeds: list[int] | None = None, charge_decisions: bool = True, progress: bool = True,
                    processes: int | None = None) -> pd.DataFrame:
    """Every strategy of the experiment, each seed, at each number of workers K in `workers_list`, on a
    simulated clock (see the module docstring): one row per trial, in submit order (`trial_index`).
    `budget` defaults to `parallel_budget(experiment)`, `seeds` to its seeds; `processes` (the runs are spread
    over them) to the config's replay workers, else one per CPU core."""
    if experiment.replay is None:
        raise InputError("replay: this experiment has no [replay] table; add one, or train it with `lrsearch run`")
    if not workers_list or any(k < 1 for k in workers_list):
        raise InputError(f"workers_list: numbers of workers >= 1, got {list(workers_list)}")
    table = table or ReplayTable.load(experiment.replay.table)
    check_replayable(experiment, table)
    space = experiment.search_space().to_dict()
    budget = budget or parallel_budget(experiment)
    seeds = list(experiment.seeds if seeds is None else seeds)
    processes = processes or experiment.replay.workers or os.cpu_count() or 1
    jobs = [(name, list(workers_list), budget, chunk, space, experiment.options.get(name, {}),
             experiment.target_value(), experiment.replay.seed_draw, charge_decisions)
            for name in experiment.strategies
            for chunk in replay.seed_chunks(seeds, processes)]
    rows: list[dict] = []
    with ProcessPoolExecutor(processes, initializer=replay._init_worker, initargs=(table,)) as pool:
        bar = Bar(len(jobs), f"{experiment.name} (K workers)") if progress and bar_wanted() else None
        for done, chunk_rows in enumerate(pool.map(_simulated_runs, jobs), start=1):
            rows.extend(chunk_rows)
            name, _, _, chunk = jobs[done - 1][:4]
            LOG.info("%s: simulated %s K=%s seeds %d-%d (%d/%d chunks)", experiment.name, name,
                     ",".join(map(str, workers_list)), chunk[0], chunk[-1], done, len(jobs), extra=PROGRESS)
            if bar:
                bar.update(advance=1)
        if bar:
            bar.close()
    return pd.DataFrame(rows)
