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
        missing = cls.missing_packages()
        print(f"{name:<22} {cls.summary}{marks}" + (f"  [needs: {', '.join(missing)}]" if missing else ""))
        if args.options:
            for option in cls.declared_options().values():
                kind = option.type.__name__ + (f" in {'|'.join(map(str, option.choices))}" if option.choices else "")
                default = "computed" if option.default is None else repr(option.default)
                print(f"    {option.name} ({kind}, default {default}): {option.meaning}")
    if args.options:
        print("\nSet them per strategy in an experiment file, e.g.\n  [options.optuna-tpe]\n  n_startup_trials = 4")
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
    s = sub.add_parser("strategies", help="list the search strategies (--options: and the options each takes)")
    s.add_argument("--options", action="store_true", help="also list each strategy's options: type, default, meaning")
    s.set_defaults(func=_strategies)
    p = sub.add_parser("lr-find", help="LR range test: print the suggested range, write the table and figure")
    p.add_argument("--task", default="smoke", help="task name (see `lrsearch tasks`)")
    p.add_argument("--metric", choices=("acc", "loss"), default="acc",
                   help="Smith's range rule on validation accuracy or on the training loss")
    p.add_argument("--min-lr", type=float, default=1e-4, help="the first LR")
    p.add_argument("--max-lr", type=float, default=1.0, help="the last LR")
    p.add_argument("--steps", type=int, help="length in steps (default: --epochs)")
    p.add_argument("--epochs", type=float, default=1.0, help="length in epochs")
    p.add_argument("--mode", choices=("linear", "exp"), default="exp", help="how the LR rises from --min-lr to --max-lr")
    p.add_argument("--seed", type=int, default=0, help="seeds the model's initialisation and the data order")
    p.add_argument("--data", help="CIFAR-10 source (default: $LRSEARCH_DATA, else ./data/)")
    p.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:1 ...")
    p.add_argument("--out", type=Path, default=Path("runs") / "lr-find", help="folder for the table and the figure")
    p.set_defaults(func=_lr_find)
