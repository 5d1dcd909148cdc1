"""`lrsearch tabulate` and `lrsearch replay`."""

from __future__ import annotations

import argparse

from lrsearch.cli.errors import UserError
from lrsearch.training.errors import InputError


def _points(given: list[str] | None) -> dict[str, int]:
    """`--points weight_decay=3 one_minus_momentum=3` as {name: count}."""
    points = {}
    for item in given or []:
        name, _, count = item.partition("=")
        if not name or not count.isdigit():
            raise UserError(f"--points {item}: expected NAME=COUNT, e.g. weight_decay=3")
        points[name] = int(count)
    return points


def _tabulate(args: argparse.Namespace) -> int:
    from lrsearch.experiment.config import load_experiment
    from lrsearch.experiment.replay import tabulation
    from lrsearch.experiment.runner import run_experiment
    from lrsearch.reporting.report import build_report

    try:
        table = tabulation(load_experiment(args.experiment), args.lrs, args.seeds, args.results,
                           _points(args.points))
        out = run_experiment(table, device=args.device, data_source=args.data)
    except InputError as err:  # a bug (any other error) is let through: traceback, exit 1
        raise UserError(str(err)) from None
    build_report(out)
    print(f"table in {out}/results.sqlite ({table.budgets[0]} points x {len(table.seeds)} seeds); search on it with "
          f"a config whose `table = \"{out}\"` (README: \"Search on the tables\"), or replay it with [replay] table")
    from lrsearch.reporting.noise import check_table

    print(check_table(out)[1])  # is the workload out of the noise? (reporting/noise.py)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from lrsearch.experiment.replay_study import run_replay
    from lrsearch.experiment.suite import Suite, load_config, replay_experiments
    from lrsearch.reporting.budgets import write_replay

    try:
        experiment = load_config(args.experiment)
        if isinstance(experiment, Suite):
            from lrsearch.reporting.suite import build_replay_suite_report

            replays = replay_experiments(experiment, args.results)
            for replay in replays:
                write_replay(replay, run_replay(replay, args.workers), replay.results)
            report = build_replay_suite_report(experiment, replays)
            print(f"replays in {report.parent}/ (one folder per problem); report: {report}")
            return 0
        out = write_replay(experiment, run_replay(experiment, args.workers), args.results)
    except InputError as err:  # a bug (any other error) is let through: traceback, exit 1
        raise UserError(str(err)) from None
    print(f"results in {out}/ (tables/, figures/); report: {out / 'REPORT.md'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("tabulate", help="record a dense table of real trials (a grid over the space x seeds)")
    t.add_argument("experiment", help="experiment config whose task and lr space to tabulate")
    t.add_argument("--lrs", type=int, default=48, help="log-spaced learning rates (default 48)")
    t.add_argument("--seeds", nargs="+", type=int, help="training seeds (default 0 1 2)")
    t.add_argument("--points", nargs="+", metavar="NAME=K",
                   help="grid points on each other axis of a space of several dimensions, e.g. weight_decay=3 "
                        "one_minus_momentum=3 (lr gets --lrs unless named)")
    t.add_argument("--results", help="results folder (default: the experiment's folder + '-table')")
    t.add_argument("--data", help="CIFAR-10 source (default: $LRSEARCH_DATA, else ./data/)")
    t.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:1 ...")
    t.set_defaults(func=_tabulate)
    r = sub.add_parser("replay", help="run every strategy against recorded curves (a [replay] table): budgets at scale")
    r.add_argument("experiment", help="experiment config with a [replay] section, e.g. experiments/budgets-replay.toml")
    r.add_argument("--results", help="results folder (default: the config's `results`, else runs/<name>)")
    r.add_argument("--workers", type=int, help="processes (default: the config's, else one per CPU core)")
    r.set_defaults(func=_replay)
