"""The simulated clock against real parallel runs: Ray with K = 2 workers on this CPU.

    python benchmarks/parallel_check.py [--real results/parallel-check-cpu] [--sequential results/parallel-check-cpu-k1]
                                        [--table results/benchmark-cpu-table] [--seeds 100]

`--real` holds runs trained by `lrsearch run experiments/parallel-check-cpu.toml` (the Ray executor, 2 trials at
once); `--sequential` the same runs trained one trial at a time on the same machine (`--executor local`).
The simulated side runs the same experiment (strategies, space, budget) on the cpu task's table with K = 1 and 2
on the simulated clock, through the one runner (`lrsearch replay ... --workers 1 2`; no calibration, so a trial
costs its recorded seconds), into <out>/simulated-k<K>/.

Per run, on each side:
- makespan_s: from the run's start to its last trial's end (real: the store's run start and trial finish times;
  everything included: evaluations, model building, Ray's scheduling);
- wall_to_target_s: to the moment the first trial reached the target. Real: the trial's start (its finish minus
  its wall seconds) plus its training seconds to the target scaled by its wall / training seconds (the
  evaluations and set-up spread over the trial); simulated: start + training seconds to the target.
- trial_train_s: the training seconds of each trial (real: measured while another trial trained beside it).

A real run's makespan under Ray is not one run's own: the executor keeps 2 trials in flight across all the
experiment's runs, so a run also waits while other runs' trials hold the workers. The experiment's whole span
(first start to last end, `real_experiment_span_*`) is the real number to set against K = 1.

The real and simulated clocks differ on purpose: the replay's trials train as fast as the recorded ones (alone on
the machine, 2 torch threads), as on K separate GPUs; here two trials share the 2 cores. The table says how much
that costs, and whether the speed-up of K = 2 over K = 1 agrees once it is accounted for.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lrsearch.experiment.config import load_experiment
from lrsearch.experiment.provenance import as_markdown, environment
from lrsearch.experiment.runner import run_experiment
from lrsearch.reporting.parallel import simulated_trials
from lrsearch.reporting.tables import load_results


def real_runs(folder: Path, target: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per real run: makespan_s and wall_to_target_s; and its trials' train_s."""
    results = load_results(folder)
    trials = results.trials[results.trials["kind"] == "train"]
    rows = []
    for run in results.runs[results.runs["status"] == "complete"].itertuples():
        t = trials[trials["run_id"] == run.run_id]
        start = t["finished_at"] - t["wall_s"]
        reached = t["time_to_target_s"].notna() & (t["best_val_acc"] >= target)
        at = start + t["time_to_target_s"] * (t["wall_s"] / t["train_s"])
        rows.append({"strategy": run.strategy, "seed": run.seed, "trials": len(t),
                     "makespan_s": float(t["finished_at"].max() - run.started_at),
                     "wall_to_target_s": float(at[reached].min() - run.started_at) if reached.any() else np.inf})
    return pd.DataFrame(rows), trials[["strategy", "seed", "train_s", "wall_s"]]


def experiment_span(folder: Path) -> float:
    """Seconds from the first run's start to the last trial's end: the whole experiment's wall-clock."""
    results = load_results(folder)
    return float(results.trials["finished_at"].max() - results.runs["started_at"].min())


def simulated_runs(trials: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (strategy, workers, seed), t in trials.groupby(["strategy", "workers", "seed"]):
        reached = t["reached_at_s"].dropna()
        rows.append({"strategy": strategy, "workers": workers, "seed": seed, "makespan_s": float(t["finish_s"].max()),
                     "wall_to_target_s": float(reached.min()) if len(reached) else np.inf})
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=Path("results/parallel-check-cpu"))
    parser.add_argument("--sequential", type=Path, default=Path("results/parallel-check-cpu-k1"))
    parser.add_argument("--experiment", type=Path, default=Path("experiments/parallel-check-cpu.toml"))
    parser.add_argument("--table", type=Path, default=Path("results/benchmark-cpu-table"))
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None, help="default: <real>/check")
    args = parser.parse_args()
    env = environment([sys.executable, *sys.argv])
    out = args.out or args.real / "check"
    out.mkdir(parents=True, exist_ok=True)

    config = json.loads((args.real / "experiment.json").read_text())  # the real runs' experiment, as the runner wrote it
    target, strategies, budget = float(config["target_acc"]), sorted(config["strategies"]), max(config["budgets"])
    parallel, parallel_trials = real_runs(args.real, target)
    sequential, sequential_trials = real_runs(args.sequential, target)
    sequential = sequential[sequential["strategy"].isin(strategies)]

    from lrsearch.experiment.config import ExecutorSettings, Experiment

    real = load_experiment(args.experiment)
    folders = []
    for k in (1, 2):
        folder = out / f"simulated-k{k}"
        on_table = Experiment(**{**real.model_dump(), "name": f"{real.name}-simulated", "table": str(args.table),
                                 "strategies": strategies, "budgets": [budget], "seeds": list(range(args.seeds)),
                                 "results": str(folder), "reference": None,
                                 "executor": ExecutorSettings(kind="simulated", workers=k)})
        folders.append(run_experiment(on_table, progress=False))
    simulated = simulated_runs(pd.concat([simulated_trials(f) for f in folders], ignore_index=True))

    def med(frame: pd.DataFrame, column: str) -> float:
        return float(np.median(frame[column].to_numpy(dtype=float))) if len(frame) else np.nan

    rows = []
    for strategy in strategies:
        p, s = parallel[parallel["strategy"] == strategy], sequential[sequential["strategy"] == strategy]
        s1 = simulated[(simulated["strategy"] == strategy) & (simulated["workers"] == 1)]
        s2 = simulated[(simulated["strategy"] == strategy) & (simulated["workers"] == 2)]
        rows.append({
            "strategy": strategy, "budget": budget, "real_seeds_k1": len(s), "real_seeds_k2": len(p),
            "simulated_seeds": len(s2),
            "real_makespan_k1_s": med(s, "makespan_s"), "real_makespan_k2_s": med(p, "makespan_s"),
            "sim_makespan_k1_s": med(s1, "makespan_s"), "sim_makespan_k2_s": med(s2, "makespan_s"),
            "real_makespan_speedup": med(s, "makespan_s") / med(p, "makespan_s"),
            "sim_makespan_speedup": med(s1, "makespan_s") / med(s2, "makespan_s"),
            "real_wtt_k1_s": med(s, "wall_to_target_s"), "real_wtt_k2_s": med(p, "wall_to_target_s"),
            "sim_wtt_k1_s": med(s1, "wall_to_target_s"), "sim_wtt_k2_s": med(s2, "wall_to_target_s"),
            "real_wtt_speedup": med(s, "wall_to_target_s") / med(p, "wall_to_target_s"),
            "sim_wtt_speedup": med(s1, "wall_to_target_s") / med(s2, "wall_to_target_s"),
            "trial_train_s_k1": float(sequential_trials.loc[sequential_trials["strategy"] == strategy, "train_s"].median()),
            "trial_train_s_k2": float(parallel_trials.loc[parallel_trials["strategy"] == strategy, "train_s"].median()),
        })
    table = pd.DataFrame(rows)
    table["trial_slowdown_k2"] = table["trial_train_s_k2"] / table["trial_train_s_k1"]
    # the simulated speed-up once each trial is as much slower as it was here with two side by side
    table["sim_makespan_speedup_shared_cores"] = table["sim_makespan_speedup"] / table["trial_slowdown_k2"]
    spans = {name: experiment_span(folder) for name, folder in (("k1", args.sequential), ("k2", args.real))}
    table["real_experiment_span_k1_s"], table["real_experiment_span_k2_s"] = spans["k1"], spans["k2"]
    table["real_experiment_speedup"] = spans["k1"] / spans["k2"]
    table.to_csv(out / "parallel_check.csv", index=False)
    parallel.assign(source="real K=2").to_csv(out / "real_runs.csv", index=False)
    lines = ["# The simulated clock against real runs with 2 workers (Ray) on this CPU", "",
             __doc__.split("\n\n", 2)[2].strip(), "",
             f"Real K = 2: `{args.real}`; real K = 1: `{args.sequential}`; simulated: `{args.experiment}` on `{args.table}` at budget {budget}, "
             f"{args.seeds} seeds, K = 1 and 2 (decision time charged).", "",
             table.to_markdown(index=False, floatfmt=".3g"), "",
             "## Where these numbers come from", "", as_markdown(env)]
    (out / "REPORT.md").write_text("\n".join(lines))
    print(table.to_string(index=False))
    print(f"-> {out / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
