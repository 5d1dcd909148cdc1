"""Search spaces, declared once and translated by each adapter.

A space is a dict of parameter name -> dimension; any Python identifier is a name (the workload, not
the space, says which names it understands):

    {"lr": {"low": 1e-4, "high": 1.0, "log": True},
     "one_minus_momentum": {"low": 1e-3, "high": 0.5, "log": True},
     "schedule": {"choices": ["constant", "one_cycle", "cosine"]}}

A categorical dimension may be conditional: its `choices` a table choice -> sub-space, each choice
with its own sub-parameters (possibly none). In TOML:

    schedule = {choices = {constant = {},
                           cosine = {final_lr_factor = {low = 1e-3, high = 0.5, log = true}},
                           one_cycle = {pct_start = {low = 0.1, high = 0.5},
                                        final_lr_factor = {low = 1e-4, high = 0.1, log = true}}}}

A proposal is a flat params dict holding the choice and only its branch's sub-parameters:
{"lr": 0.1, "schedule": "one_cycle", "pct_start": 0.3, "final_lr_factor": 0.01}. A sub-parameter
name may repeat across branches, with other bounds there; one level of nesting only.

For a library without conditional spaces, `flattened()` is the same space with every
sub-parameter as its own dimension (a repeated name spans the union of its bounds), and
`from_flat(params)` turns a proposal on it into one on this space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lrsearch.training.errors import InputError

DEFAULT_SPACE = {"lr": {"low": 1e-4, "high": 1.0, "log": True}}


class SpaceError(InputError):
    """A malformed search space; the message names the parameter and the fix."""


@dataclass(frozen=True)
class Dimension:
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None
    # A conditional dimension's sub-space for each choice (keys in the order of `choices`); None when plain.
    branches: dict[str, SearchSpace] | None = field(default=None, hash=False)

    @property
    def categorical(self) -> bool:
        return self.choices is not None

    @property
    def conditional(self) -> bool:
        return self.branches is not None

    def branch(self, choice) -> SearchSpace:
        """The sub-space that `choice` activates (empty for a plain dimension)."""
        return self.branches[choice] if self.conditional else SearchSpace(())

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

    def to_unit(self, value) -> float:
        """The inverse of `from_unit`: a choice maps to the middle of its share of [0, 1]."""
        if self.categorical:
            return (self.choices.index(value) + 0.5) / len(self.choices)
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def contains(self, value) -> bool:
        if self.categorical:
            return value in self.choices
        return self.low * (1 - 1e-9) <= value <= self.high * (1 + 1e-9)

    def to_dict(self) -> dict:
        if self.conditional:
            return {"choices": {choice: sub.to_dict() for choice, sub in self.branches.items()}}
        if self.categorical:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class SearchSpace:
    dims: tuple[Dimension, ...]  # the top-level dimensions; a conditional one holds its branches

    @property
    def names(self) -> list[str]:
        """The top-level names (sub-parameters are in `flattened().names`)."""
        return [d.name for d in self.dims]

    def __iter__(self):
        return iter(self.dims)

    def __len__(self) -> int:
        return len(self.dims)

    @property
    def is_conditional(self) -> bool:
        return any(d.conditional for d in self.dims)

    def active_dims(self, params: dict) -> list[Dimension]:
        """The dimensions `params` sets: the top-level ones, then the branch each conditional one chose
        (with that branch's bounds). A choice missing from `params`, or not one of its choices, activates none."""
        active = []
        for d in self.dims:
            active.append(d)
            if d.conditional and params.get(d.name) in d.branches:
                active.extend(d.branch(params[d.name]))
        return active

    def active(self, params: dict) -> dict:
        """Only the active params: the sub-parameters of branches not chosen are dropped."""
        return {d.name: params[d.name] for d in self.active_dims(params) if d.name in params}

    def contains(self, params: dict) -> bool:
        """Whether `params` is a proposal on this space: exactly the active parameters, each within its bounds."""
        dims = self.active_dims(params)
        return set(params) == {d.name for d in dims} and all(d.contains(params[d.name]) for d in dims)

    def to_dict(self) -> dict:
        """The dict `parse_space` reads back to this space (the store saves it as JSON)."""
        return {d.name: d.to_dict() for d in self.dims}

    def flattened(self) -> SearchSpace:
        """The space without conditions: each conditional dimension as a plain choice, then its branches'
        sub-parameters as dimensions of their own. A name several branches share spans the union of its
        bounds (log only where every branch is log; a categorical one, the union of its choices)."""
        if not self.is_conditional:
            return self
        flat: list[Dimension] = []
        for d in self.dims:
            if not d.conditional:
                flat.append(d)
                continue
            flat.append(Dimension(d.name, choices=d.choices))
            shared: dict[str, list[Dimension]] = {}
            for sub in d.branches.values():
                for s in sub:
                    shared.setdefault(s.name, []).append(s)
            flat.extend(_union(name, same) for name, same in shared.items())
        return SearchSpace(tuple(flat))

    def from_flat(self, params: dict) -> dict:
        """A proposal on `flattened()` as one on this space: the active params, a sub-parameter whose
        branch has narrower bounds than the union moved to the same relative place within them (so the
        tuner's value and the trial's are one-to-one, and the trial's lies in its branch's bounds)."""
        flat = {d.name: d for d in self.flattened()}
        out = {}
        for d in self.active_dims(params):
            value, wide = params[d.name], flat[d.name]
            if wide != d and not (d.categorical and value in d.choices):
                value = d.from_unit(min(max(wide.to_unit(value), 0.0), 1.0))
            out[d.name] = value
        return out


def _union(name: str, dims: list[Dimension]) -> Dimension:
    """One dimension spanning every branch's `name` (validated: all numeric or all categorical)."""
    if len(dims) == 1:
        return dims[0]
    if dims[0].categorical:
        return Dimension(name, choices=tuple(dict.fromkeys(c for d in dims for c in d.choices)))
    return Dimension(name, min(d.low for d in dims), max(d.high for d in dims), all(d.log for d in dims))


def parse_space(spec: dict | SearchSpace | None, where: str = "space") -> SearchSpace:
    """Validate a space dict; a malformed one raises SpaceError naming `where.param` and the fix."""
    if isinstance(spec, SearchSpace):
        return spec
    spec = DEFAULT_SPACE if spec is None else spec
    if not isinstance(spec, dict) or not spec:
        raise SpaceError(f"{where}: expected a table of parameters such as {DEFAULT_SPACE}")
    space = SearchSpace(tuple(_parse_dimension(name, dim, f"{where}.{name}", nested=False)
                              for name, dim in spec.items()))
    _check_names(space, where)
    return space


def _parse_dimension(name, dim, at: str, nested: bool) -> Dimension:
    if not isinstance(name, str) or not name.isidentifier():
        raise SpaceError(f"{at}: not a Python identifier; name parameters with letters, digits and _ "
                         "(e.g. one_minus_momentum)")
    if not isinstance(dim, dict):
        raise SpaceError(f"{at}: expected a table like {{low = 0.001, high = 1.0, log = true}} or {{choices = [...]}}")
    unknown = set(dim) - {"low", "high", "log", "choices"}
    if unknown:
        raise SpaceError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}; allowed: low, high, log, or choices")
    if "choices" in dim:
        choices = dim["choices"]
        if set(dim) != {"choices"} or not isinstance(choices, list | tuple | dict) or not choices:
            raise SpaceError(f"{at}: choices must be a non-empty list (or a table choice -> sub-parameters), "
                             "alone (no low/high/log)")
        if not isinstance(choices, dict):
            return Dimension(name, choices=tuple(choices))
        if nested:
            raise SpaceError(f"{at}: a branch's parameter cannot have branches of its own (one level of nesting); "
                             "make its choices a list, or move it to the top level")
        branches = {}
        for choice, sub in choices.items():
            where = f"{at}.choices.{choice}"
            if not isinstance(sub, dict):
                raise SpaceError(f"{where}: expected a table of this choice's parameters, e.g. "
                                 "{final_lr_factor = {low = 1e-3, high = 0.5, log = true}}, or {} for none")
            branches[choice] = SearchSpace(tuple(_parse_dimension(n, d, f"{where}.{n}", nested=True)
                                                 for n, d in sub.items()))
        return Dimension(name, choices=tuple(branches), branches=branches)
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
    return Dimension(name, float(low), float(high), log)


def _check_names(space: SearchSpace, where: str) -> None:
    """A proposal is one flat dict: a sub-parameter may share its name only with the same parameter in
    another branch of the same choice, and of the same kind (numeric or categorical) there."""
    seen = {d.name: f"{where}.{d.name}" for d in space}
    for d in space:
        if not d.conditional:
            continue
        kinds: dict[str, tuple[bool, str]] = {}
        for choice, sub in d.branches.items():
            for s in sub:
                at = f"{where}.{d.name}.choices.{choice}.{s.name}"
                if s.name in seen and s.name not in kinds:
                    raise SpaceError(f"{at}: the name is taken by {seen[s.name]} (a proposal is one flat dict); "
                                     "rename one of them")
                if s.name in kinds and kinds[s.name][0] != s.categorical:
                    raise SpaceError(f"{at}: {'categorical' if s.categorical else 'numeric'} here but not in "
                                     f"{kinds[s.name][1]}; give one of them another name")
                kinds.setdefault(s.name, (s.categorical, at))
        seen.update({name: at for name, (_, at) in kinds.items()})
