"""`lrsearch tabulate` and `lrsearch replay` (a search on a table: `lrsearch run --executor simulated`)."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    from lrsearch.experiment.runner import run_experiment
    from lrsearch.experiment.tabulation import tabulation
    from lrsearch.reporting.report import build_report

    try:
        table = tabulation(load_experiment(args.experiment), args.lrs, args.seeds, args.results,
                           _points(args.points))
        out = run_experiment(table, device=args.device, data_source=args.data)
    except InputError as err:  # a bug (any other error) is let through: traceback, exit 1
        raise UserError(str(err)) from None
    build_report(out)
    print(f"table in {out}/results.sqlite ({table.budgets[0]} points x {len(table.seeds)} seeds); search on it with "
          f"a config whose `table = \"{out}\"` and `lrsearch replay CONFIG` (docs/replay.md)")
    from lrsearch.reporting.noise import check_table

    print(check_table(out)[1])  # is the workload out of the noise? (reporting/noise.py)
    return 0


def _replay(args: argparse.Namespace) -> int:
    """`lrsearch replay CONFIG [--workers K ...]`: `lrsearch run CONFIG --executor simulated --workers K`, the one
    runner on the config's table(s); with several K, each into <results>/k<K>/ and their speed-ups compared in
    <results>/REPORT.md (reporting/parallel.py)."""
    from lrsearch.cli import run as run_command
    from lrsearch.experiment.suite import Suite, load_config
    from lrsearch.reporting.parallel import write_parallel_report

    try:
        config = load_config(args.experiment)
    except InputError as err:
        raise UserError(str(err)) from None
    workers = args.workers or [config.executor.workers or 1]
    if len(set(workers)) != len(workers) or min(workers) < 1:
        raise UserError(f"--workers {' '.join(map(str, workers))}: distinct counts of workers, each >= 1")
    if len(workers) > 1 and (isinstance(config, Suite) or 1 not in workers):
        raise UserError("--workers with several K: an experiment (not a suite), with 1 among them (the speed-ups "
                        "are measured against one worker); run a suite once per K with --results")
    root = Path(args.results or config.results_dir())
    folders = []
    for k in workers:
        out = root if len(workers) == 1 else root / f"k{k}"
        argv = ["run", args.experiment, "--executor", "simulated", "--workers", str(k), "--results", str(out),
                *(["--only", *args.only] if args.only else [])]
        parser = argparse.ArgumentParser(prog="lrsearch")  # `lrsearch run`'s own arguments, as its command parses them
        run_command.register(parser.add_subparsers())
        run_args = parser.parse_args(argv)
        code = run_args.func(run_args)
        if code:
            return code
        folders.append(out)
    if len(folders) > 1:
        print(f"K = {', '.join(map(str, workers))} compared: {write_parallel_report(folders, root)}")
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
    r = sub.add_parser("replay", help="search on a table with K workers on a simulated clock (= lrsearch run "
                                      "--executor simulated): budgets and seeds at scale, no training")
    r.add_argument("experiment", help="experiment or suite config with `table` (or problems' `tables`), e.g. "
                                      "experiments/budgets-replay.toml")
    r.add_argument("--results", help="results folder (default: the config's `results`, else runs/<name>)")
    r.add_argument("--workers", type=int, nargs="+", metavar="K",
                   help="trials at once on the simulated clock (default: the config's [executor] workers, else 1); "
                        "several K (1 among them) compare the speed-ups, each K into <results>/k<K>/")
    r.add_argument("--only", nargs="+", metavar="STRATEGY", help="run only these of the config's strategies")
    r.set_defaults(func=_replay)
