"""The cost clock: seconds per training step, measured once per workload and optimizer on a quiet machine.

A trial's wall-clock seconds depend on the day: the same trial took 4.6 s and 9.5 s on one shared machine. Its
training steps do not. So, as HPOBench and YAHPO take a trial's cost from a table, a trial's primary time here is

    cost_s = steps x (calibrated seconds per training step of its workload and optimizer)
             + evaluations x (calibrated seconds of the work its method needs before each evaluation)

The second term charges a method for what it must do before its model can be evaluated: Schedule-Free's BatchNorm
recalibration (self_tuning.recalibrate_batchnorm), which the trainer keeps out of `train_s`.

`lrsearch calibrate` measures each (workload, optimizer): the workload's own optimizer and each self-tuning
contender (tasks.SELF_TUNING_OPTIMIZERS), `repeats` blocks of `steps` steps after a warm-up, each block timed
alone; the figure is the median block's seconds per step, with the blocks' spread. It writes
`results/calibration/calibration.csv` and a README.md with the machine (processor, cores, torch threads), date,
command, git commit and library versions. Wall-clock seconds stay recorded beside the cost clock, as a check.

A strategy's own decision time (its proposal and its update from a result) is priced the same way:
`lrsearch calibrate --decisions TABLE` runs each searcher on a table (no training: only the strategy's seconds are
left) and keeps the median seconds per strategy and trial index in `decisions.csv` (DECISIONS.md says how it was
measured). A simulated run charges them to its clock (runner.py's `_SimulatedRecording`).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lrsearch.experiment.provenance import processor
from lrsearch.training.errors import InputError

COLUMNS = ["workload", "optimizer", "s_per_step", "s_per_step_min", "s_per_step_max", "repeats", "steps",
           "batch_size", "pre_eval_s", "threads", "device"]


def optimizers_of(task) -> list[str]:
    """What a workload trains with: its own optimizer, then each self-tuning contender it can run."""
    from lrsearch.training.tasks import SELF_TUNING_OPTIMIZERS

    return [task.optimizer, *SELF_TUNING_OPTIMIZERS]


def _timed(fn, n: int, sync=lambda: None) -> float:
    """Seconds for `n` calls of `fn`; `sync` waits for the device's queued work (a GPU's kernels run after the
    Python call returns: torch.cuda.synchronize before reading the clock, as torch.utils.benchmark does)."""
    sync()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return time.perf_counter() - started


def measure(task, optimizer: str, steps: int = 20, repeats: int = 5, data_source: str | None = None,
            device: str = "cpu") -> dict:
    """One (workload, optimizer) on `device` (the CPU, or a GPU: "cuda"): the median of `repeats` timed blocks of
    `steps` training steps (after 3 warm-up steps; a GPU's first kernels and cuDNN's autotuning fall there), and of
    the pre-evaluation work its method needs (0 when none)."""
    import torch

    from lrsearch.training.loop import batches
    from lrsearch.training.loop import sync as device_sync
    from lrsearch.training.tasks import SELF_TUNING_OPTIMIZERS
    from lrsearch.training.trainer import resolve_device, trial_parts

    params = {} if optimizer == task.optimizer else {"optimizer": optimizer, **SELF_TUNING_OPTIMIZERS[optimizer]}
    run_task = task.with_overrides(epochs=None, steps=max(steps * (repeats + 1), 10), seconds=None)
    setup, _ = trial_parts(run_task, params, seed=0, device=device, data_source=data_source)
    stream = batches(setup.loader)
    dev = resolve_device(device)

    def sync() -> None:
        device_sync(dev)

    def one_step() -> None:  # the trainer's step: forward, backward, the optimizer's step and its after_step hook
        x, y = next(stream)
        setup.step(x, y)

    _timed(one_step, 3, sync)
    per_step = [_timed(one_step, steps, sync) / steps for _ in range(repeats)]
    pre_eval = []
    if setup.recalibrate is not None:
        for _ in range(repeats):
            pre_eval.append(_timed(lambda: setup.recalibrate(setup), 1, sync))
    return {"workload": task.name, "optimizer": optimizer, "s_per_step": statistics.median(per_step),
            "s_per_step_min": min(per_step), "s_per_step_max": max(per_step), "repeats": repeats, "steps": steps,
            "batch_size": task.batch_size, "pre_eval_s": statistics.median(pre_eval) if pre_eval else 0.0,
            "threads": torch.get_num_threads(), "device": _device_name(device)}


def _device_name(device: str) -> str:
    from lrsearch.training.trainer import device_name, resolve_device

    dev = resolve_device(device)
    return device_name(dev) if dev.type == "cuda" else "cpu"


def calibrate(tasks: list, out: str | Path, steps: int = 20, repeats: int = 5, threads: int = 1,
              data_source: str | None = None, progress=print, device: str = "cpu") -> pd.DataFrame:
    """`measure` for every workload of `tasks` and each of its optimizers on `device`, with `threads` torch threads
    (the tables' lanes train with one each); writes out/calibration.csv and out/README.md; returns the table. On a
    GPU, the calibration's `processor` (what reports name beside the cost clock) is the GPU's name."""
    import torch

    from lrsearch.experiment.provenance import as_markdown, environment

    if repeats < 5:
        raise InputError(f"--repeats {repeats}: a calibration is the median of at least 5 repeats")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: torch sees no GPU here (torch {torch.__version__}); calibrate on the "
                         "machine whose clock you want, or --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"--device {device}: expected cpu or cuda (cuda:1 ...)")
    torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in tasks:
        for optimizer in optimizers_of(task):
            row = measure(task, optimizer, steps, repeats, data_source, device)
            rows.append(row)
            progress(f"{row['workload']:>14} {row['optimizer']:>18}: {1000 * row['s_per_step']:.2f} ms/step "
                     f"({1000 * row['s_per_step_min']:.2f} to {1000 * row['s_per_step_max']:.2f})"
                     + (f", {row['pre_eval_s']:.2f} s before each evaluation" if row["pre_eval_s"] else ""))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.to_csv(out / "calibration.csv", index=False)
    env = environment() | {"processor": processor(), "cores": os.cpu_count(), "threads": threads}
    if device.startswith("cuda"):
        env |= {"processor": f"{_device_name(device)} (CUDA {torch.version.cuda})", "host_processor": processor()}
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    where = "the GPU (each block closed by torch.cuda.synchronize)" if device.startswith("cuda") else "the CPU"
    host = f", on a host with {env['host_processor']}" if "host_processor" in env else ""
    lines = ["# Calibration: seconds per training step", "",
             "The cost clock's constants (lrsearch/experiment/calibration.py): for each workload and optimizer, the "
             f"median of {repeats} timed blocks of {steps} training steps on {where}, {threads} torch thread(s), after "
             "3 warm-up steps; `pre_eval_s`: the work a method needs before each evaluation (Schedule-Free's "
             "BatchNorm recalibration), charged to it. A trial's cost = steps x s_per_step + evaluations x "
             "pre_eval_s.", "",
             f"- processor: {env['processor']}{host}, {env['cores']} cores", as_markdown(env).rstrip(), "",
             table.assign(ms_per_step=1000 * table["s_per_step"], min_ms=1000 * table["s_per_step_min"],
                          max_ms=1000 * table["s_per_step_max"])
             [["workload", "optimizer", "ms_per_step", "min_ms", "max_ms", "pre_eval_s"]]
             .to_markdown(index=False, floatfmt=".3f"), ""]
    (out / "README.md").write_text("\n".join(lines))
    return table


@dataclass
class Calibration:
    """A calibration's table, to price trials: `cost(workload, optimizer, steps, evaluations)`, and, where it has
    decisions.csv, a strategy's decision seconds at a trial index (`decision_s`)."""
    table: pd.DataFrame
    path: Path
    processor: str = ""
    decisions: pd.DataFrame | None = None

    def decision_s(self, strategy: str, trial_index: int) -> float | None:
        """The median decision seconds of `strategy` at `trial_index` (past the measured ones: the last measured);
        None where the calibration has no decisions for it."""
        if self.decisions is None:
            return None
        mine = self.decisions[self.decisions["strategy"] == strategy]
        if mine.empty:
            return None
        at = mine[mine["trial_index"] <= trial_index]
        return float((at if len(at) else mine).sort_values("trial_index")["decision_s"].iloc[-1 if len(at) else 0])

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        file = path / "calibration.csv" if path.is_dir() else path
        if not file.is_file():
            raise InputError(f"{file}: no calibration here; make one with `lrsearch calibrate --out {path}`")
        env = file.with_name("environment.json")
        proc = json.loads(env.read_text()).get("processor", "") if env.is_file() else ""
        decisions = file.with_name("decisions.csv")
        return cls(pd.read_csv(file), file, proc, pd.read_csv(decisions) if decisions.is_file() else None)

    def rate(self, workload: str, optimizer: str) -> tuple[float, float]:
        """(seconds per step, seconds before each evaluation) of a workload under an optimizer."""
        hit = self.table[(self.table["workload"] == workload) & (self.table["optimizer"] == optimizer)]
        if hit.empty:
            raise InputError(f"{self.path}: no calibration of workload {workload!r} with optimizer {optimizer!r}; "
                             f"run `lrsearch calibrate --tasks {workload}` into it")
        return float(hit["s_per_step"].iloc[0]), float(hit["pre_eval_s"].iloc[0])

    def describe(self) -> str:
        return f"`{self.path}`" + (f" ({self.processor})" if self.processor else "")
