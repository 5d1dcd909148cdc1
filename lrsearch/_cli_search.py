"""`lrsearch strategies`."""

from __future__ import annotations

import argparse


def _strategies(args: argparse.Namespace) -> int:
    from lrsearch.strategies import REGISTRY, strategy_names

    for name in strategy_names():
        cls = REGISTRY[name]
        print(f"{name:<22} {cls.summary}" + ("  [prunes]" if cls.prunes else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("strategies", help="list the search strategies").set_defaults(func=_strategies)
