"""Checkpoints inside a trial: a trial SIGKILLed after a checkpoint goes on from it and ends as an
uninterrupted one, bit for bit on the CPU; a damaged or foreign checkpoint is named and the trial starts over."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lrsearch.training.checkpoint import Checkpointing, parse_every
from lrsearch.training.data import DeviceLoader

# The smoke task shortened: 2,000 training images (20 steps an epoch), 30 steps, an evaluation every 4. A
# checkpoint every 3 steps; the kill comes at the evaluation of step 16, so the last checkpoint (step 15) lies
# part-way through an epoch and an evaluation interval, with augmentation drawing from the loader's generator.
TRIAL = """
import json, os, signal, sys
import torch
from lrsearch.training.checkpoint import Checkpointing
from lrsearch.training.tasks import get_task
from lrsearch.training.trainer import _train, resolve_device

torch.set_num_threads(1)
out, checkpoint, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
task = get_task("smoke", epochs=None, steps=30, eval_every=4, augment=True, translate=2)
params = {"lr": 0.05, "schedule": {"name": "cyclic", "base_lr": 0.01, "max_lr": 0.1, "step_size": 5}}

def report(step, acc):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return False

every = Checkpointing(checkpoint, every_steps=3) if checkpoint != "-" else None
result, setup = _train(task, params, 0, resolve_device("cpu"), report, checkpoint=every)
torch.save({"weights": setup.model.state_dict(), "momentum": setup.optimizer.state_dict()["state"],
            "record": json.dumps(result.to_dict())}, out)
"""

TIMING = {"train_s", "wall_s"}


def _trial(tmp_path, out, checkpoint="-", kill_at=0):
    from conftest import JPEG

    script = tmp_path / "trial.py"
    script.write_text(textwrap.dedent(TRIAL))
    env = dict(os.environ, LRSEARCH_DATA=str(JPEG), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(script), str(out), str(checkpoint), str(kill_at)], env=env,
                          capture_output=True, text=True, timeout=300)


def _load(path):
    saved = torch.load(path, weights_only=True)
    return saved | {"record": json.loads(saved["record"])}


def _curve(record):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in record["curve"]]


def test_a_sigkilled_trial_resumes_to_the_same_curve_and_weights_bit_for_bit(tmp_path):
    checkpoint = tmp_path / "run" / "trial.pt"
    killed = _trial(tmp_path, tmp_path / "never.pt", checkpoint, kill_at=16)
    assert killed.returncode == -9, killed.stderr  # SIGKILL: no clean-up ran
    assert not (tmp_path / "never.pt").exists()
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == 15 and saved["loader"]["order"] is not None  # part-way through an epoch
    assert [p.name for p in checkpoint.parent.iterdir()] == ["trial.pt"]  # no temporary file left behind

    resumed = _trial(tmp_path, tmp_path / "resumed.pt", checkpoint)
    assert resumed.returncode == 0, resumed.stderr
    assert not checkpoint.exists()  # removed once the trial ended
    whole = _trial(tmp_path, tmp_path / "whole.pt")
    assert whole.returncode == 0, whole.stderr

    a, b = _load(tmp_path / "resumed.pt"), _load(tmp_path / "whole.pt")
    assert a["record"]["resumed_from"] == [15] and b["record"]["resumed_from"] == []
    assert a["record"]["status"] == b["record"]["status"] == "ok"
    assert a["record"]["steps"] == b["record"]["steps"] == 30
    assert _curve(a["record"]) == _curve(b["record"])  # losses, accuracies, LRs: equal as floats, not close
    assert len(a["record"]["curve"]) == 8
    for name, tensor in b["weights"].items():
        assert torch.equal(a["weights"][name], tensor), name
    for index, state in b["momentum"].items():
        assert torch.equal(a["momentum"][index]["momentum_buffer"], state["momentum_buffer"])
    # the clocks go on from the killed process's: the resumed trial's train_s counts both processes' steps
    assert a["record"]["curve"][-1]["train_s"] > a["record"]["curve"][3]["train_s"] > 0


def _smoke(steps=12, **overrides):
    from lrsearch.training.tasks import get_task

    return get_task("smoke", epochs=None, steps=steps, eval_every=4, train_subset=1500, **overrides)


@pytest.fixture(scope="module")
def uninterrupted(jpeg_data):
    """The trial the two tests below restart or resume, never stopped and without a checkpoint: `_smoke()` at
    lr 0.05, seed 0, on one thread. Trained once for the module; each test compares its own runs with it."""
    from conftest import JPEG

    from lrsearch.training.trainer import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(_smoke(), {"lr": 0.05}, seed=0, device="cpu", data_source=str(JPEG))
    finally:
        torch.set_num_threads(threads)


def test_a_damaged_checkpoint_is_named_in_one_line_and_the_trial_starts_over(tmp_path, caplog, monkeypatch,
                                                                             uninterrupted):
    from conftest import JPEG

    from lrsearch.training.trainer import train

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    torch.set_num_threads(1)
    path = tmp_path / "trial.pt"
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint, a half-copied file")
    with caplog.at_level(logging.WARNING, logger="lrsearch"):
        damaged = train(_smoke(), {"lr": 0.05}, seed=0, device="cpu", checkpoint=Checkpointing(path, every_steps=5))
    lines = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert len(lines) == 1 and str(path) in lines[0] and "damaged" in lines[0] and "starts over" in lines[0]
    assert "\n" not in lines[0]
    assert damaged.status == uninterrupted.status == "ok" and damaged.resumed_from == []
    assert _curve(damaged.to_dict()) == _curve(uninterrupted.to_dict())
    assert not path.exists()


def test_a_checkpoint_of_another_trial_is_not_resumed(tmp_path, caplog, monkeypatch, uninterrupted):
    from conftest import JPEG

    from lrsearch.training.trainer import _train, resolve_device

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    torch.set_num_threads(1)
    path = tmp_path / "trial.pt"
    stop_at_8 = lambda step, acc: step == 8  # noqa: E731  (a pruner's word: the trial ends "pruned" at step 8)
    # a checkpoint left at step 5 by seed 0: the pruned trial removes its own file, so keep a copy at step 5
    every = Checkpointing(path, every_steps=5)
    saved = {}
    original = every.save

    def save(state, step):
        original(state, step)
        saved.setdefault(step, path.read_bytes())

    every.save = save
    _train(_smoke(), {"lr": 0.05}, 0, resolve_device("cpu"), stop_at_8, checkpoint=every)
    path.write_bytes(saved[5])
    with caplog.at_level(logging.WARNING, logger="lrsearch"):
        other = _train(_smoke(), {"lr": 0.05}, 1, resolve_device("cpu"), checkpoint=Checkpointing(path, every_steps=50))[0]
    assert other.resumed_from == [] and other.steps == 12
    assert any("another trial" in r.getMessage() for r in caplog.records)
    path.write_bytes(saved[5])  # the same trial (seed 0) goes on from it
    same = _train(_smoke(), {"lr": 0.05}, 0, resolve_device("cpu"), checkpoint=Checkpointing(path, every_steps=50))[0]
    assert same.resumed_from == [5]
    assert _curve(same.to_dict()) == _curve(uninterrupted.to_dict())


def test_a_loaders_state_gives_the_batches_it_would_have_given():
    images = torch.randn(50, 3, 8, 8)
    labels = torch.arange(50) % 10
    make = lambda: DeviceLoader(images, labels, 10, augment=True, pad=2, seed=3)  # noqa: E731
    first = make()
    batches = iter(first)
    for _ in range(2):  # two of the epoch's five batches
        next(batches)
    state = first.state_dict()
    rest = [x for x, _ in batches] + [x for x, _ in first]  # the epoch's last three, then a whole new epoch
    second = make()
    second.load_state_dict(state)
    again = [x for x, _ in second] + [x for x, _ in second]
    assert len(rest) == len(again) == 8
    assert all(torch.equal(a, b) for a, b in zip(rest, again))


def test_checkpoint_interval_parsing():
    assert parse_every("1000") == (1000, None)
    assert parse_every("300s") == (None, 300.0)
    assert parse_every("5m") == (None, 300.0)
    assert parse_every("1h") == (None, 3600.0)
    for bad in ("0", "-5", "often", "0s", "1.5"):
        with pytest.raises(ValueError, match="checkpoint interval"):
            parse_every(bad)
