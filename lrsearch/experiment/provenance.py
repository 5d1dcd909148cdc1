"""Where a result came from: command, date, device, git commit and library versions."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

LIBRARIES = ("lrsearch", "torch", "numpy", "pandas", "optuna", "hyperopt", "nni", "seaborn", "pyarrow", "ray")


def git_commit(cwd: str | Path | None = None) -> str:
    """HEAD (with "-dirty" for uncommitted changes to tracked files); where the code is a copy without its
    git history (a GPU machine's working tree), the commit that `LRSEARCH_GIT_COMMIT` names."""
    if os.environ.get("LRSEARCH_GIT_COMMIT"):
        return os.environ["LRSEARCH_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=cwd, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {cpu}, {torch.get_num_threads()} threads"


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "-"
    found["torch"] = torch.__version__
    return found


def environment(command: list[str] | None = None) -> dict:
    return {
        "command": shlex.join(command if command is not None else sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device_description(),
        "git_commit": git_commit(Path(__file__).parent),
        "versions": versions(),
    }


def as_markdown(env: dict) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    return (f"- command: `{env['command']}`\n- date: {env['date']}\n- device: {env['device']}\n"
            f"- git commit: `{env['git_commit']}`\n- versions: {libs}\n")
