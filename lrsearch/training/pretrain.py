"""Pretrained weights for fine-tuning tasks: made once, cached on disk, shared by worker processes.

A task with `pretrain` fine-tunes what a pretraining run made: the task with its `pretrain` overrides
applied (`tasks.pretrain_task`), trained once by `trainer.prepare_task`. The weights are cached under
`.cache/pretrained/` (or `$LRSEARCH_PRETRAINED`), named by a hash of everything that produced them (the
pretraining task's fields, its seed, the data source's name and size, the device type, this file's format
version), beside a JSON file with the pretraining's record (its seconds, accuracy, curve, date).

Processes that start together on one machine take an exclusive file lock: the first trains, the others wait
and then load its file. Files are written under a temporary name and renamed into place, so that a reader
never sees half a file, and a file that exists is complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import torch

from lrsearch.training.tasks import Task, pretrain_task

FORMAT_VERSION = 1
# Fields that do not change the weights a run makes.
_NOT_IN_KEY = ("name", "description", "target_acc")


def cache_dir() -> Path:
    return Path(os.environ.get("LRSEARCH_PRETRAINED", ".cache/pretrained"))


def weights_path(task: Task, source: Path, device_type: str) -> Path:
    """Where the weights that `task`'s pretraining makes from `source` on a `device_type` device live."""
    pre = {k: v for k, v in asdict(pretrain_task(task)).items() if k not in _NOT_IN_KEY}
    data = [source.name, source.stat().st_size] if source.is_file() else [str(source.resolve())]
    made_by = {"format": FORMAT_VERSION, "task": pre, "seed": int(task.pretrain.get("seed", 0)), "data": data,
               "device": device_type}
    key = hashlib.sha256(json.dumps(made_by, sort_keys=True, default=repr).encode()).hexdigest()[:16]
    return cache_dir() / f"{task.model}-{key}.pt"


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`'s lock file (fcntl: released when the process dies, too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def save(path: Path, state_dict: dict, record: dict) -> None:
    """The weights and their record (JSON, beside them), each written whole, then renamed into place; the
    weights last, since their file's existence says that both are complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, default=repr))
    os.replace(tmp, record_path(path))
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp)
    os.replace(tmp, path)


def record_path(path: Path) -> Path:
    return path.with_suffix(".json")


def read_record(path: Path) -> dict:
    return json.loads(record_path(path).read_text())


@lru_cache(maxsize=4)
def load(path: Path) -> dict[str, torch.Tensor]:
    """The cached weights (on the CPU), read once per process."""
    return torch.load(path, map_location="cpu", weights_only=True)
