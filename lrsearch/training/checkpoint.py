"""Checkpoints inside one trial, so that a long trial killed part-way goes on from its last checkpoint.

A checkpoint holds everything the trainer's loop needs to continue as if it had never stopped: the
model's weights, the optimizer's state (momentum buffers), the schedule's position, the loader's
generator, epoch and order within the epoch, torch's RNG states, the lookahead's averages, the loop's
running loss, and the curve and clocks recorded so far. Resuming from it gives the same curve and
weights, bit for bit on the CPU, as a run that was never stopped (tests/test_checkpoint.py).

It is written every `every_steps` steps or every `every_s` seconds of training, whichever comes first,
atomically (a temporary file in the same folder, then a rename), and removed when the trial ends. Each
checkpoint names the trial it belongs to (`fingerprint`: task, params and seed); one of another trial,
or one that cannot be read, is named in one line and the trial starts over from step 0.

Where it lives is the caller's choice: `lrsearch clr-paper` keeps each unfinished run's checkpoint
beside its store, in `<results>/checkpoints/`, so that a results folder copied or committed to another
machine goes on there. The Caffe net of the CLR paper with its momentum and loader order takes about
1 MB.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lrsearch.training.progress import LOG

FORMAT_VERSION = 1


def fingerprint(definition: dict) -> str:
    """A short hash of what a trial is (task, params, seed): a checkpoint is only resumed by the same trial."""
    text = json.dumps(definition, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_every(text: str) -> tuple[int | None, float | None]:
    """`--checkpoint-every` as given: '1000' (steps) or '300s', '5m', '1h' (seconds of training)."""
    value = str(text).strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        if value and value[-1] in units:
            seconds = float(value[:-1]) * units[value[-1]]
            if seconds > 0 and math.isfinite(seconds):
                return None, seconds
        else:
            steps = int(value)
            if steps > 0:
                return steps, None
    except ValueError:
        pass
    raise ValueError(f"checkpoint interval {text!r}: expected a number of steps (1000) or of seconds (300s, 5m, 1h), "
                     "greater than 0")


@dataclass
class Checkpointing:
    """Where one trial's checkpoint goes and how often (`every_steps` steps, `every_s` seconds of training)."""
    path: Path
    every_steps: int | None = None
    every_s: float | None = None
    trial: str = field(default="", init=False)  # the fingerprint of the trial writing it (set by the trainer)
    _last_step: int = field(default=0, init=False)
    _last_time: float = field(default_factory=time.monotonic, init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.every_steps is None and self.every_s is None:
            raise ValueError("checkpointing: give every_steps or every_s")

    def due(self, step: int) -> bool:
        """Whether a checkpoint is due after `step` (cheap: no device sync)."""
        if self.every_steps is not None and step - self._last_step >= self.every_steps:
            return True
        return self.every_s is not None and time.monotonic() - self._last_time >= self.every_s

    def save(self, state: dict, step: int) -> None:
        """Write `state` atomically: a reader sees the previous checkpoint or this one, never a part."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(state | {"format": FORMAT_VERSION}, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a copied or committed results folder from others
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._last_step, self._last_time = step, time.monotonic()

    def read(self, expected: str) -> dict | None:
        """The checkpoint of the trial whose fingerprint is `expected`, or None: none there, or one that is
        damaged or of another trial (said in one line; the trial then starts over)."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
                raise ValueError(f"not a format-{FORMAT_VERSION} checkpoint")
            missing = {"fingerprint", "step", "model", "optimizer", "loader", "loop", "result"} - set(state)
            if missing:
                raise ValueError(f"missing {', '.join(sorted(missing))}")
        except Exception as err:
            self.warn(f"is damaged ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
            return None
        if state["fingerprint"] != expected:
            self.warn("belongs to another trial (task, params or seed changed)")
            return None
        self._last_step = state["step"]
        return state

    def warn(self, why: str) -> None:
        LOG.warning("checkpoint %s %s; the trial starts over from step 0", self.path, why)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
