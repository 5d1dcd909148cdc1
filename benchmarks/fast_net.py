"""The `gpu` task's fast net over seeds: its accuracy, the target set from data, and a reference.

    python benchmarks/fast_net.py [--seeds 5] [--lrs 0.75 3.0] [--reference PATH/airbench94.py] [--out DIR]

1. The task as it is (45,000 training images, 5,000 for validation) at its default LR over
   `--seeds` seeds, and at each of `--lrs` too; the same at the default LR on all 50,000 training
   images (airbench's setting, no validation split), to measure what the held-out split costs.
2. The target, from data: for each LR, the validation accuracy that at least 90% of seeds reach;
   the best LR's value, rounded down to 0.5 points, is the target (`target.txt`).
3. With --reference, airbench94's own script (not part of lrsearch: give its path) on the same
   JPEG images, run in a scratch folder on `cifar10/{train,test}.pt` written from our arrays.

Accuracies: `final_test_acc` and `best_val_acc` of the trial; the last evaluation of a trial
uses test-time augmentation (the task's `tta_level`). `train_s` counts training steps only;
`eval_s` the evaluations. Writes fast_net.csv (one row per trial), summary.csv, target.csv,
reference.csv, README.md and metadata.json under --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lrsearch.experiment.provenance import as_markdown, environment
from lrsearch.training.data import load_cifar10
from lrsearch.training.tasks import get_task
from lrsearch.training.trainer import train

ON_GPU = torch.cuda.is_available()
# --tiny: the script itself on a CPU in about a minute (a check of this code, not a result)
TINY = {"train_subset": 2000, "val_size": 500, "test_subset": 1000, "epochs": 1, "batch_size": 250, "eval_every": 4}


def reached_by(values: np.ndarray, share: float = 0.9) -> float:
    """The highest accuracy that at least `share` of the values reach: the ceil(share * n)-th largest."""
    ordered = np.sort(values)[::-1]
    return float(ordered[math.ceil(share * len(ordered)) - 1])


def target_from(trials: pd.DataFrame, share: float = 0.9) -> tuple[float, pd.DataFrame]:
    """Per LR of the task's own variant, the validation accuracy that `share` of seeds reach; the target is
    the best LR's, rounded down to 0.5 points."""
    own = trials[(trials["variant"] == "task") & (trials["status"] == "ok")]
    table = (own.groupby("lr")["best_val_acc"].agg(lambda v: reached_by(v.to_numpy(), share)).rename("val_acc_reached_by_90pct")
             .reset_index())
    table["n_seeds"] = own.groupby("lr").size().to_numpy()
    best = table["val_acc_reached_by_90pct"].max()
    return math.floor(best * 200) / 200, table


def run_reference(script: Path, runs: int, source: str | None) -> pd.DataFrame:
    """airbench94's script on our images, in a scratch folder: cifar10/train.pt (training images in a fixed
    random order: the JPEG copy is sorted by class, the official download is not) and cifar10/test.pt."""
    data = load_cifar10(source)
    order = np.random.default_rng(0).permutation(len(data.train_labels))
    with tempfile.TemporaryDirectory() as scratch:
        os.makedirs(f"{scratch}/cifar10")
        for name, images, labels in (("train", data.train_images[order], data.train_labels[order]),
                                     ("test", data.test_images, data.test_labels)):
            torch.save({"images": torch.from_numpy(images), "labels": torch.from_numpy(labels.astype(np.int64)),
                        "classes": list(data.classes)}, f"{scratch}/cifar10/{name}.pt")
        out = subprocess.run([sys.executable, str(script.resolve()), str(runs)], cwd=scratch, capture_output=True,
                             text=True, timeout=240)
    print(out.stdout[-3000:], out.stderr[-3000:], sep="\n")
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT,")), None)
    if out.returncode or line is None:
        raise RuntimeError(f"reference {script} failed (exit {out.returncode})")
    pairs = [item.split(":") for item in line.split(",")[1:]]
    return pd.DataFrame({"run": range(len(pairs)), "tta_test_acc": [float(a) for a, _ in pairs],
                         "total_time_s": [float(t) for _, t in pairs]})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lrs", type=float, nargs="*", default=[0.75, 3.0], help="LRs besides the task's default")
    parser.add_argument("--reference", type=Path, help="airbench94.py, run as a reference (5 runs)")
    parser.add_argument("--data", help="CIFAR-10 source (default: $LRSEARCH_DATA, else ./data/)")
    parser.add_argument("--out", type=Path, default=Path("results") / ("fast-net-gpu" if ON_GPU else "fast-net-cpu"))
    parser.add_argument("--tiny", action="store_true", help="tiny settings: checks this script on a CPU")
    args = parser.parse_args()
    env = environment()  # before any output is written: the commit is the code's, not dirtied by results
    args.out.mkdir(parents=True, exist_ok=True)

    task = get_task("gpu", **(TINY if args.tiny else {}))
    plan = [("task", task, lr) for lr in [task.lr, *args.lrs]] + [("all-50k", task.with_overrides(val_size=0), task.lr)]
    rows = []
    for variant, variant_task, lr in plan:
        for seed in range(args.seeds):
            r = train(variant_task, {"lr": lr}, seed=seed, data_source=args.data)
            rows.append({"variant": variant, "train_images": (variant_task.train_subset or 50_000) - variant_task.val_size,
                         "lr": lr, "seed": seed,
                         "status": r.status, "final_test_acc": r.final_test_acc,
                         "best_val_acc": r.best_val_acc if variant_task.val_size else None, "train_s": r.train_s,
                         "eval_s": r.eval_s, "warmup_s": r.warmup_s, "steps": r.steps, "device": r.device,
                         "error": r.error})
            print(f"{variant:8s} lr {lr:<6g} seed {seed}: {r.status} test {r.final_test_acc} "
                  f"val {r.best_val_acc} train_s {r.train_s:.2f} eval_s {r.eval_s:.2f}", flush=True)
    trials = pd.DataFrame(rows)
    trials.to_csv(args.out / "fast_net.csv", index=False)
    summary = (trials[trials["status"] == "ok"].groupby(["variant", "train_images", "lr"])
               .agg(n_seeds=("seed", "size"), mean_test_acc=("final_test_acc", "mean"),
                    std_test_acc=("final_test_acc", "std"), min_test_acc=("final_test_acc", "min"),
                    mean_best_val_acc=("best_val_acc", "mean"), mean_train_s=("train_s", "mean"),
                    mean_eval_s=("eval_s", "mean")).reset_index())
    summary.to_csv(args.out / "summary.csv", index=False)
    target, target_table = target_from(trials)
    target_table.to_csv(args.out / "target.csv", index=False)
    (args.out / "target.txt").write_text(f"{target:.3f}\n")

    reference, reference_error = pd.DataFrame(), None
    if args.reference:
        try:
            reference = run_reference(args.reference, args.seeds, args.data)
            reference.to_csv(args.out / "reference.csv", index=False)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            reference_error = str(err)

    (args.out / "metadata.json").write_text(json.dumps(env | {"task": task.name, "tiny": args.tiny}, indent=2))
    lines = ["# The `gpu` task's fast net over seeds", "", as_markdown(env), "",
             "Each row: one trial of `lrsearch.train(get_task('gpu'), {'lr': lr}, seed)`; `task` is the task as "
             "the benchmark runs it (45,000 training images, 5,000 held out for validation), `all-50k` trains on "
             "all 50,000 as airbench does. Test accuracy uses test-time augmentation at the last evaluation. "
             "The data are the JPEG copy of CIFAR-10.", "",
             "## Summary", "", summary.to_markdown(index=False, floatfmt=".4g"), "",
             f"## Target: {target:.1%}", "",
             "Per LR, the validation accuracy that at least 90% of seeds reach; the best, rounded down to 0.5 "
             "points, is the task's target.", "", target_table.to_markdown(index=False, floatfmt=".4g"), ""]
    if len(reference):
        lines += [f"## Reference: airbench94's own script (`{args.reference.name}`) on the same JPEG images", "",
                  f"{len(reference)} runs: mean TTA test accuracy {reference['tta_test_acc'].mean():.4f} "
                  f"(std {reference['tta_test_acc'].std():.4f}), mean time {reference['total_time_s'].mean():.2f} s "
                  "(its own clock: training, whitening setup and the final TTA evaluation).", "",
                  reference.to_markdown(index=False, floatfmt=".4g"), ""]
    if reference_error:
        lines += ["## Reference", "", f"airbench94's script did not complete: {reference_error}", ""]
    (args.out / "README.md").write_text("\n".join(lines))
    print(summary.to_string(index=False))
    print(f"target {target:.3f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
