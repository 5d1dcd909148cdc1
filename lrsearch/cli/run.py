"""`lrsearch run` and `lrsearch report`."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from lrsearch.cli.errors import UserError
from lrsearch.training.errors import InputError


def _run(args: argparse.Namespace) -> int:
    from lrsearch.experiment.config import ConfigError
    from lrsearch.experiment.runner import run_experiment
    from lrsearch.experiment.suite import Suite, load_config
    from lrsearch.reporting.report import build_report
    from lrsearch.training.data import ensure_source
    from lrsearch.training.workloads import is_user_workload

    try:
        experiment = load_config(args.experiment)
    except ConfigError as err:
        raise UserError(str(err)) from None
    experiment = _executor_settings(experiment, args)
    if isinstance(experiment, Suite):
        return _run_suite(experiment, args)
    if args.target is not None:  # the command line wins over the file's `target` or `target_acc`
        experiment = experiment.model_copy(update={"target": args.target, "target_acc": None})
    try:
        if not is_user_workload(experiment.task) and experiment.table is None:  # a table needs no data
            ensure_source(args.data)  # a missing source: its message (or, on a fresh machine, the download) before Ray
        executor = _executor(experiment, args)
        out = run_experiment(experiment, args.results, only=args.only, seeds=args.seeds, device=args.device,
                             data_source=args.data, executor=executor, reset=args.reset)
    except (InputError, ImportError) as err:  # a bug (any other error) is let through: traceback, exit 1
        raise UserError(str(err)) from None
    except KeyboardInterrupt:
        print("interrupted: every finished trial is in the store; the same command again resumes",
              file=sys.stderr)
        return 130
    report = build_report(out)
    print(f"results in {out}/ (results.sqlite, tables/, figures/, run.log); report: {report}")
    failed, total = _failed_trials(out, experiment, args.only, args.seeds)
    if failed and not args.allow_failures:
        print(f"lrsearch: {failed} of {total} trials failed (errors in {out / 'run.log'} and the trials table); "
              "rerun with --allow-failures to exit 0 anyway", file=sys.stderr)
        return 1
    return 0


def _run_suite(suite, args: argparse.Namespace) -> int:
    """`lrsearch run SUITE`: every problem in turn (each resumes, each shareable between workers), then each
    problem's report and the suite's."""
    from lrsearch.experiment.suite import run_suite
    from lrsearch.reporting.suite import build_suite_report
    from lrsearch.training.data import ensure_source
    from lrsearch.training.workloads import is_user_workload

    if args.target is not None:
        raise UserError("--target: a suite's problems each have their own target; set it in the suite file")
    experiments = suite.experiments(args.results)
    unknown = sorted(set(args.only or []) - {s for e in experiments for s in e.strategies})
    if unknown:
        raise UserError(f"--only {', '.join(unknown)}: not among the suite's strategies ({', '.join(suite.strategies)})")
    root = suite.results_dir(args.results)
    try:
        if any(not is_user_workload(e.task) and e.table is None for e in experiments):
            ensure_source(args.data)
        folders = run_suite(suite, args.results, only=args.only, make_executor=lambda e: _executor(e, args),
                            seeds=args.seeds, device=args.device, data_source=args.data, reset=args.reset)
    except (InputError, ImportError) as err:  # a bug (any other error) is let through: traceback, exit 1
        raise UserError(str(err)) from None
    except KeyboardInterrupt:
        print("interrupted: every finished trial is in the store; the same command again resumes", file=sys.stderr)
        return 130
    counts = [_failed_trials(out, e, args.only, args.seeds) for out, e in folders]
    failed, total = sum(c[0] for c in counts), sum(c[1] for c in counts)
    report = build_suite_report(suite, root)
    print(f"results in {root}/ (one folder per problem); report: {report}")
    if failed and not args.allow_failures:
        print(f"lrsearch: {failed} of {total} trials failed (errors in each problem's run.log); rerun with "
              "--allow-failures to exit 0 anyway", file=sys.stderr)
        return 1
    return 0


def _failed_trials(out: Path, experiment, only, seeds) -> tuple[int, int]:
    """Failed trials (errors, not divergence) and all trials, over the runs this call was asked for."""
    from lrsearch.experiment.runner import plan
    from lrsearch.reporting.tables import load_results

    wanted = {(s.strategy, s.budget, s.seed) for s in plan(experiment, only, seeds)}
    trials = load_results(out).trials
    trials = trials[trials["experiment"] == experiment.name]
    mine = trials[[(r.strategy, r.budget, r.seed) in wanted for r in trials.itertuples()]]
    return int((mine["status"] == "failed").sum()), len(mine)


def _validate(args: argparse.Namespace) -> int:
    """Check a config (an experiment, or a suite's every problem), its data source and its strategies'
    libraries; train nothing."""
    from lrsearch.experiment.config import ConfigError
    from lrsearch.experiment.suite import Suite, load_config

    try:
        config = load_config(args.experiment)
    except ConfigError as err:
        raise UserError(str(err)) from None
    if not isinstance(config, Suite):
        return _validate_one(config, args, args.experiment, args.results)
    codes = [_validate_one(e, args, f"{args.experiment} [{e.name}]", e.results) for e in config.experiments(args.results)]
    return max(codes)


def _validate_one(experiment, args: argparse.Namespace, label: str, results: str | None) -> int:
    from lrsearch.experiment.runner import plan
    from lrsearch.experiment.store import Store
    from lrsearch.search.strategies import REGISTRY
    from lrsearch.training.data import DataError, resolve_source

    problems = []
    missing = {name: REGISTRY[name].missing_packages() for name in experiment.strategies}
    problems += [f"strategy {name} needs {', '.join(m)} (pip install {' '.join(m)})" for name, m in missing.items() if m]
    from lrsearch.training.workloads import TaskWorkload

    workload = experiment.workload(args.data)
    if experiment.table is None and isinstance(workload, TaskWorkload):  # a built-in task: CIFAR-10 data
        try:
            print(f"data: {resolve_source(args.data)}")
        except DataError as err:
            if args.data or os.environ.get("LRSEARCH_DATA"):  # a named source that is not there
                problems.append(str(err))
            else:
                print("data: none found; `lrsearch run` downloads the official CIFAR-10 archive into ./data/ "
                      "(170 MB, md5-checked)")
    elif experiment.table is not None:
        print(f"table: {experiment.table} (no training, no data)")
    specs = plan(experiment) if not any(missing.values()) else []
    out = experiment.results_dir(results)
    done = 0
    if specs and (out / "results.sqlite").exists():
        store = Store(out / "results.sqlite", create=False)
        try:
            done = sum(store.run_status(experiment.name, s.strategy, s.budget, s.seed) == "complete" for s in specs)
        finally:
            store.close()
    what = (f"task {workload.task.name} ({workload.task.model})" if isinstance(workload, TaskWorkload) else
            f"workload {experiment.task} ({type(workload).__name__}: {workload.metric}, {workload.direction}d, "
            f"target {workload.target})")
    print(f"{label}: config valid; {what}, {len(experiment.strategies)} strategies x "
          f"budgets {experiment.budgets} x {len(experiment.seeds)} seeds = {len(specs)} runs, "
          f"{sum(s.budget for s in specs)} trials at most; results in {out}/ ({done} runs already complete)")
    for problem in problems:
        print(f"lrsearch: error: {problem}", file=sys.stderr)
    return 2 if problems else 0


def _target(text: str) -> float:
    """A target in the metric's own units: an accuracy as a fraction (0.93), a loss (0.15), any finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: give the target as a number in the metric's units, e.g. 0.93 "
                                         "for an accuracy or 0.15 for a loss")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of trials, 1 or more")
    return int(text)


def _executor_settings(config, args: argparse.Namespace):
    """The config's (an experiment's or a suite's) [executor], with the command line's flags over it: the config
    then records what ran (a simulated run's K is part of its definition)."""
    from lrsearch.experiment.config import ExecutorSettings

    settings = config.executor.model_dump()
    flags = {"kind": args.executor, "address": args.address, "workers": args.workers, "num_gpus": args.gpus_per_trial,
             "num_cpus": args.cpus_per_trial}
    settings.update({k: v for k, v in flags.items() if v is not None})
    if settings["kind"] == "local" and any(settings[k] is not None for k in ("address", "workers", "num_gpus", "num_cpus")):
        raise UserError("--address, --workers, --gpus-per-trial and --cpus-per-trial are for the Ray executor (and "
                        "--workers for the simulated one): add --executor ray")
    try:
        return config.model_copy(update={"executor": ExecutorSettings(**settings)})
    except ValueError as err:
        raise UserError(f"--executor: {err}") from None


def _executor(experiment, args: argparse.Namespace):
    """The executor the experiment's [executor] asks for (the command line's flags already applied)."""
    from lrsearch.experiment.executors import make_executor

    executor = make_executor(**experiment.executor.model_dump())
    if experiment.executor.kind != "local":
        print(f"executor: {executor.describe()}", flush=True)
    return executor


def _report(args: argparse.Namespace) -> int:
    from lrsearch.reporting.report import build_report

    if (args.results / "suite.json").exists() and not (args.results / "results.sqlite").exists():
        from lrsearch.experiment.suite import stored_suite
        from lrsearch.reporting.scores import DEFAULT_ANCHOR
        from lrsearch.reporting.suite import build_suite_report

        suite = stored_suite(args.results)
        try:
            print(build_suite_report(suite, args.results, anchor=args.anchor or DEFAULT_ANCHOR,
                                     calibration=args.calibration))
        except InputError as err:  # an anchor that is not among the suite's strategies
            raise UserError(str(err)) from None
        return 0
    if not (args.results / "results.sqlite").exists():
        raise UserError(f"{args.results}: no results.sqlite here; give the folder an `lrsearch run` wrote")
    if args.anchor is not None:
        raise UserError(f"--anchor {args.anchor}: the regret anchor is for a suite's cross-problem scores; "
                        f"{args.results} is one experiment's folder (give the suite's folder, holding suite.json)")
    print(build_report(args.results, calibration=args.calibration))
    return 0


def _nni_experiment(args: argparse.Namespace) -> int:
    from lrsearch.experiment.config import load_experiment
    from lrsearch.experiment.nni_experiment import run_nni_experiment
    from lrsearch.reporting.report import build_report

    try:
        experiment = load_experiment(args.experiment)
        summary = run_nni_experiment(experiment, args.tuner, args.trials, args.seed, args.port, args.results)
    except InputError as err:
        raise UserError(str(err)) from None
    print(f"NNI experiment: {summary}")
    if "results" in summary:
        print(f"report: {build_report(summary['results'])}")
    return 0 if summary.get("nni_status", "DONE") == "DONE" else 1


def _clr_paper(args: argparse.Namespace) -> int:
    from lrsearch.experiment.config import ConfigError
    from lrsearch.paper.clr import load_clr_paper, run_clr_paper

    try:
        config = load_clr_paper(args.config)
    except ConfigError as err:
        raise UserError(str(err)) from None
    try:
        out = run_clr_paper(config, quick=args.quick, results=args.results, device=args.device, data_source=args.data,
                            only=args.only, stage=args.stage, workers=args.workers, stack_seeds=args.stack_seeds,
                            time_limit_s=args.time_limit, report_only=args.report_only, reset=args.reset,
                            checkpoint_every=args.checkpoint_every, channels_last=args.channels_last, seeds=args.seeds)
    except InputError as err:  # a bad config or --only, a changed policy (DefinitionChanged)
        raise UserError(str(err)) from None
    print(f"results in {out}/; report: {out / 'REPORT.md'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run an experiment (resumes: only runs not yet complete), then write its report")
    p.add_argument("experiment", help="experiment config, e.g. experiments/benchmark-cpu.toml")
    p.add_argument("--results", help="results folder (default: the config's `results`, else runs/<name>)")
    p.add_argument("--only", nargs="+", metavar="STRATEGY", help="run only these strategies")
    p.add_argument("--seeds", nargs="+", type=int, help="run only these seeds")
    p.add_argument("--reset", action="store_true", help="drop stored runs trained under another definition "
                   "(task, data, space, options) and train them again, instead of stopping")
    p.add_argument("--target", type=_target, help="target value of the metric, overriding the config's `target` "
                   "or `target_acc` (an accuracy as a fraction, e.g. 0.93; a loss, e.g. 0.15); stored runs are read off "
                   "their curves for it, not retrained")
    p.add_argument("--data", help="CIFAR-10 source (default: $LRSEARCH_DATA, else ./data/)")
    p.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:1 ...")
    p.add_argument("--executor", choices=["local", "ray", "simulated"], help="where trials run (default: the config's "
                   "[executor], else local: here, one at a time); ray: as Ray tasks, several at once; simulated: a "
                   "table's trials on a simulated clock (the config names its `table`)")
    p.add_argument("--address", help="Ray: an existing cluster, 'auto' or HOST:PORT (default: a private Ray on 127.0.0.1)")
    p.add_argument("--workers", type=_positive_int, help="Ray: trials at once (default: GPUs, else CPU cores); "
                   "simulated: trials in flight on the simulated clock (default 1)")
    p.add_argument("--gpus-per-trial", type=float, help="Ray: GPUs per trial; 0.5 packs two trials on a GPU "
                   "(default: 1 where there are GPUs)")
    p.add_argument("--cpus-per-trial", type=float, help="Ray: CPUs per trial (default: CPUs / workers)")
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even when trials failed (an error in a "
                   "trial, not a diverged LR); by default such a run exits 1 and says how many")
    p.set_defaults(func=_run)
    v = sub.add_parser("validate", help="check an experiment config, its data source and its strategies' "
                       "libraries, without training")
    v.add_argument("experiment", help="experiment config, e.g. experiments/benchmark-cpu.toml")
    v.add_argument("--data", help="CIFAR-10 source (default: $LRSEARCH_DATA, else ./data/)")
    v.add_argument("--results", help="results folder whose finished runs to count (default: the config's)")
    v.set_defaults(func=_validate)
    n = sub.add_parser("nni-experiment", help="run trials through a real NNI experiment (manager + web UI on 127.0.0.1)")
    n.add_argument("experiment", help="experiment config, e.g. experiments/benchmark-smoke.toml")
    n.add_argument("--tuner", default="tpe", help="NNI built-in tuner: tpe, evolution, anneal, random")
    n.add_argument("--trials", type=int, help="number of trials (default: the config's first budget)")
    n.add_argument("--seed", type=int, help="the tuner's seed (default: the config's first)")
    n.add_argument("--port", type=int, default=8080, help="web UI / REST port on 127.0.0.1")
    n.add_argument("--results", help="results folder (default: the config's)")
    n.set_defaults(func=_nni_experiment)
    c = sub.add_parser("clr-paper", help="reproduce the CLR paper's CIFAR-10 Figure 1, Table 1 and Figure 3")
    c.add_argument("config", nargs="?", default="experiments/clr_paper.toml", help="the reproduction's config")
    c.add_argument("--quick", action="store_true", help="scaled down for a CPU (see the config's [quick])")
    c.add_argument("--stage", choices=["main", "extra", "all"], default="main",
                   help="main: Tables 1-2, Fig. 1 and 3 (default); extra: Table 3 and the sigmoid + BN net; all: both")
    c.add_argument("--only", nargs="+", metavar="POLICY", help="run only these policies ('range-test' for Fig. 3)")
    c.add_argument("--workers", type=_positive_int, help="policies trained side by side in processes "
                   "(default: 8 on a GPU, 1 on a CPU)")
    c.add_argument("--stack-seeds", action=argparse.BooleanOptionalAction, default=None,
                   help="train a policy's seeds as one stacked model in one process (default: on a GPU only)")
    c.add_argument("--time-limit", type=float, metavar="SECONDS", help="stop after this many seconds: finished runs "
                   "are kept and the report written; the same command goes on from there (default: none)")
    c.add_argument("--seeds", nargs="+", type=int, help="train only these seeds (default: the config's `seeds`)")
    c.add_argument("--checkpoint-every", metavar="N|Ns", help="write each unfinished run's checkpoint to "
                   "<results>/checkpoints/ every N steps (1000) or seconds (300s, 5m); a killed run goes on from it "
                   "when the same command runs again, here or on a clone elsewhere (default: 5m; not with stacked seeds)")
    c.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="the nets in channels_last memory layout (about 1.6x faster on a CPU, see "
                   "benchmarks/clr_cpu_speed.py; default: the task's, off)")
    c.add_argument("--report-only", action="store_true", help="rebuild the report from the store, training nothing")
    c.add_argument("--reset", action="store_true", help="drop stored runs whose policy (schedule, iterations, task, "
                   "data) changed since, and train them again, instead of stopping")
    c.add_argument("--results", help="results folder (default: the config's `results`, with -quick for --quick)")
    c.add_argument("--data", help="CIFAR-10 source (default: $LRSEARCH_DATA, else ./data/)")
    c.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu or cuda")
    c.set_defaults(func=_clr_paper)
    r = sub.add_parser("report", help="rebuild tables, figures and REPORT.md from a results folder's store")
    r.add_argument("results", type=Path, help="a results folder (holding results.sqlite)")
    r.add_argument("--calibration", type=Path, metavar="DIR", help="times on the cost clock: steps x the seconds per "
                   "step that `lrsearch calibrate` measured into DIR (default: the experiment's `calibration`, else "
                   "wall-clock seconds)")
    r.add_argument("--anchor", metavar="STRATEGY", help="a suite's scores: the strategy whose median trial is the "
                   "normalised regret's 1 (default: random, i.e. random search at budget 1)")
    r.set_defaults(func=_report)
