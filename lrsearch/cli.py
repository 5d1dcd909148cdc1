"""Command-line entry point: `lrsearch ...` or `python -m lrsearch ...`.

Each subcommand is a small function; errors meant for users (bad data, bad config)
print one line without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from lrsearch.data import DataError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


class UserError(Exception):
    """An error in what the user asked for; printed as one line."""


def _data_check(args: argparse.Namespace) -> int:
    import numpy as np

    from lrsearch.data import _cache_path, load_cifar10, resolve_source

    data = load_cifar10(args.source)
    print(f"source: {data.source} ({data.layout} layout)")
    print(f"cache:  {_cache_path(resolve_source(args.source).resolve(), None)}")
    print(f"image shape: {data.train_images.shape[1:]} {data.train_images.dtype}")
    print(f"{'class':<12}{'train':>8}{'test':>8}")
    for i, name in enumerate(data.classes):
        print(f"{name:<12}{int(np.sum(data.train_labels == i)):>8}{int(np.sum(data.test_labels == i)):>8}")
    print(f"{'total':<12}{len(data.train_labels):>8}{len(data.test_labels):>8}")
    print(f"{len(data.train_labels)} train and {len(data.test_labels)} test images in {len(data.classes)} classes")
    return 0


def _data_download(args: argparse.Namespace) -> int:
    from lrsearch.data import download

    path = download(args.dest)
    print(f"{path}: md5 verified")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrsearch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect or fetch CIFAR-10").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="print counts per split and class, image shape and cache location")
    check.add_argument("source", nargs="?", help="archive or folder (default: $LRSEARCH_DATA, else ./data/)")
    check.set_defaults(func=_data_check)
    dl = data.add_parser("download", help="fetch the official cifar-10-python.tar.gz and check its md5")
    dl.add_argument("--dest", default="data", help="folder to put it in (default: ./data)")
    dl.set_defaults(func=_data_download)

    for register in _registrars():
        register(sub)
    return parser


def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Each command module's `register(subparsers)`; imported lazily to keep `--help` fast."""
    from lrsearch import _cli_replay, _cli_run, _cli_search, _cli_train
    return [_cli_train.register, _cli_search.register, _cli_run.register, _cli_replay.register]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, UserError) as err:
        print(f"lrsearch: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lrsearch: interrupted", file=sys.stderr)
        return 130
