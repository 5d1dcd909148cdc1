"""K parallel workers on a simulated clock (lrsearch/experiment/simulated.py): a schedule worked out by
hand, the sequential replay reproduced at K = 1 on the committed table, decision time charged to the
clock, a strategy that cannot run in parallel kept at one trial at a time, Optuna's constant liar with
trials in flight, the tables and the config."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrsearch.experiment.config import ConfigError, Experiment
from lrsearch.experiment.replay import ReplayObjective, ReplayTable, replay_experiment
from lrsearch.experiment.simulated import replay_parallel, simulate_run
from lrsearch.reporting.budgets import budget_runs
from lrsearch.reporting.parallel import parallel_runs, parallel_summary
from lrsearch.search.strategies import Evaluation, parse_space
from lrsearch.search.strategies.base import AskTellStrategy, Proposal
from lrsearch.search.strategies.optuna_ import OptunaTPE

REPO = Path(__file__).resolve().parents[1]
COMMITTED_TABLE = REPO / "results" / "benchmark-cpu-table"
SPACE = {"lr": {"low": 1e-3, "high": 3.0, "log": True}}
TARGET = 0.46  # experiments/budgets-replay.toml's


class FixedLRs(AskTellStrategy):
    """Proposes the given LRs in order and learns nothing; sleeps `ask_s` per proposal; logs its calls."""

    name = "fixed-lrs"

    def __init__(self, lrs: list[float], ask_s: float = 0.0, parallel: bool = True):
        super().__init__(parse_space(SPACE))
        self.lrs, self.ask_s, self.parallel = lrs, ask_s, parallel
        self.calls: list[tuple[str, float]] = []

    def _start(self, n_trials, in_flight):
        self._next = iter(self.lrs)

    def _ask(self):
        time.sleep(self.ask_s)
        lr = next(self._next, None)
        return None if lr is None else Proposal({"lr": lr})

    def _tell(self, proposal, evaluation):
        self.calls.append(("tell", proposal.params["lr"]))


def known_costs(costs: dict[float, tuple[float, float | None]]):
    """An objective with known training seconds and time-to-target (None: never) per LR."""
    def objective(params, report=None):
        train_s, ttt = costs[params["lr"]]
        return Evaluation(params, 0.5, train_s=train_s, record={"time_to_target_s": ttt})
    return objective


# lr: (train_s, time_to_target_s)
COSTS = {0.1: (3.0, None), 0.2: (1.0, None), 0.3: (2.0, 0.5), 0.4: (1.0, None), 0.5: (2.0, 1.5)}


def test_two_workers_follow_the_schedule_worked_out_by_hand():
    strategy = FixedLRs(list(COSTS))
    pool = simulate_run(strategy, known_costs(COSTS), 5, workers=2, charge_decisions=False)
    # t=0: 0.1 [0, 3] and 0.2 [0, 1]; 0.2 ends at 1: 0.3 [1, 3]; at 3 both end, the first submitted (0.1)
    # first: 0.4 [3, 4], then 0.3: 0.5 [3, 5]; 0.3 reaches the target at 1 + 0.5, 0.5 at 3 + 1.5
    assert [t.evaluation.params["lr"] for t in pool.trials] == list(COSTS)
    assert [t.start_s for t in pool.trials] == [0.0, 0.0, 1.0, 3.0, 3.0]
    assert [t.finish_s for t in pool.trials] == [3.0, 1.0, 3.0, 4.0, 5.0]
    assert [t.reached_at_s for t in pool.trials] == [None, None, 1.5, None, 4.5]
    assert [lr for _, lr in strategy.calls] == [0.2, 0.1, 0.3, 0.4, 0.5]  # told in the order they finish
    assert pool.clock_s == 5.0

    one = simulate_run(FixedLRs(list(COSTS)), known_costs(COSTS), 5, workers=1, charge_decisions=False)
    assert [t.start_s for t in one.trials] == [0.0, 3.0, 4.0, 6.0, 7.0]  # one at a time: back to back
    assert [t.reached_at_s for t in one.trials] == [None, None, 4.5, None, 8.5]


def test_run_and_summary_tables_read_the_schedule():
    rows = []
    for workers in (1, 2):
        pool = simulate_run(FixedLRs(list(COSTS)), known_costs(COSTS), 5, workers, charge_decisions=False)
        rows += [{"strategy": "fixed", "workers": workers, "seed": 0, "trial_index": i, "train_s": t.evaluation.train_s,
                  "overhead_s": 0.0, "start_s": t.start_s, "finish_s": t.finish_s,
                  "reached_at_s": np.nan if t.reached_at_s is None else t.reached_at_s, "ran_sequentially": False}
                 for i, t in enumerate(pool.trials)]
    runs = parallel_runs(pd.DataFrame(rows))
    assert runs["wall_to_target_s"].tolist() == [4.5, 1.5] and runs["makespan_s"].tolist() == [9.0, 5.0]
    summary = parallel_summary(runs).set_index("workers")
    assert summary.loc[2, "speedup"] == pytest.approx(4.5 / 1.5) and summary.loc[2, "makespan_speedup"] == pytest.approx(9 / 5)
    assert summary.loc[1, "speedup"] == 1.0

    # a seed that never reaches the target counts as infinitely slow: a median of inf has no speed-up
    never = runs.assign(wall_to_target_s=[4.5, np.nan], reached_target=[True, False])
    summary = parallel_summary(never).set_index("workers")
    assert summary.loc[2, "success_rate"] == 0.0 and np.isnan(summary.loc[2, "speedup"])


def test_decision_time_is_charged_to_the_clock():
    costs = {lr: (1.0, None) for lr in (0.1, 0.2, 0.3, 0.4)}
    charged = simulate_run(FixedLRs(list(costs), ask_s=0.05), known_costs(costs), 4, workers=1)
    for i, trial in enumerate(charged.trials):
        decided = trial.start_s - i * 1.0  # the clock beyond the training before it: i + 1 proposals of 0.05 s
        assert 0.05 * (i + 1) <= decided < 0.1 * (i + 1), (i, decided)
    # one driver decides for all workers: with trials shorter than a decision, each start still waits for
    # every proposal before it, and a finish the clock has already passed does not take it back
    short = {lr: (0.01, None) for lr in costs}
    two = simulate_run(FixedLRs(list(short), ask_s=0.05), known_costs(short), 4, workers=2)
    assert all(trial.start_s >= 0.05 * (i + 1) for i, trial in enumerate(two.trials)), [t.start_s for t in two.trials]
    free = simulate_run(FixedLRs(list(costs), ask_s=0.05), known_costs(costs), 4, workers=1, charge_decisions=False)
    assert [t.start_s for t in free.trials] == [0.0, 1.0, 2.0, 3.0]
    assert free.decision_s >= 0.2  # measured all the same


def test_a_strategy_that_cannot_run_in_parallel_runs_one_trial_at_a_time():
    pool = simulate_run(FixedLRs(list(COSTS), parallel=False), known_costs(COSTS), 5, workers=4,
                        charge_decisions=False)
    assert pool.width == 1
    assert [t.start_s for t in pool.trials] == [0.0, 3.0, 4.0, 6.0, 7.0]  # as K = 1 above


def test_optuna_tpe_with_four_workers_asks_four_before_the_first_tell_and_lies_about_them():
    table = ReplayTable.load(COMMITTED_TABLE)

    def run(cls):
        strategy = cls(parse_space(SPACE), seed=3, n_startup_trials=4)
        calls = []
        ask, tell = strategy._ask, strategy._tell
        strategy._ask = lambda: calls.append("ask") or ask()
        strategy._tell = lambda p, e: calls.append("tell") or tell(p, e)
        pool = simulate_run(strategy, ReplayObjective(table, TARGET, seed=3), 12, workers=4, charge_decisions=False)
        return calls, [t.evaluation.params["lr"] for t in pool.trials], [t.start_s for t in pool.trials]

    calls, lrs, starts = run(OptunaTPE)
    assert calls[:5] == ["ask"] * 4 + ["tell"] and starts[:4] == [0.0] * 4
    assert len(set(lrs)) == len(lrs) == 12
    assert run(OptunaTPE)[1:] == (lrs, starts)  # seeded: the same proposals on the same schedule

    class WithoutLiar(OptunaTPE):
        def sampler(self, in_flight=1):
            return super().sampler(in_flight=1)

    _, honest, _ = run(WithoutLiar)
    assert honest[:4] == lrs[:4]  # the random start-up is the same ...
    assert honest[4:] != lrs[4:]  # ... what it proposes with trials in flight is the liar's doing


@pytest.fixture(scope="module")
def replayed():
    """Three strategies on the committed table, at K = 1 and 4 and in the sequential replay."""
    experiment = Experiment(name="k-workers", task="cpu", strategies=["random", "optuna-tpe", "hyperopt-tpe"],
                            budgets=[8], seeds=list(range(6)), target_acc=TARGET, space=SPACE,
                            replay={"table": str(COMMITTED_TABLE), "simulated_workers": [1, 4]},
                            options={"optuna-tpe": {"n_startup_trials": 4}, "hyperopt-tpe": {"n_startup_trials": 4}})
    table = ReplayTable.load(COMMITTED_TABLE)
    simulated = replay_parallel(experiment, table, [1, 4], charge_decisions=False, progress=False, processes=2)
    sequential = replay_experiment(experiment, table, workers=2, progress=False)
    return simulated, sequential


def test_one_worker_reproduces_the_sequential_replay_trial_for_trial(replayed):
    simulated, sequential = replayed
    one = simulated[simulated["workers"] == 1]
    keys = ["strategy", "seed", "trial_index"]
    both = one.merge(sequential, on=keys, suffixes=("", "_sequential"), validate="one_to_one")
    assert len(both) == len(sequential) == 3 * 6 * 8
    for column in ("lr", "status", "value", "train_s"):
        assert (both[column] == both[f"{column}_sequential"]).all(), column
    assert np.array_equal(both["time_to_target_s"].astype(float), both["time_to_target_s_sequential"].astype(float),
                          equal_nan=True)
    # trial after trial on the clock: each starts when the one before it ended
    for _, g in both.groupby(["strategy", "seed"]):
        assert np.allclose(g["start_s"], np.cumsum(g["train_s"]) - g["train_s"])
    # and the wall-clock time-to-target is the replay's search time-to-target
    runs = parallel_runs(one).merge(budget_runs(sequential, [8]), on=["strategy", "seed"])
    assert np.allclose(runs["wall_to_target_s"], runs["search_time_to_target_s"], equal_nan=True)
    assert runs["reached_target_x"].equals(runs["reached_target_y"])


def test_hyperopt_gains_nothing_from_four_workers_and_is_flagged(replayed):
    simulated, _ = replayed
    runs = parallel_runs(simulated).set_index(["strategy", "workers", "seed"])
    hyperopt, random = runs.loc["hyperopt-tpe"], runs.loc["random"]
    assert hyperopt["ran_sequentially"].all() and not random["ran_sequentially"].any()
    assert np.allclose(hyperopt.loc[4, "makespan_s"], hyperopt.loc[1, "makespan_s"])
    assert np.allclose(hyperopt.loc[4, "wall_to_target_s"], hyperopt.loc[1, "wall_to_target_s"], equal_nan=True)
    # where the workers do help, 4 of them finish 8 equal-length-ish trials in about a quarter of the time
    assert (random.loc[4, "makespan_s"] < 0.5 * random.loc[1, "makespan_s"]).all()


@pytest.mark.parametrize("workers, problem", [([0], "got [0]: each is a number of workers >= 1"),
                                              ([2, 4], "include 1")])
def test_config_rejects_bad_simulated_workers_naming_the_field(workers, problem):
    with pytest.raises(ConfigError, match=r"field 'replay\.simulated_workers'") as err:
        Experiment(name="x", task="cpu", strategies=["random"], budgets=[4], seeds=[0], space=SPACE,
                   replay={"table": "t", "simulated_workers": workers})
    assert problem in str(err.value)



def test_config_refuses_a_simulated_budget_without_workers_and_a_suite_passes_both_on():
    from lrsearch.experiment.suite import Suite, replay_experiments

    with pytest.raises(ConfigError, match=r"field 'replay'.*simulated_budget.*give simulated_workers too"):
        Experiment(name="x", task="cpu", strategies=["random"], budgets=[4], seeds=[0], space=SPACE,
                   replay={"table": "t", "simulated_budget": 4})
    problem = {"task": "cpu", "replay_table": "t", "spaces": {"lr": SPACE}}
    with pytest.raises(ConfigError, match=r"field 'replay\.simulated_workers': got \[2\]: include 1"):
        Suite(name="s", strategies=["random"], budgets=[4], seeds=[0], problems=[problem],
              replay={"simulated_workers": [2]})
    suite = Suite(name="s", strategies=["random"], budgets=[4], seeds=[0], problems=[problem],
                  replay={"budgets": [2, 32], "simulated_workers": [1, 2], "simulated_budget": 8})
    (experiment,) = replay_experiments(suite)
    assert experiment.replay.simulated_workers == [1, 2] and experiment.replay.simulated_budget == 8
    from lrsearch.experiment.simulated import parallel_budget

    assert parallel_budget(experiment) == 8
    assert parallel_budget(experiment.model_copy(update={"replay": experiment.replay.model_copy(
        update={"simulated_budget": None})})) == 32  # default: the largest budget


def test_the_suite_table_scores_each_k_apart_with_algoperfs_formula(tmp_path):
    """Two problems, one seed each (a problem's median is that seed's time), times worked out by hand:
        K = 1: p1 a 10, b 20; p2 a 30, b 15  -> ratios a (1, 2), b (2, 1): B = (1 + 2/3) / 2 each;
        K = 2: p1 a 5, b 20; p2 a 12, b 15   -> a (1, 1): B = 1; b (4, 1.25): B = (0 + 2.75/3) / 2.
    Speed-ups of a: 2 and 2.5 (median 2.25); b (one trial at a time) 1 and 1."""
    from lrsearch.reporting.parallel import suite_parallel

    times = {"p1": {("a", 1): 10, ("b", 1): 20, ("a", 2): 5, ("b", 2): 20},
             "p2": {("a", 1): 30, ("b", 1): 15, ("a", 2): 12, ("b", 2): 15}}
    for problem, cells in times.items():
        runs = pd.DataFrame([{"strategy": s, "workers": k, "seed": 0, "n_trials": 4, "wall_to_target_s": float(t),
                              "reached_target": True, "makespan_s": 40.0, "train_s": 40.0, "decision_s": 0.0,
                              "ran_sequentially": s == "b"} for (s, k), t in cells.items()])
        (tmp_path / problem / "tables").mkdir(parents=True)
        runs.to_csv(tmp_path / problem / "tables" / "parallel_runs.csv", index=False)
        parallel_summary(runs).to_csv(tmp_path / problem / "tables" / "parallel_summary.csv", index=False)
    (tmp_path / "no-parallel" / "tables").mkdir(parents=True)  # a problem replayed without K workers: left out
    table = suite_parallel([tmp_path / "p1", tmp_path / "p2", tmp_path / "no-parallel"]).set_index(["strategy", "workers"])
    assert table.loc[("a", 1), "score_B_wall"] == pytest.approx((1 + 2 / 3) / 2)
    assert table.loc[("b", 1), "score_B_wall"] == pytest.approx((1 + 2 / 3) / 2)
    assert table.loc[("a", 2), "score_B_wall"] == pytest.approx(1.0)
    assert table.loc[("b", 2), "score_B_wall"] == pytest.approx(2.75 / 3 / 2)
    assert table.loc[("a", 2), ["speedup_median", "speedup_min", "speedup_max"]].tolist() == pytest.approx([2.25, 2, 2.5])
    assert table.loc[("b", 2), "speedup_median"] == pytest.approx(1.0)
    assert table.loc[("b", 2), "ran_sequentially"] and not table.loc[("a", 2), "ran_sequentially"]
    assert set(table["problems"]) == {2}
