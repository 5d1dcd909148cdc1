"""Per-proposal overhead of the search libraries' strategies, on a cheap known function of the default lr space.

    python benchmarks/hpo_overhead.py [--strategies smac-bo hebo ...] [--trials 32] [--seeds 0 1 2]
                                      [--out results/hpo-overhead-cpu.csv]

Each strategy runs `--trials` trials per seed on DEFAULT_SPACE (lr in [1e-4, 1], log), with its default options,
on a bump in log10(lr) that costs microseconds: the seconds are the library's own. A trial reports three
evaluations through the report hook (rising values), so the multi-fidelity strategies prune as they would on a
task. `overhead_s` is what the strategy base class measures per trial: the time from the previous trial's end to
this one's start (the library's tell, then its ask; the first trial's also covers building the library's state).
Each strategy runs one trial first, untimed, so library imports are not counted. The table gives, per
strategy, the median and the max over all trials and seeds, the median past the random start-up (where the
strategy has one) and the seconds per run.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

from lrsearch.search.strategies import DEFAULT_SPACE, REGISTRY, Evaluation, get_strategy

STRATEGIES = ["random", "optuna-tpe", "smac-bo", "smac-hyperband", "hebo", "dehb", "nevergrad-ngopt", "nevergrad-de",
              "skopt-gp", "synetune-bore"]
LIBRARIES = ["optuna", "smac", "hebo", "dehb", "nevergrad", "scikit-optimize", "syne-tune", "torch", "numpy"]
EVALUATIONS = 3  # per trial, as the cpu preset evaluates (3 epochs, one evaluation each)


def accuracy(lr: float) -> float:
    """The known function: best (0.9) at lr = 0.05, a Gaussian bump in log10(lr)."""
    return 0.9 * math.exp(-math.log10(lr / 0.05) ** 2 / 0.5)


def objective(params: dict, report) -> Evaluation:
    for k in range(1, EVALUATIONS + 1):
        value = accuracy(params["lr"]) * (0.6 + 0.4 * k / EVALUATIONS)
        if report is not None and k < EVALUATIONS and report(k, value):
            return Evaluation(params, value, status="pruned", train_s=k)
    return Evaluation(params, value, train_s=EVALUATIONS)


def measure(name: str, trials: int, seeds: list[int]) -> list[dict]:
    get_strategy(name, DEFAULT_SPACE, seed=99).run(objective, 1)  # imports, outside the clock
    rows = []
    for seed in seeds:
        strategy = get_strategy(name, DEFAULT_SPACE, seed=seed)
        started = time.perf_counter()
        evaluations = strategy.run(objective, trials)
        run_s = time.perf_counter() - started
        rows += [{"strategy": name, "seed": seed, "trial": i, "overhead_s": e.overhead_s, "status": e.status,
                  "startup": strategy.startup_trials is not None and i < strategy.startup_trials, "run_s": run_s}
                 for i, e in enumerate(evaluations)]
    return rows


def summarise(trials: pd.DataFrame) -> pd.DataFrame:
    def one(group: pd.DataFrame) -> pd.Series:
        model = group[~group["startup"]]
        return pd.Series({"median_s": group["overhead_s"].median(), "max_s": group["overhead_s"].max(),
                          "median_after_startup_s": model["overhead_s"].median(),
                          "run_s": group.groupby("seed")["run_s"].first().median(),
                          "pruned": int((group["status"] == "pruned").sum()), "trials": len(group)})
    order = {name: i for i, name in enumerate(trials["strategy"].unique())}
    table = trials.groupby("strategy").apply(one, include_groups=False).reset_index()
    table[["pruned", "trials"]] = table[["pruned", "trials"]].astype(int)
    return table.sort_values("strategy", key=lambda s: s.map(order)).reset_index(drop=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("results") / "hpo-overhead-cpu.csv")
    args = parser.parse_args()
    missing = {name: REGISTRY[name].missing_packages() for name in args.strategies if REGISTRY[name].missing_packages()}
    if missing:
        parser.error("; ".join(f"{name} needs: {', '.join(needs)}" for name, needs in missing.items()))

    load_at_start, rows = os.getloadavg()[0], []
    for name in args.strategies:
        rows += measure(name, args.trials, args.seeds)
        print(f"{name}: done", flush=True)
    table = summarise(pd.DataFrame(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)

    versions = ", ".join(f"{lib} {metadata.version(lib)}" for lib in LIBRARIES if _installed(lib))
    print(f"\n{args.trials} trials x seeds {args.seeds} on {DEFAULT_SPACE}; {os.cpu_count()} CPUs, "
          f"load average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, Python {platform.python_version()}; {versions}\n")
    print(table.to_markdown(index=False, floatfmt=".3f"))
    print(f"\nwritten: {args.out}")
    return 0


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
        return True
    except metadata.PackageNotFoundError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
