"""Steps per second of the CLR paper's Caffe net on this CPU, under the options a long CPU run can choose.

    python benchmarks/clr_cpu_speed.py [--out results/clr-paper-cpu/speed] [--steps 150] [--repeats 3] [--tiny]

Each case runs in a fresh process (so its thread count is its own) and times training steps only
(forward, backward, SGD with momentum, the schedule, the loader), as the trainer runs them, on the
`clr-paper` task's data (batch 100). The first `--warmup` steps are left out of the clock (and hold a
compilation, where there is one). Cases: 1 or 2 torch threads, with and without `channels_last`,
eager or `torch.compile` (inductor's C++ backend), and two 1-thread processes side by side, whose
steps per second are added up ("aggregate"): what two policies trained at once get together.
Each figure is the median of `--repeats` timed blocks; their min and max are beside it.
Run it on a machine doing nothing else: the table says which processor and when.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd


def measure(threads: int, channels_last: bool, compiled: bool, steps: int, warmup: int, repeats: int,
            tiny: bool) -> dict:
    """One case in this process: steps per second of each of `repeats` timed blocks of `steps` steps."""
    import torch

    from lrsearch.training.loop import batches as _batches
    from lrsearch.training.tasks import get_task
    from lrsearch.training.trainer import trial_parts

    torch.set_num_threads(threads)
    subsets = {"train_subset": 2000, "test_subset": 500} if tiny else {}
    total = warmup + steps * repeats
    task = get_task("clr-paper", steps=total, eval_every=total, channels_last=channels_last, **subsets)
    setup, _ = trial_parts(task, {}, seed=0, device="cpu")
    if compiled:
        setup.forward = torch.compile(setup.model)
    batches = _batches(setup.loader, total)
    for _ in range(warmup):
        setup.step(*next(batches))
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            setup.step(*next(batches))
        rates.append(steps / (time.perf_counter() - started))
    return {"steps_per_s": statistics.median(rates), "min_steps_per_s": min(rates), "max_steps_per_s": max(rates)}


CASES = [  # (threads, channels_last, compile)
    (1, False, False), (1, True, False), (1, False, True), (1, True, True),
    (2, False, False), (2, True, False), (2, False, True), (2, True, True),
]


def _case_command(args: argparse.Namespace, threads: int, channels_last: bool, compiled: bool) -> list[str]:
    return [sys.executable, __file__, "--case", json.dumps([threads, channels_last, compiled]),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", str(args.repeats)] + (
        ["--tiny"] if args.tiny else [])


def _run_cases(commands: list[list[str]]) -> list[dict]:
    """The commands side by side (OMP_NUM_THREADS is set by the case itself); each prints one JSON line."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in commands]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"case {p.args[3]} failed (exit {p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/clr-paper-cpu/speed"))
    parser.add_argument("--steps", type=int, default=150, help="steps per timed block")
    parser.add_argument("--warmup", type=int, default=20, help="steps before the clock starts")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per case")
    parser.add_argument("--tiny", action="store_true", help="2,000 training images (checks the script)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # a child process: one case
        threads, channels_last, compiled = json.loads(args.case)
        print(json.dumps(measure(threads, channels_last, compiled, args.steps, args.warmup, args.repeats, args.tiny)))
        return 0

    from lrsearch.experiment.provenance import as_markdown, environment

    env = environment()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for threads, channels_last, compiled in CASES:
        (result,) = _run_cases([_case_command(args, threads, channels_last, compiled)])
        rows.append({"processes": 1, "threads": threads, "channels_last": channels_last, "compile": compiled} | result)
        print(rows[-1], flush=True)
    best_one_thread = max((r for r in rows if r["threads"] == 1), key=lambda r: r["steps_per_s"])
    pair = _run_cases([_case_command(args, 1, best_one_thread["channels_last"], best_one_thread["compile"])] * 2)
    rows.append({"processes": 2, "threads": 1, "channels_last": best_one_thread["channels_last"],
                 "compile": best_one_thread["compile"],
                 "steps_per_s": sum(r["steps_per_s"] for r in pair),
                 "min_steps_per_s": sum(r["min_steps_per_s"] for r in pair),
                 "max_steps_per_s": sum(r["max_steps_per_s"] for r in pair)})
    print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table["aggregate"] = table["processes"] > 1
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "speed.csv", index=False)
    (args.out / "environment.json").write_text(json.dumps(env, indent=2))
    fastest = table.sort_values("steps_per_s").iloc[-1]
    how = (f"{int(fastest['processes'])} process(es) of {int(fastest['threads'])} thread(s), channels_last "
           f"{'on' if fastest['channels_last'] else 'off'}, {'torch.compile' if fastest['compile'] else 'eager'}")
    (args.out / "README.md").write_text(
        "# The Caffe net's training speed on this CPU\n\n"
        f"`python benchmarks/clr_cpu_speed.py{' --tiny' if args.tiny else ''} --steps {args.steps} "
        f"--repeats {args.repeats}`, started {started}. Training steps only (batch 100, SGD with momentum), the "
        f"first {args.warmup} steps of each case left out; the median of {args.repeats} blocks of {args.steps} steps, "
        "min and max beside it. The last row is two 1-thread processes side by side, their rates added.\n\n"
        + as_markdown(env) + f"\n{table.to_markdown(index=False, floatfmt='.3g')}\n\nFastest: {how}.\n")
    print(f"fastest: {how}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
