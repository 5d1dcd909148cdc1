"""`lrsearch calibrate`: the cost clock's seconds per training step (experiment/calibration.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lrsearch.cli.errors import UserError

# the CPU suite's workloads (experiments/suite-cpu.toml) and the smoke and cpu tasks
DEFAULT_TASKS = ["smoke", "cpu", "resnet-adamw", "caffe-cpu", "nobn", "finetune"]


def _calibrate(args: argparse.Namespace) -> int:
    from lrsearch.experiment.calibration import calibrate
    from lrsearch.experiment.decisions import measure_decisions
    from lrsearch.training.errors import InputError
    from lrsearch.training.tasks import TASKS, get_task

    if args.decisions:
        try:
            options = None
            if args.options_from:
                from lrsearch.experiment.config import load_experiment

                options = load_experiment(args.options_from).options
            measure_decisions(args.decisions, args.out, strategies=args.strategies, seeds=args.decision_seeds,
                              budget=args.decision_budget, options=options)
        except InputError as err:
            raise UserError(str(err)) from None
        print(f"decision seconds per strategy and trial index: {args.out}/decisions.csv, {args.out}/DECISIONS.md. "
              "Measure on a machine doing nothing else.")
        return 0
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        raise UserError(f"--tasks {', '.join(unknown)}: not a built-in task ({', '.join(TASKS)})")
    try:
        table = calibrate([get_task(t) for t in args.tasks], args.out, args.steps, args.repeats, args.threads,
                          args.data, device=args.device)
    except InputError as err:
        raise UserError(str(err)) from None
    print(f"{len(table)} (workload, optimizer) pairs calibrated: {args.out}/calibration.csv, {args.out}/README.md. "
          "Measure on a machine doing nothing else.")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("calibrate", help="measure each workload's seconds per training step for the cost clock")
    c.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, metavar="TASK", help="built-in tasks (default: "
                   + ", ".join(DEFAULT_TASKS) + ")")
    c.add_argument("--out", type=Path, default=Path("results/calibration"), help="where to write (default: %(default)s)")
    c.add_argument("--steps", type=int, default=20, help="training steps per timed block (default: %(default)s)")
    c.add_argument("--repeats", type=int, default=5, help="timed blocks, at least 5; the median is kept (default: "
                   "%(default)s)")
    c.add_argument("--threads", type=int, default=1, help="torch threads, as the tables' lanes train (default: "
                   "%(default)s)")
    c.add_argument("--device", default="cpu", help="cpu, or cuda (cuda:1 ...) for a GPU's clock, e.g. `--tasks gpu "
                   "--device cuda --out results/calibration-gpu` (default: %(default)s)")
    c.add_argument("--data", help="the CIFAR-10 source (default: $LRSEARCH_DATA, or ./data)")
    c.add_argument("--decisions", metavar="TABLE", help="instead: each searcher's decision seconds, run on this table "
                   "(e.g. results/tables/nobn) -> decisions.csv")
    c.add_argument("--strategies", nargs="+", metavar="STRATEGY", help="with --decisions: these (default: the "
                   "suite's searchers); the others already in decisions.csv keep their rows")
    c.add_argument("--options-from", metavar="CONFIG", help="with --decisions: the strategies' options of this "
                   "experiment config (default: the suite's start-up of 4 trials)")
    c.add_argument("--decision-seeds", type=int, default=10, help="with --decisions: runs per strategy (default: "
                   "%(default)s)")
    c.add_argument("--decision-budget", type=int, default=32, help="with --decisions: trials per run (default: "
                   "%(default)s)")
    c.set_defaults(func=_calibrate)
