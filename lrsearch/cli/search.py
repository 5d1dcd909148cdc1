"""`lrsearch strategies` and `lrsearch lr-find`."""

from __future__ import annotations

import argparse
from pathlib import Path

from lrsearch.cli.errors import UserError


def _strategies(args: argparse.Namespace) -> int:
    from lrsearch.search.strategies import REGISTRY, strategy_names

    for name in strategy_names():
        cls = REGISTRY[name]
        marks = ("  [prunes]" if cls.prunes else "") + ("  [parallel]" if cls.parallel else "")
        print(f"{name:<22} {cls.summary}{marks}")
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    from lrsearch.search.lr_finder import plot_range_test, range_test
    from lrsearch.training.tasks import get_task

    try:
        task = get_task(args.task)
        test = range_test(task, args.min_lr, args.max_lr, steps=args.steps, epochs=None if args.steps else args.epochs,
                          mode=args.mode, seed=args.seed, device=args.device, data_source=args.data)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(f"range test on {task.name}: {len(test.table)} steps, lr {args.min_lr:g} -> {args.max_lr:g} ({args.mode}), "
          f"{test.train_s:.1f} s training; stopped: {test.stop_reason}")
    base_lr = max_lr = None
    try:
        base_lr, max_lr = test.suggest_range(args.metric)
        print(f"suggested range ({args.metric}): base_lr {base_lr:.4g}  max_lr {max_lr:.4g}")
    except ValueError as err:
        print(f"no range on {args.metric}: {err}")
    for rule in ("valley", "steep", "minimum", "slide", "steepest_gradient"):
        try:
            print(f"  {rule:<18} {test.suggest_lr(rule):.4g}")
        except ValueError as err:
            print(f"  {rule:<18} - ({err})")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"lr_find_{task.name}_{args.mode}"
    test.table.to_csv(stem.with_suffix(".csv"), index=False)
    plot_range_test(test, stem.with_suffix(".png"), base_lr, max_lr, title=f"LR range test, {task.name}")
    print(f"wrote {stem}.csv and {stem}.png")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("strategies", help="list the search strategies").set_defaults(func=_strategies)
    p = sub.add_parser("lr-find", help="LR range test: print the suggested range, write the table and figure")
    p.add_argument("--task", default="smoke")
    p.add_argument("--metric", choices=("acc", "loss"), default="acc")
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--max-lr", type=float, default=1.0)
    p.add_argument("--steps", type=int, help="length in steps (default: --epochs)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--mode", choices=("linear", "exp"), default="exp")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("runs") / "lr-find")
    p.set_defaults(func=_lr_find)
