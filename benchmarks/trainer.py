"""Trainer speed: images per second and seconds per epoch of every model, on this machine.

    python benchmarks/trainer.py [--out results/trainer-<device>] [--time-to-target]

Measures what a trial sees: `train()` on the real data, `train_s` only (no evaluation,
no warm-up), over a fixed number of steps after the trainer's own warm-up. With
--time-to-target (meant for a GPU) it also trains the `gpu` task's fast net to its target
(93% test accuracy) and reports the seconds it took.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from lrsearch.experiment.provenance import as_markdown, environment
from lrsearch.training.tasks import get_task
from lrsearch.training.trainer import train

ON_GPU = torch.cuda.is_available()
# (task whose model/batch/precision to use, steps to time): short on a CPU, where the fast net is slow
CASES = [("cpu", 200 if ON_GPU else 60), ("clr-paper", 500 if ON_GPU else 60), ("gpu", 200 if ON_GPU else 3)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results") / ("trainer-gpu" if ON_GPU else "trainer-cpu"))
    parser.add_argument("--time-to-target", action="store_true", help="also train the gpu task to its target")
    parser.add_argument("--seeds", type=int, default=1, help="seeds for --time-to-target")
    args = parser.parse_args()
    env = environment()  # before any output is written: the commit is the code's, not dirtied by results

    rows = []
    for task_name, steps in CASES:
        task = get_task(task_name)
        batch = task.batch_size if (ON_GPU or task.model != "fast") else 256
        timed = task.with_overrides(epochs=None, steps=steps, eval_every=steps, batch_size=batch, seconds=None)
        r = train(timed, {}, seed=0)
        if r.status != "ok":
            print(f"{task_name}: {r.status} {r.error}", file=sys.stderr)
            continue
        images = r.steps * batch
        per_epoch = 50_000 if task.val_size == 0 else 50_000 - task.val_size
        rows.append({"model": task.model, "task": task_name, "batch_size": batch, "precision": task.precision if ON_GPU else "fp32",
                     "steps": r.steps, "train_s": r.train_s, "images_per_s": images / r.train_s,
                     "s_per_epoch_full_data": per_epoch / (images / r.train_s), "warmup_s": r.warmup_s,
                     "device": r.device})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    tta = pd.DataFrame()
    if args.time_to_target:
        task = get_task("gpu")
        runs = [train(task, {}, seed=s) for s in range(args.seeds)]
        tta = pd.DataFrame([{"seed": r.seed, "status": r.status, "final_test_acc": r.final_test_acc,
                             "train_s": r.train_s, "target_acc": task.target_acc,
                             "test_acc_reached_target": (r.final_test_acc or 0) >= task.target_acc,
                             "val_time_to_target_s": r.time_to_target_s, "device": r.device} for r in runs])
        print(tta.to_string(index=False))

    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "trainer_speed.csv", index=False)
    if not tta.empty:
        tta.to_csv(args.out / "fast_net_time_to_target.csv", index=False)
    (args.out / "metadata.json").write_text(json.dumps(env, indent=2))
    (args.out / "README.md").write_text(f"# Trainer speed\n\n{as_markdown(env)}\n```\n{table.to_string(index=False)}\n```\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
