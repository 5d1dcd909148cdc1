"""Speed of the CLR reproduction's Caffe net: one model alone against a policy's seeds stacked.

    python benchmarks/clr_speed.py [--out results/clr-speed-<device>] [--tiny]

Times `train_s` (no evaluation, no warm-up) of the `clr-paper` task over a fixed number of steps:
one model with `train()`, then K seeds as one stacked model with `train_seeds()`, and reports model
iterations per second for each. It writes `choice.txt`, the `--stack-seeds` or `--no-stack-seeds`
flag that gave more model iterations per second, which benchmarks/clr_gpu.sh passes to
`lrsearch clr-paper`. Processes side by side are not timed here (see shared/device/README.md:
three or four kept 270 to 300 iterations/s each on an H200).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

from lrsearch.experiment.provenance import as_markdown, environment
from lrsearch.training.ensemble import train_seeds
from lrsearch.training.tasks import get_task
from lrsearch.training.trainer import train

ON_GPU = torch.cuda.is_available()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results") / ("clr-speed-gpu" if ON_GPU else "clr-speed-cpu"))
    parser.add_argument("--steps", type=int, default=600 if ON_GPU else 40)
    parser.add_argument("--seeds", type=int, default=3, help="K, the models stacked")
    parser.add_argument("--tiny", action="store_true", help="1,000 training images, 500 test images (checks the script)")
    args = parser.parse_args()
    env = environment()
    subsets = {"train_subset": 1000, "test_subset": 500} if args.tiny else {}
    task = get_task("clr-paper", steps=args.steps, eval_every=args.steps, **subsets)
    schedule = {"schedule": {"name": "cyclic", "base_lr": 0.001, "max_lr": 0.006, "step_size": 2000, "mode": "triangular"}}
    rows = []
    alone = train(task, schedule, seed=0)
    rows.append({"how": "one model (train)", "models": 1, "status": alone.status, "steps": alone.steps,
                 "train_s": alone.train_s, "device": alone.device})
    stacked = train_seeds(task, schedule, list(range(args.seeds)))
    rows.append({"how": f"{args.seeds} seeds stacked (train_seeds)", "models": args.seeds, "status": stacked[0].status,
                 "steps": stacked[0].steps, "train_s": stacked[0].train_s, "device": stacked[0].device})
    table = pd.DataFrame(rows)
    table["steps_per_s"] = table["steps"] / table["train_s"]
    table["model_iterations_per_s"] = table["steps_per_s"] * table["models"]
    print(table.to_string(index=False))
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "speed.csv", index=False)
    (args.out / "environment.json").write_text(json.dumps(env, indent=2))
    ok = table["status"] == "ok"
    best = table[ok].sort_values("model_iterations_per_s").iloc[-1] if ok.any() else None
    choice = "--stack-seeds" if best is not None and best["models"] > 1 else "--no-stack-seeds"
    (args.out / "choice.txt").write_text(choice + "\n")
    (args.out / "README.md").write_text(
        "# CLR reproduction speed: one model against stacked seeds\n\n" + as_markdown(env)
        + f"\n{table.to_markdown(index=False, floatfmt='.4g')}\n\nChosen for the reproduction: `{choice}`.\n")
    print(f"chosen: {choice}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
