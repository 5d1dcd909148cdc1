"""The `lrsearch` command (also `python -m lrsearch`): the parser and the one place errors are printed.

Each subcommand is a small function in a module of this package (one module per group of
subcommands, each with a `register(subparsers)`); errors meant for users (bad data, bad
config) print one line without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from lrsearch.cli.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrsearch", description="Measure the cheapest way to find a good learning rate: "
                                     "search strategies and the LR range test, trained on CIFAR-10.")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _registrars():
        register(sub)
    return parser


def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Each command module's `register(subparsers)`."""
    from lrsearch.cli import data, replay, run, search, train
    return [data.register, train.register, search.register, run.register, replay.register]


def main(argv: list[str] | None = None) -> int:
    from lrsearch.experiment.store import StoreError
    from lrsearch.training.data import DataError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, StoreError, UserError) as err:
        print(f"lrsearch: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lrsearch: interrupted", file=sys.stderr)
        return 130
