"""Where a result came from: command, date, device, git commit and library versions."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

LIBRARIES = ("lrsearch", "torch", "numpy", "pandas", "optuna", "hyperopt", "nni", "seaborn", "pyarrow", "ray")
# Installed by the Makefile without their declared requirements (`pip install --no-deps`, see pyproject.toml's
# hebo, dehb and synetune extras), so lrsearch's own metadata does not name them.
NO_DEPS_LIBRARIES = ("hebo", "dehb", "syne-tune")


def pinned_libraries() -> list[str]:
    """Every library lrsearch pins to one release (`name==version` in its requirements, extras included: the
    adapters and contenders follow that release's API and defaults), and the ones installed without deps."""
    try:
        requirements = importlib.metadata.requires("lrsearch") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        requirements = []
    pinned = [re.split(r"[\s=<>!~;\[]", r, maxsplit=1)[0] for r in requirements if "==" in r.partition(";")[0]]
    return list(dict.fromkeys([*pinned, *NO_DEPS_LIBRARIES]))


# Paths whose changes say nothing about the code: the results a run writes (a committed
# results/<name>/results.sqlite is written into by the run itself) and the default results folder.
NOT_CODE = ("results/", "runs/")


def changed_files(cwd: str | Path | None = None) -> list[str] | None:
    """Tracked files that differ from HEAD (staged or not), results aside (`NOT_CODE`); None without git."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, cwd=cwd,
                             timeout=5)
        if top.returncode != 0:
            return None
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                             text=True, cwd=top.stdout.strip(), timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    paths = [line[3:].split(" -> ")[-1].strip('"') for line in out.splitlines() if line.strip()]
    return sorted(p for p in paths if not p.startswith(NOT_CODE))


def git_commit(cwd: str | Path | None = None) -> str:
    """HEAD, with "-dirty" when tracked code or config differs from it (`changed_files`: changes under
    results/ and runs/ do not count); where the code is a copy without its git history (a GPU machine's
    working tree), the commit that `LRSEARCH_GIT_COMMIT` names.

    Before 2026-12-01 any changed tracked file counted, a run's own results.sqlite included, so results
    folders stamped earlier may say -dirty for a run from clean code (docs/store-and-workers.md, "Provenance")."""
    if os.environ.get("LRSEARCH_GIT_COMMIT"):
        return os.environ["LRSEARCH_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if changed_files(cwd) else "")


def processor() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return f"CPU: {processor()}, {torch.get_num_threads()} threads"


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in dict.fromkeys([*LIBRARIES, *pinned_libraries()]):
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
        "git_changed": changed_files(Path(__file__).parent) or [],  # what -dirty stands for
        "versions": versions(),
    }


def as_markdown(env: dict) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    return (f"- command: `{env['command']}`\n- date: {env['date']}\n- device: {env['device']}\n"
            f"- git commit: `{env['git_commit']}`{changed_note(env)}\n- versions: {libs}\n")


def changed_note(env: dict) -> str:
    """' (uncommitted changes to ...)' after a -dirty commit, from the files the environment lists; '' if none."""
    changed = env.get("git_changed") or []
    if not changed:
        return ""
    shown = ", ".join(f"`{p}`" for p in changed[:8])
    return f" (uncommitted changes to {shown}{f' and {len(changed) - 8} more' if len(changed) > 8 else ''})"
