"""Trainer speed: images per second and seconds per epoch of every model, on this machine.

    python benchmarks/trainer.py [--out results/trainer-<device>]

Measures what a trial sees: `train()` on the real data, `train_s` only (no evaluation,
no warm-up), over a fixed number of steps after the trainer's own warm-up. On a GPU, the
`gpu` task's fast net also runs with `compile=True`, two trials in one process: the first
compiles in its warm-up (`warmup_s`), the second shows whether the compiled code is reused;
a recompilation inside the timed loop fails the trial (torch.compiler's fail_on_recompile).
The fast net's accuracy over seeds is benchmarks/fast_net.py's.
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
CASES = [("cpu", 200 if ON_GPU else 60, False), ("clr-paper", 500 if ON_GPU else 60, False),
         ("gpu", 200 if ON_GPU else 3, False)]
if ON_GPU:  # torch.compile only runs on CUDA in the trainer
    CASES += [("gpu", 200, True), ("gpu", 200, True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results") / ("trainer-gpu" if ON_GPU else "trainer-cpu"))
    args = parser.parse_args()
    env = environment()  # before any output is written: the commit is the code's, not dirtied by results

    rows = []
    for task_name, steps, compiled in CASES:
        task = get_task(task_name)
        batch = task.batch_size if (ON_GPU or task.model != "fast") else 256
        timed = task.with_overrides(epochs=None, steps=steps, eval_every=steps, batch_size=batch, seconds=None,
                                    compile=compiled)
        r = train(timed, {}, seed=0)
        if r.status != "ok":
            print(f"{task_name} compile={compiled}: {r.status} {r.error}", file=sys.stderr)
            rows.append({"model": task.model, "task": task_name, "compile": compiled, "status": r.status,
                         "error": (r.error or "").splitlines()[0], "device": r.device})
            continue
        images = r.steps * batch
        per_epoch = 50_000 if task.val_size == 0 else 50_000 - task.val_size
        rows.append({"model": task.model, "task": task_name, "compile": compiled, "status": r.status,
                     "batch_size": batch, "precision": task.precision if ON_GPU else "fp32",
                     "steps": r.steps, "train_s": r.train_s, "images_per_s": images / r.train_s,
                     "s_per_epoch_full_data": per_epoch / (images / r.train_s), "warmup_s": r.warmup_s,
                     "device": r.device})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "trainer_speed.csv", index=False)
    (args.out / "metadata.json").write_text(json.dumps(env, indent=2))
    (args.out / "README.md").write_text(f"# Trainer speed\n\n{as_markdown(env)}\n```\n{table.to_string(index=False)}\n```\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
