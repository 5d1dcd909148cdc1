"""Strategies with trials in flight (`AskTellStrategy.run_parallel`), on a thread pool and a
synthetic objective: no training, no Ray. The Ray executor itself: tests/test_ray.py."""

import math
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import pytest

from lrsearch.search.strategies import REGISTRY, Evaluation, get_strategy, strategy_names

SPACE = {"lr": {"low": 1e-4, "high": 1.0, "log": True}}
PARALLEL = [name for name in strategy_names() if REGISTRY[name].parallel]
SLOW_ASK = {"hebo": 3.0, "synetune-bore": 3.0, "smac-bo": 3.0}  # seconds a trial lasts for these (see below)
OPTIONS = {"nni-gp": {"selection_num_warm_up": 1000, "selection_num_starting_points": 5},
           "hebo": {"acq_generations": 2}, "synetune-bore": {"acq_candidates": 50}}


def accuracy(lr: float) -> float:
    """A known landscape: best at lr = 0.03."""
    return 0.9 * math.exp(-((math.log10(lr) + 1.5) ** 2))


class ThreadTrialPool:
    """A TrialPool over `width` threads. Trials finish out of proposal order (each sleeps an
    amount set by its lr), and the pool counts how many ran at once."""

    def __init__(self, width: int, train_s: float = 0.0, hold_s: float = 0.0):
        self.width, self.train_s, self.hold_s = width, train_s, hold_s  # hold_s: each trial's least duration
        self.free, self.running, self.most_at_once = width, 0, 0
        self.proposed: list[dict] = []
        self.lock = threading.Lock()
        self.threads = ThreadPoolExecutor(width)

    def reserve(self, block: bool) -> bool:
        if not self.free:
            assert not block, "run_parallel blocked on a slot with nothing in flight to free one"
            return False
        self.free -= 1
        return True

    def release(self) -> None:
        self.free += 1

    def _trial(self, params: dict) -> Evaluation:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.hold_s + 0.002 + 0.01 * (hash(round(params["lr"], 12)) % 5) / 5)
        with self.lock:
            self.running -= 1
        return Evaluation(params, accuracy(params["lr"]), train_s=self.train_s)

    def submit(self, params: dict):
        self.proposed.append(params)
        future = self.threads.submit(self._trial, params)
        future.index = len(self.proposed) - 1
        return future

    def wait(self, futures):
        done = wait(futures, return_when=FIRST_COMPLETED).done
        future = min(done, key=lambda f: f.index)
        self.free += 1
        return future, future.result()


@pytest.mark.parametrize("name", PARALLEL)
def test_parallel_strategies_keep_their_budget_and_fill_the_slots(name):
    # a library that thinks for a second per proposal (HEBO, BORE) would find the earlier trials of milliseconds
    # finished before it asks again: its trials last longer here, so that 3 can be in flight at once
    pool = ThreadTrialPool(width=3, hold_s=SLOW_ASK.get(name, 0.0))
    strategy = get_strategy(name, SPACE, seed=0, **OPTIONS.get(name, {}))
    evaluations = strategy.run_parallel(pool, 9)
    assert len(evaluations) == len(pool.proposed) == 9
    assert pool.most_at_once == 3 and pool.free == 3  # slots all used, and all given back
    assert all(1e-4 <= e.params["lr"] <= 1.0 for e in evaluations)
    assert all(e.overhead_s >= 0 for e in evaluations)


@pytest.mark.parametrize("name", ["grid", "random", "optuna-qmc"])
def test_proposals_that_ignore_results_are_the_same_in_parallel(name):
    """Seeded strategies whose proposals do not depend on results propose the same trials,
    one at a time or three at once (the Ray executor's "same params" promise)."""
    sequential = [e.params for e in get_strategy(name, SPACE, seed=3).run(
        lambda p, report: Evaluation(p, accuracy(p["lr"])), 8)]
    pool = ThreadTrialPool(width=3)
    get_strategy(name, SPACE, seed=3).run_parallel(pool, 8)
    assert pool.proposed == sequential


@pytest.mark.parametrize("name", ["optuna-tpe", "nni-tpe", "optuna-cmaes"])
def test_one_slot_is_the_sequential_search(name):
    """run_parallel with one slot asks and tells in the same order as run: the same trials."""
    sequential = [e.params for e in get_strategy(name, SPACE, seed=1).run(
        lambda p, report: Evaluation(p, accuracy(p["lr"])), 14)]
    pool = ThreadTrialPool(width=1)
    get_strategy(name, SPACE, seed=1).run_parallel(pool, 14)
    assert pool.proposed == sequential


def test_tpe_with_four_in_flight_still_finds_the_optimum():
    pool = ThreadTrialPool(width=4)
    evaluations = get_strategy("optuna-tpe", SPACE, seed=0, n_startup_trials=4).run_parallel(pool, 32)
    assert pool.most_at_once == 4
    assert max(e.value for e in evaluations) > 0.85  # accuracy(0.03) = 0.9


def test_time_budget_stops_new_proposals_in_parallel():
    pool = ThreadTrialPool(width=2, train_s=1.0)
    evaluations = get_strategy("random", SPACE, seed=0).run_parallel(pool, 20, time_budget_s=3.0)
    # no trial starts once finished trials have trained 3 s; at most `width` were already running then
    assert 3 <= len(evaluations) <= 3 + 2 and pool.free == 2
