"""How long a pass of the fast searchers over the suite's tables takes: the speed the tables are for.

    python benchmarks/table_pass.py [--suite experiments/suite-cpu-tables.toml] [--processes 2] [--seeds 100]
                                    [--budget 16] [--workers 1] [--out results/table-pass-cpu]

The pass is `lrsearch run SUITE --only grid random optuna-tpe hyperopt-tpe nni-tpe` (100 seeds, budget 16, every
problem of the suite, trials read from the tables on a simulated clock), in `--processes` processes of one thread
each that share every problem's store, as two workers share a real run. Timed from the first process's start to
the last one's end, the reports included, into an empty folder. Printed and written to <out>/speed.csv and
<out>/README.md with the machine, date, commit and versions. Run it on a machine doing nothing else.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from lrsearch.experiment.provenance import as_markdown, environment
from lrsearch.experiment.suite import load_config

FAST = ["grid", "random", "optuna-tpe", "hyperopt-tpe", "nni-tpe"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="experiments/suite-cpu-tables.toml")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=100, help="seeds 0 .. n-1")
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="K workers on the simulated clock")
    parser.add_argument("--out", type=Path, default=Path("results/table-pass-cpu"))
    args = parser.parse_args()
    env = environment(sys.argv)  # before anything is written: the commit is the code's
    suite = load_config(args.suite)
    problems = [e.name for e in suite.experiments()]
    lrsearch = str(Path(sys.executable).with_name("lrsearch"))
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "pass.toml"
        text = Path(args.suite).read_text()
        config.write_text(text.replace(f"budgets = {suite.budgets}".replace("'", ""), f"budgets = [{args.budget}]")
                          .replace(f"seeds = {len(suite.seeds)}", f"seeds = {args.seeds}"))
        check = load_config(config)
        if check.budgets != [args.budget] or len(check.seeds) != args.seeds:
            raise SystemExit(f"{args.suite}: could not set budgets and seeds (expected `budgets = [..]` and `seeds = n`)")
        out = Path(scratch) / "out"
        command = [lrsearch, "run", str(config), "--results", str(out), "--only", *FAST, "--workers", str(args.workers),
                   "--quiet"]
        child_env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        started = time.perf_counter()
        procs = [subprocess.Popen(command, env=child_env) for _ in range(args.processes)]
        codes = [p.wait() for p in procs]
        wall_s = time.perf_counter() - started
        if any(codes):
            raise SystemExit(f"a pass process exited with {codes}")
        trials = complete = 0
        for db in out.glob("*/results.sqlite"):
            with sqlite3.connect(db) as conn:
                trials += conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
                complete += conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'complete'").fetchone()[0]
    # every (problem, strategy, seed) run complete; a run's trials are its budget, except grid's in a space of
    # several dimensions: a product grid of at most the budget (2 x 2 x 3 = 12 points in 3-D at budget 16)
    expected = len(problems) * len(FAST) * args.seeds
    row = {"problems": len(problems), "strategies": len(FAST), "seeds": args.seeds, "budget": args.budget,
           "simulated_workers": args.workers, "processes": args.processes, "runs_complete": complete,
           "runs_expected": expected, "trials": trials, "wall_s": round(wall_s, 1),
           "trials_per_s": round(trials / wall_s, 1)}
    table = pd.DataFrame([row])
    print(table.to_string(index=False))
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "speed.csv", index=False)
    (args.out / "README.md").write_text(
        "# A pass of the fast searchers over the suite's tables\n\n"
        f"`{' '.join(sys.argv)}`: {', '.join(FAST)} at budget {args.budget} over {args.seeds} seeds on every problem "
        f"of `{args.suite}` ({', '.join(problems)}), trials read from the tables on a simulated clock with "
        f"{args.workers} worker(s), in {args.processes} processes of one torch thread sharing each problem's store; "
        "timed from the first process's start to the last one's end, reports included (benchmarks/table_pass.py). "
        "A run's trials are its budget, except grid's in a space of several dimensions: a product grid of at most "
        "the budget (12 points in 3-D at budget 16).\n\n"
        + table.to_markdown(index=False) + "\n\n" + as_markdown(env) + "\n")
    print(f"written to {args.out}/speed.csv and README.md")
    return 0 if complete == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
