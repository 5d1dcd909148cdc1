"""Search spaces, declared once and translated by each adapter.

A space is a dict of parameter name -> dimension:
    {"lr": {"low": 1e-4, "high": 1.0, "log": True},
     "momentum": {"low": 0.8, "high": 0.99},
     "schedule": {"choices": ["constant", "one_cycle", "cosine"]}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# What the trainer understands (see lrsearch.training.tasks.schedule_spec).
PARAMETERS = ("lr", "momentum", "weight_decay", "schedule")
DEFAULT_SPACE = {"lr": {"low": 1e-4, "high": 1.0, "log": True}}


class SpaceError(ValueError):
    """A malformed search space; the message names the parameter and the fix."""


@dataclass(frozen=True)
class Dimension:
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    @property
    def categorical(self) -> bool:
        return self.choices is not None

    def from_unit(self, u: float):
        """Map u in [0, 1] to a value: log-uniform, uniform, or a choice. The ends map to the bounds exactly
        (exp(log(1e-5)) is 9.999999999999997e-06, out of the user's bounds), and nothing falls outside them."""
        if self.categorical:
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        if u <= 0:
            return self.low
        if u >= 1:
            return self.high
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return min(max(value, self.low), self.high)

    def contains(self, value) -> bool:
        if self.categorical:
            return value in self.choices
        return self.low * (1 - 1e-9) <= value <= self.high * (1 + 1e-9)


@dataclass(frozen=True)
class SearchSpace:
    dims: tuple[Dimension, ...]

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dims]

    def __iter__(self):
        return iter(self.dims)

    def __len__(self) -> int:
        return len(self.dims)

    def contains(self, params: dict) -> bool:
        return set(params) == set(self.names) and all(d.contains(params[d.name]) for d in self.dims)

    def to_dict(self) -> dict:
        return {d.name: ({"choices": list(d.choices)} if d.categorical else {"low": d.low, "high": d.high, "log": d.log})
                for d in self.dims}


def parse_space(spec: dict | SearchSpace | None, where: str = "space") -> SearchSpace:
    """Validate a space dict; a malformed one raises SpaceError naming `where.param` and the fix."""
    if isinstance(spec, SearchSpace):
        return spec
    spec = DEFAULT_SPACE if spec is None else spec
    if not isinstance(spec, dict) or not spec:
        raise SpaceError(f"{where}: expected a table of parameters such as {DEFAULT_SPACE}")
    dims = []
    for name, dim in spec.items():
        at = f"{where}.{name}"
        if name not in PARAMETERS:
            raise SpaceError(f"{at}: unknown parameter; searchable parameters are {', '.join(PARAMETERS)}")
        if not isinstance(dim, dict):
            raise SpaceError(f"{at}: expected a table like {{low = 0.001, high = 1.0, log = true}} or {{choices = [...]}}")
        unknown = set(dim) - {"low", "high", "log", "choices"}
        if unknown:
            raise SpaceError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}; allowed: low, high, log, or choices")
        if "choices" in dim:
            if set(dim) != {"choices"} or not isinstance(dim["choices"], list | tuple) or not dim["choices"]:
                raise SpaceError(f"{at}: choices must be a non-empty list, alone (no low/high/log)")
            dims.append(Dimension(name, choices=tuple(dim["choices"])))
            continue
        if "low" not in dim or "high" not in dim:
            raise SpaceError(f"{at}: needs both low and high")
        low, high, log = dim["low"], dim["high"], dim.get("log", False)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise SpaceError(f"{at}: low and high must be numbers")
        if not isinstance(log, bool):
            raise SpaceError(f"{at}: log must be true or false")
        if low >= high:
            raise SpaceError(f"{at}: low ({low}) must be below high ({high})")
        if log and low <= 0:
            raise SpaceError(f"{at}: a log scale needs low > 0 (got {low})")
        dims.append(Dimension(name, float(low), float(high), log))
    return SearchSpace(tuple(dims))
