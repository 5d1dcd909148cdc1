"""Wall-clock of one experiment under the local executor and under Ray with 1, 2 ... workers.

    python benchmarks/executors.py [--experiment experiments/benchmark-smoke.toml] [--workers 1 2]
                                   [--repeats 2] [--out results/executors-cpu]

Each configuration runs the whole experiment from an empty results folder, in this process,
through `run_experiment` (the report is not built): wall_s includes starting and stopping
Ray. Data are decoded into the cache once before timing. The table also sums the trials'
own training seconds, to tell scheduling overhead from slower trials.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from lrsearch.experiment.config import load_experiment
from lrsearch.experiment.executors import LocalExecutor
from lrsearch.experiment.provenance import as_markdown, environment
from lrsearch.experiment.runner import run_experiment
from lrsearch.training.data import resolve_source
from lrsearch.training.trainer import prepare_data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="experiments/benchmark-smoke.toml")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results") / ("executors-gpu" if torch.cuda.is_available()
                                                                       else "executors-cpu"))
    args = parser.parse_args()
    env = environment()  # before any output is written: the commit is the code's, not dirtied by results
    experiment = load_experiment(args.experiment)
    prepare_data(experiment.task_spec(), torch.device("cpu"), str(resolve_source(None)))

    configs = [("local", None)] + [(f"ray, {w} worker{'s' if w > 1 else ''}", w) for w in args.workers]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for name, workers in configs:
                if workers is None:
                    executor = LocalExecutor()
                else:
                    from lrsearch.experiment.executors.ray_executor import RayExecutor
                    executor = RayExecutor(workers=workers)
                out = Path(scratch) / f"{repeat}-{workers}"
                started = time.perf_counter()
                run_experiment(experiment, out, executor=executor, progress=False)
                wall_s = time.perf_counter() - started
                with sqlite3.connect(out / "results.sqlite") as conn:
                    n, train_s = conn.execute("SELECT COUNT(*), SUM(train_s) FROM trials").fetchone()
                rows.append({"executor": name, "workers": workers or 1, "repeat": repeat, "wall_s": wall_s,
                             "trials": n, "sum_train_s": train_s, "mean_train_s": train_s / n})
                print(f"{name:<18} repeat {repeat}: {wall_s:6.1f} s wall, {n} trials, {train_s:6.1f} s training")
    runs = pd.DataFrame(rows)
    table = (runs.groupby(["executor", "workers"], sort=False)
             .agg(wall_s=("wall_s", "median"), wall_s_min=("wall_s", "min"), wall_s_max=("wall_s", "max"),
                  trials=("trials", "first"), sum_train_s=("sum_train_s", "median"),
                  mean_train_s=("mean_train_s", "median")).reset_index())
    table["speedup_vs_local"] = table["wall_s"].iloc[0] / table["wall_s"]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))

    args.out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.out / "executor_runs.csv", index=False)
    table.to_csv(args.out / "executors.csv", index=False)
    (args.out / "metadata.json").write_text(json.dumps(env, indent=2))
    (args.out / "README.md").write_text(
        f"# Executors: `{experiment.name}` under the local executor and Ray\n\n{as_markdown(env)}\n"
        f"Median of {args.repeats} runs of the whole experiment each (wall_s: min and max beside it).\n\n"
        f"{table.to_markdown(index=False, floatfmt='.2f')}\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
