"""Workloads by name: a built-in task (`lrsearch tasks`), or the user's own, "module:function" or
"path/to/file.py:function"."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from lrsearch.training.errors import InputError
from lrsearch.training.tasks import TASKS, Task
from lrsearch.training.workloads._base import Workload
from lrsearch.training.workloads._function import FunctionWorkload
from lrsearch.training.workloads._model import ModelWorkload
from lrsearch.training.workloads._task import TaskWorkload


class WorkloadError(InputError):
    """A workload that cannot be loaded; the message names it and the fix."""


def is_user_workload(name: str) -> bool:
    return ":" in name


def _import(spec: str):
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise WorkloadError(f"task {spec!r}: expected a built-in task ({', '.join(TASKS)}), "
                            "\"package.module:function\" or \"path/to/file.py:function\"")
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise WorkloadError(f"task {spec!r}: no such file {path} (a path is relative to the working directory)")
        resolved = path.resolve()
        module_name = f"lrsearch_user_{resolved.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
        module = sys.modules.get(module_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(module_name, resolved)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module  # before running it: dataclasses and pickling look it up
            try:
                loader_spec.loader.exec_module(module)
            except Exception as err:
                del sys.modules[module_name]
                raise WorkloadError(f"task {spec!r}: importing {path} failed: {type(err).__name__}: {err}") from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as err:
            raise WorkloadError(f"task {spec!r}: cannot import module {where!r}: {type(err).__name__}: {err}") from None
    if not hasattr(module, attr):
        raise WorkloadError(f"task {spec!r}: {where} has no attribute {attr!r}")
    return getattr(module, attr)


def _is_objective(fn) -> bool:
    """A plain objective takes (params, report[, seed]); a factory takes nothing."""
    try:
        required = [p for p in inspect.signature(fn).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(required) >= 2


def load_workload(spec: str, overrides: dict | None = None, data_source: str | None = None,
                  direction: str | None = None, target: float | None = None) -> Workload:
    """The workload `spec` names. A user function is either the objective itself, `fn(params, report)` (or
    with `seed`), or a factory called with no arguments that returns one of: such an objective, a
    `ModelWorkload` (or a dict of its fields), a built-in `Task`, or any `Workload`."""
    if not is_user_workload(spec):
        if spec not in TASKS:
            raise WorkloadError(f"task {spec!r}: unknown; built-in tasks are {', '.join(TASKS)}, or name your own "
                                "as \"package.module:function\" or \"path/to/file.py:function\"")
        workload: Workload = TaskWorkload.named(spec, overrides, data_source)
        return workload.with_target(target) if target is not None else workload
    if overrides:
        raise WorkloadError(f"task_overrides: {', '.join(overrides)}: only built-in tasks take overrides; "
                            f"change {spec} itself")
    fn = _import(spec)
    if not callable(fn):
        raise WorkloadError(f"task {spec!r}: {type(fn).__name__} is not a function")
    name = spec.rpartition(":")[2]
    if _is_objective(fn):
        workload = FunctionWorkload(fn, name=name, spec=spec)
    else:
        try:
            made = fn()
        except Exception as err:
            raise WorkloadError(f"task {spec!r}: calling {name}() failed: {type(err).__name__}: {err}") from None
        workload = _as_workload(made, spec, name, data_source)
    if direction is not None:
        workload.direction = direction
    if target is not None:
        workload.target = target
    return workload


def _as_workload(made, spec: str, name: str, data_source: str | None) -> Workload:
    if isinstance(made, Workload):
        workload = made
    elif isinstance(made, Task):
        workload = TaskWorkload(made, data_source)
    elif isinstance(made, dict):
        unknown = set(made) - set(ModelWorkload.__dataclass_fields__)
        if unknown:
            raise WorkloadError(f"task {spec!r}: the returned description has unknown key(s) {', '.join(sorted(unknown))}; "
                                f"allowed: {', '.join(f for f in ModelWorkload.__dataclass_fields__ if not f.startswith('_'))}")
        try:
            workload = ModelWorkload(**({"name": name} | made))
        except ValueError as err:
            raise WorkloadError(f"task {spec!r}: {err}") from None
    elif callable(made) and _is_objective(made):
        workload = FunctionWorkload(made, name=name, spec=spec)
    else:
        raise WorkloadError(f"task {spec!r}: {name}() returned {type(made).__name__}; expected an objective "
                            "fn(params, report), a ModelWorkload (or a dict of its fields), a Task or a Workload")
    if not getattr(workload, "spec", spec):
        workload.spec = spec
    return workload
