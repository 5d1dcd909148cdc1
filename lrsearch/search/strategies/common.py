"""What several library adapters share: multi-fidelity by evaluations, values within bounds, the worst value
seen so far, scratch folders, and a library's global random state.

Multi-fidelity (SMAC3's Hyperband intensifier, DEHB). These libraries ask for a configuration *at a
fidelity*, and may later ask for the same configuration again at a higher one (a promotion). Here the
fidelity is a count of the trial's evaluations: a trial at fidelity f stops, through the report hook the
objective passes to a strategy with `prunes = True`, right after its f-th evaluation, and is recorded as
"pruned" (as Optuna's pruners stop trials, optuna_.py); a trial at the top fidelity runs to its end. There
are no checkpoints: a promotion is a trial of its own that trains from the start, as these libraries run
Hyperband on a plain function of (configuration, fidelity).

Values (all of them). `within_bounds` turns a library's value into a plain Python one on the dimension.

Failed trials (NNI's TPE, SMAC, DEHB, Nevergrad, Optunity, Optuna's infeasible trials, Hyperopt's ATPE). A
failed trial has no value (base.Evaluation); where a library has no failure state, or reads a number even from
a failed trial, it is told the worst value seen so far (`WorstSoFar`), never better than a result. Each adapter
says why its library needs it, and converts to its library's sign.

Global random state (HEBO, Syne Tune). Some libraries draw from numpy's global generator instead of a
seeded one of their own. `own_numpy_state` gives such a library a generator seeded once per run and
swaps it in only while the library runs, so the trainer's draws between trials and the library's draws
never mix, and a run repeats itself whatever else the process does.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from lrsearch.search.strategies.base import Option, OptionError, ReportHook
from lrsearch.search.strategies.space import Dimension

FIDELITY_OPTIONS = (
    Option("min_fidelity", int, 1, "evaluations of a trial at the lowest fidelity"),
    Option("max_fidelity", int, 3, "evaluations of a full trial (the task's training steps / eval_every, rounded "
           "up: 3 for the cpu preset); a trial at this fidelity runs to its end"),
    Option("eta", int, 3, "Hyperband's reduction factor: each rung keeps 1 / eta of its trials (the library's default)"),
)


def check_fidelities(name: str, min_fidelity: int, max_fidelity: int, eta: int) -> None:
    """Stop at construction, naming the options, where the fidelity range cannot make a Hyperband bracket."""
    problems = []
    if min_fidelity < 1:
        problems.append(f"min_fidelity = {min_fidelity}: expected at least 1 (an evaluation)")
    if max_fidelity <= min_fidelity:
        problems.append(f"max_fidelity = {max_fidelity}: expected more than min_fidelity ({min_fidelity})")
    if eta < 2:
        problems.append(f"eta = {eta}: expected at least 2")
    if problems:
        raise OptionError(f"strategy {name!r}: " + "; ".join(problems))


class MultiFidelity:
    """Mixin for a Hyperband-style strategy whose fidelity is a trial's evaluations (smac-hyperband, dehb): it
    prunes through the report hook, so it runs one trial at a time (the fidelity travels in the hook, which
    trials in flight do not get), and its fidelity options are checked when it is built."""

    prunes = True
    parallel = False
    options_spec = FIDELITY_OPTIONS

    def __init__(self, space, seed=0, **options):
        super().__init__(space, seed, **options)
        check_fidelities(self.name, *(self.option(o.name) for o in FIDELITY_OPTIONS))


def stop_after(fidelity: float, max_fidelity: int) -> ReportHook | None:
    """The report hook of a trial at `fidelity` (in evaluations): stop after that many evaluations; None
    (never stop) at the top fidelity. A library's fidelities are floats (DEHB's are max * eta^-k), so the
    count is rounded to the nearest whole evaluation, at least one."""
    if fidelity >= max_fidelity - 1e-9:
        return None
    evaluations = max(1, math.floor(fidelity + 0.5))
    seen = 0

    def report(step: int, value: float) -> bool:
        nonlocal seen
        seen += 1
        return seen >= evaluations

    return report


def scratch_folder(owner: object, prefix: str) -> Path:
    """A fresh folder for a library that insists on writing files (SMAC's run history, DEHB's log), removed
    when `owner` (the strategy) is: lrsearch's store keeps the trials."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    weakref.finalize(owner, shutil.rmtree, path, ignore_errors=True)
    return path


def within_bounds(d: Dimension, value):
    """A library's value as a plain Python one (not a numpy scalar), a number clipped into the dimension's
    bounds: a log scale's exp(log(x)) or 10 ** log10(x) may land an ulp outside them."""
    value = value.item() if hasattr(value, "item") else value
    return value if d.categorical else min(max(float(value), d.low), d.high)


class WorstSoFar:
    """The lowest value (in the maximised sign of `Evaluation.value`) of the results seen so far: what a library
    without a failure state is told for a failed trial. Only finite values count, so `value` is a number a
    library can take, or None before any."""

    def __init__(self):
        self._lowest = math.inf

    def see(self, value: float) -> None:
        """A result (a trial with a value) was told to the library."""
        if math.isfinite(value):
            self._lowest = min(self._lowest, value)

    @property
    def value(self) -> float | None:
        """The worst value seen so far; None before any result."""
        return self._lowest if math.isfinite(self._lowest) else None

    def fill(self, default: float) -> float:
        """The worst value seen so far, else `default` (in the same maximised sign)."""
        return default if self.value is None else self.value


class own_numpy_state(contextlib.AbstractContextManager):  # noqa: N801  (used as a context manager, like a function)
    """`with state:` runs the block with numpy's global generator set to this run's own, seeded once,
    then puts the caller's back (and keeps where this run's had got to, for the next block)."""

    def __init__(self, seed: int):
        self._state = np.random.RandomState(seed).get_state()

    def __enter__(self):
        self._outer = np.random.get_state()
        np.random.set_state(self._state)
        return self

    def __exit__(self, *exc):
        self._state = np.random.get_state()
        np.random.set_state(self._outer)
        return False
