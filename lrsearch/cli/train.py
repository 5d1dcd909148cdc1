"""`lrsearch train` and `lrsearch tasks`."""

from __future__ import annotations

import argparse
import json

from lrsearch.cli.errors import UserError


def _train(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from lrsearch.training.tasks import get_task
    from lrsearch.training.trainer import train

    overrides = {k: v for k, v in (("epochs", args.epochs), ("steps", args.steps)) if v is not None}
    if args.steps is not None:
        overrides.setdefault("epochs", None)
    try:
        task = get_task(args.task, **overrides)
        params = {"lr": args.lr} if args.lr is not None else {}
        if args.schedule:
            params["schedule"] = json.loads(args.schedule)
    except (ValueError, json.JSONDecodeError) as err:
        raise UserError(f"--task/--schedule: {err}") from None
    result = train(task, params, seed=args.seed, device=args.device, data_source=args.data, progress=True)
    table = Table(title=f"{task.name}: {params or 'task defaults'}, seed {args.seed}, {result.device}")
    for col in ("step", "epoch", "lr", "train_loss", "val_acc", "test_acc", "train_s"):
        table.add_column(col, justify="right")
    for row in result.curve:
        table.add_row(str(row["step"]), f"{row['epoch']:.2f}", f"{row['lr']:.4g}", f"{row['train_loss']:.4f}",
                      *(f"{row[k]:.4f}" if row[k] is not None else "-" for k in ("val_acc", "test_acc")),
                      f"{row['train_s']:.2f}")
    console = Console()
    console.print(table)
    ttt = (f"{result.time_to_target_s:.2f} s ({result.steps_to_target} steps)" if result.time_to_target_s is not None
           else "not reached")
    console.print(f"status {result.status}; time to {task.target_acc:.1%}: {ttt}; train {result.train_s:.2f} s, "
                  f"wall {result.wall_s:.2f} s, warm-up {result.warmup_s:.2f} s")
    if result.error:
        console.print(f"[red]{result.error}")
    return 0 if result.status in ("ok", "pruned") else 1


def _tasks(args: argparse.Namespace) -> int:
    from lrsearch.training.tasks import TASKS

    for name, task in TASKS.items():
        print(f"{name:<10} {task.description}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one trial and print its curve and time to target")
    p.add_argument("--task", default="smoke", help="task name (see `lrsearch tasks`)")
    p.add_argument("--lr", type=float, help="learning rate filled into the task's schedule")
    p.add_argument("--schedule", help='a whole schedule as JSON, e.g. \'{"name": "cyclic", "base_lr": 0.001, '
                                      '"max_lr": 0.006, "step_size": 2000, "mode": "triangular2"}\'')
    p.add_argument("--seed", type=int, default=0, help="seeds the model's initialisation and the data order")
    p.add_argument("--epochs", type=float, help="training length in epochs (default: the task's)")
    p.add_argument("--steps", type=int, help="training length in optimizer steps, instead of --epochs")
    p.add_argument("--data", help="CIFAR-10 source (default: $LRSEARCH_DATA, else ./data/)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.set_defaults(func=_train)
    sub.add_parser("tasks", help="list the tasks").set_defaults(func=_tasks)
