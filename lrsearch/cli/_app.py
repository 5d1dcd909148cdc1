"""The `lrsearch` command (also `python -m lrsearch`): the parser and the one place errors are printed.

Each subcommand is a small function in a module of this package (one module per group of
subcommands, each with a `register(subparsers)`); errors meant for users (bad data, bad
config) print one line without a traceback and exit with status 2. Parsing imports neither
torch nor the search libraries, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from lrsearch.cli.errors import UserError

DESCRIPTION = """\
Measure the cheapest way to find a good learning rate: grid, random, Optuna, Hyperopt,
Optunity and NNI searches and Smith's LR range test, trained on CIFAR-10, every trial's
curve and clock in a resumable store, then tables, figures and a report."""

EXAMPLES = """\
examples:
  lrsearch run experiments/benchmark-smoke.toml        # train an experiment (resumes), then its report
  lrsearch validate experiments/benchmark-cpu.toml     # check a config and its data without training
  lrsearch strategies --options                        # every strategy and the options it takes
  lrsearch train --task cpu --lr 0.05                  # one trial, its curve and time to target
  lrsearch lr-find --task cpu --metric loss            # an LR range test and its suggestions
  lrsearch report runs/benchmark-cpu                   # rebuild tables, figures and REPORT.md
  lrsearch clr-paper --quick                           # the CLR paper's CIFAR-10 experiment, scaled down

data: --data PATH, else $LRSEARCH_DATA, else ./data/ (the official cifar-10-python.tar.gz or its
folder, or an ImageFolder tree). Exit status: 0 done, 1 trials failed (run), 2 bad input, 130 Ctrl-C."""


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and each option's default where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _installed_version() -> str:
    """The installed distribution's version (the top-level package is above this layer)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("lrsearch")
    except PackageNotFoundError:
        return "(not installed: run `make install`)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrsearch", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"lrsearch {_installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars():
        register(sub)
    for command in _commands(sub):
        command.formatter_class = _Help
        if command._subparsers is None:  # a command that does something: how much it says
            group = command.add_mutually_exclusive_group()
            group.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
            group.add_argument("-v", "--verbose", action="store_true",
                               help="every line, the search libraries' own too (e.g. Optuna's per-trial lines)")
    return parser


def _commands(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    """Every subcommand's parser, nested ones (`data check`) included."""
    found = []
    for command in sub.choices.values():
        found.append(command)
        if command._subparsers is not None:
            for action in command._subparsers._group_actions:
                found += _commands(action)
    return found


def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Each command module's `register(subparsers)`."""
    from lrsearch.cli import calibrate, data, export, replay, run, search, train
    return [data.register, train.register, search.register, run.register, replay.register, calibrate.register,
            export.register]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lrsearch.experiment.store import StoreError
    from lrsearch.training.data import DataError
    from lrsearch.training.errors import InputError
    from lrsearch.training.progress import configure_logging

    configure_logging(quiet=getattr(args, "quiet", False), verbose=getattr(args, "verbose", False))
    try:
        return args.func(args)
    except (DataError, StoreError, UserError, InputError) as err:  # what the user gave: one line, exit 2
        print(f"lrsearch: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lrsearch: interrupted", file=sys.stderr)
        return 130
