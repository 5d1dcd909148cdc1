"""The strategy contract.

A strategy proposes params, hands each to the objective, and learns from the result.
It knows nothing of torch: the objective is a plain function

    objective(params: dict, report: ReportHook | None) -> Evaluation

where `report(step, value) -> stop?` is the pruning hook the trainer calls at each
evaluation. The base class wraps the objective so that every strategy keeps to its
budget exactly (a call past it raises BudgetExhausted, which `run` absorbs) and so that
the time spent inside the library between trials is measured as `overhead_s`.

Strategies whose library can propose while trials run (Optuna's, NNI's tuners, grid,
random) are written as ask/tell (`AskTellStrategy`): the same three methods serve the
one-at-a-time loop and `run_parallel`, which keeps several trials in flight on a
`TrialPool` (the runner's view of a parallel executor, e.g. Ray).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from lrsearch.search.strategies.space import SearchSpace
from lrsearch.training.errors import InputError

ReportHook = Callable[[int, float], bool]


USABLE = ("ok", "pruned")  # statuses whose model counts as a candidate configuration


@dataclass
class Evaluation:
    """One trial's outcome as a strategy sees it: a status, and a value that means something only when the status
    is usable (`has_value`). A diverged or failed trial has no value: each adapter tells its library so in the
    library's own way (Optuna's TrialState.FAIL, Hyperopt's STATUS_FAIL, SMAC's CRASHED, ...) or leaves the point
    out, never as a number; `value` then holds a placeholder for the store (the workload's floor), which no
    library sees."""
    params: dict
    value: float  # to maximise (validation accuracy); a placeholder when not has_value
    status: str = "ok"  # ok, diverged, pruned, failed
    train_s: float = 0.0  # training seconds this trial cost (counts against a time budget)
    overhead_s: float = 0.0  # seconds the strategy spent before this trial (filled in by the base class)
    record: Any = None  # whatever the objective wants to keep (the trainer's TrialResult); opaque here
    extra: dict = field(default_factory=dict)  # strategy-specific notes (e.g. a range test's suggestion)

    @property
    def has_value(self) -> bool:
        """Whether `value` is a measurement (the trial ended ok or was pruned), not a failed trial's placeholder."""
        return self.status in USABLE


Objective = Callable[[dict, ReportHook | None], Evaluation]


class BudgetExhausted(Exception):
    """Raised inside a strategy when it asks for a trial past its budget."""


class _Budgeted:
    """The objective as a strategy sees it: counts trials and time, and measures overhead."""

    def __init__(self, objective: Objective, space: SearchSpace, n_trials: int, time_budget_s: float | None,
                 on_trial: Callable[[Evaluation], None] | None):
        self.objective, self.space = objective, space
        self.n_trials, self.time_budget_s, self.on_trial = n_trials, time_budget_s, on_trial
        self.evaluations: list[Evaluation] = []
        self.train_s = 0.0
        self._last_return = time.perf_counter()

    @property
    def exhausted(self) -> bool:
        return len(self.evaluations) >= self.n_trials or (
            self.time_budget_s is not None and self.train_s >= self.time_budget_s)

    def __call__(self, params: dict, report: ReportHook | None = None) -> Evaluation:
        overhead = time.perf_counter() - self._last_return
        if self.exhausted:
            raise BudgetExhausted
        params = {k: _plain(v) for k, v in params.items()}
        evaluation = self.objective(params, report)
        evaluation.overhead_s = overhead
        self.evaluations.append(evaluation)
        self.train_s += evaluation.train_s
        self._last_return = time.perf_counter()  # recording the trial (on_trial) is not strategy overhead
        if self.on_trial is not None:
            self.on_trial(evaluation)
            self._last_return = time.perf_counter()
        return evaluation


def _plain(value):
    """numpy scalars -> Python scalars, so params serialise and compare cleanly."""
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class Option:
    """One option a strategy takes from `[options.<strategy>]`: its name, type, default and meaning."""
    name: str
    type: type  # int, float, str, bool or dict (a TOML table); an int is accepted where a float is declared
    default: Any
    meaning: str
    choices: tuple = ()  # allowed values, when the option is one of a few

    def problem(self, value: Any) -> str | None:
        """Why `value` is not valid for this option (None when it is)."""
        is_bool = isinstance(value, bool)
        ok = (is_bool if self.type is bool else
              (isinstance(value, (int, float)) and not is_bool) if self.type is float else
              (isinstance(value, int) and not is_bool) if self.type is int else isinstance(value, self.type))
        if not ok:
            return f"{self.name} = {value!r}: expected {self.type.__name__} (default {self.default!r})"
        if self.choices and value not in self.choices:
            return f"{self.name} = {value!r}: expected one of {', '.join(map(repr, self.choices))}"
        return None


class OptionError(InputError):
    """Options a strategy does not take, or of the wrong type; the message names each."""


STARTUP_OPTION = Option("n_startup_trials", int, None, "random start-up proposals before the model is used "
                        "(default: the strategy's, see its summary)")


class Strategy(abc.ABC):
    """Base class. Subclasses set `name` and `summary` and implement `_search(objective, n_trials)`,
    calling `objective(params, report)` until it raises BudgetExhausted or they are done.

    Call order: `__init__(space, seed, **options)` validates the options (a strategy is built once per
    run); `space_notes()` and `flattens_space` may be read then; `run(objective, n_trials, ...)` calls
    `_search` once, with the budgeted objective; after `run`, `space_notes()` holds everything the run
    did to the space (the grid's shape, for one). A strategy object serves one run: build another for the
    next seed or budget. Invariants: never more than `n_trials` calls of the objective; every params dict
    it passes satisfies `space.contains` (flat, only the active parameters of a conditional space).

    Options: a subclass declares what it takes in `options_spec` (plus `n_startup_trials` where it has a
    start-up phase) and reads them with `self.option(name)`; an option it does not declare, or of the
    wrong type, stops it at construction (OptionError), so a typo never runs silently with defaults.
    """

    name: str = ""
    summary: str = ""
    prunes: bool = False  # whether it passes a report hook that can stop trials early
    # Whether its proposals depend on the budget (grid: sized to it). When they do not, the first b
    # trials of a run are a run at budget b, which the replay uses to read every budget from one run.
    budget_aware: bool = False
    # Whether it can propose while trials run (ask/tell, see AskTellStrategy): a parallel executor keeps
    # several of its trials in flight; the others run one trial at a time, their runs side by side.
    parallel: bool = False
    # Model-based strategies propose at random until they have this many results (the option
    # `n_startup_trials` overrides it); None for strategies without such a start-up phase.
    default_startup_trials: int | None = None
    # Packages its library needs beyond lrsearch's own: (import name, what to install). Checked before a
    # run trains anything (`missing_packages`), so a machine without them fails fast, not mid-experiment.
    requires: tuple[tuple[str, str], ...] = ()
    # Whether its library searches a conditional space flattened (space.py, `flattened()`): every branch's
    # sub-parameters proposed in every trial, the inactive ones dropped. False: natively, the choice first,
    # then only its branch's sub-parameters.
    flattens_conditional: bool = False

    @classmethod
    def missing_packages(cls) -> list[str]:
        """What to install for this strategy, of what is not importable here."""
        import importlib.util
        return [install for module, install in cls.requires if importlib.util.find_spec(module) is None]

    options_spec: tuple[Option, ...] = ()

    @classmethod
    def declared_options(cls) -> dict[str, Option]:
        """Every option this strategy takes, by name."""
        declared = {o.name: o for o in cls.options_spec}
        if cls.default_startup_trials is not None and STARTUP_OPTION.name not in declared:
            declared[STARTUP_OPTION.name] = Option(STARTUP_OPTION.name, int, cls.default_startup_trials,
                                                   STARTUP_OPTION.meaning.split(" (default")[0])
        return declared

    @classmethod
    def option_problems(cls, options: dict) -> list[str]:
        """What is wrong with `options` for this strategy: unknown names (with the closest declared one)
        and ill-typed values; empty when they are all valid."""
        import difflib

        declared, problems = cls.declared_options(), []
        for name, value in options.items():
            if name not in declared:
                close = difflib.get_close_matches(name, list(declared), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                takes = f"it takes {', '.join(declared)}" if declared else "it takes no options"
                problems.append(f"unknown option {name!r}{hint}; {takes}")
            elif (problem := declared[name].problem(value)) is not None:
                problems.append(problem)
        return problems

    def __init__(self, space: SearchSpace, seed: int = 0, **options):
        problems = self.option_problems(options)
        if problems:
            raise OptionError(f"strategy {self.name!r}: " + "; ".join(problems))
        self.space, self.seed, self.options = space, seed, options

    def option(self, name: str) -> Any:
        """The option's value in this run: the one given, else its declared default."""
        return self.options.get(name, self.declared_options()[name].default)

    @property
    def startup_trials(self) -> int | None:
        """How many of its first proposals are random start-up ones (None: it has no start-up phase).
        A run that ends within them compared random search under another name."""
        if self.default_startup_trials is None:
            return None
        return int(self.option("n_startup_trials"))

    def space_notes(self) -> list[str]:
        """One line for each way this strategy departs from the space as declared (a conditional space
        flattened, a dimension ignored, fixed or searched in another form), or says how it covers it (the
        grid's shape, once run). The runner stores them with the run; the report flags the run."""
        if self.flattens_conditional and self.space.is_conditional:
            return [f"{self.name}: conditional space flattened: inactive parameters are proposed and dropped"]
        return []

    @property
    def flattens_space(self) -> bool:
        """Whether any dimension is flattened, ignored or fixed (its `space_notes` say which)."""
        return self.flattens_conditional and self.space.is_conditional

    def run(self, objective: Objective, n_trials: int, time_budget_s: float | None = None,
            on_trial: Callable[[Evaluation], None] | None = None) -> list[Evaluation]:
        budgeted = _Budgeted(objective, self.space, n_trials, time_budget_s, on_trial)
        try:
            self._search(budgeted, n_trials)
        except BudgetExhausted:
            pass
        return budgeted.evaluations

    @abc.abstractmethod
    def _search(self, objective: _Budgeted, n_trials: int) -> None:
        """Propose, evaluate through `objective`, learn; return when done (or let BudgetExhausted out)."""


@dataclass
class Proposal:
    """One trial an ask/tell strategy wants: its params, its pruning hook, and the library's
    handle for it (an Optuna trial, an NNI parameter id)."""
    params: dict
    report: ReportHook | None = None
    handle: Any = None


class TrialPool(Protocol):
    """Where `run_parallel` sends trials. `reserve(block)` claims a slot for one more trial
    (False: none free now); `submit` starts a trial in it; `wait` returns one finished trial's
    token and Evaluation (its slot freed); `release` gives back a slot reserved but not used."""

    width: int  # the most trials one run may keep in flight

    def reserve(self, block: bool) -> bool: ...
    def release(self) -> None: ...
    def submit(self, params: dict) -> Any: ...
    def wait(self, tokens: list) -> tuple[Any, Evaluation]: ...


class AskTellStrategy(Strategy):
    """A strategy as ask/tell. Subclasses implement `_start(n_trials, in_flight)` (build the
    library's state; `in_flight` > 1 where trials will run side by side, e.g. Optuna's
    constant liar), `_ask() -> Proposal | None` (None: nothing more to propose) and
    `_tell(proposal, evaluation)`. Call order: `_start` once, then `_ask` and `_tell` for each trial, one
    `_tell` per `_ask` that proposed; in parallel, several `_ask` may come before their `_tell`s, and the
    `_tell`s in the order the trials finish."""

    parallel = True

    @abc.abstractmethod
    def _start(self, n_trials: int, in_flight: int) -> None: ...

    @abc.abstractmethod
    def _ask(self) -> Proposal | None: ...

    @abc.abstractmethod
    def _tell(self, proposal: Proposal, evaluation: Evaluation) -> None: ...

    def _search(self, objective, n_trials):
        self._start(n_trials, in_flight=1)
        for _ in range(n_trials):
            proposal = self._ask()
            if proposal is None:
                return
            self._tell(proposal, objective(proposal.params, proposal.report))

    def run_parallel(self, pool: TrialPool, n_trials: int, time_budget_s: float | None = None,
                     on_trial: Callable[[Evaluation], None] | None = None) -> list[Evaluation]:
        """Keep up to `pool.width` trials in flight: propose whenever a slot is free, learn from
        each trial as it finishes. Budgets hold as in `run`: at most `n_trials` trials, and no new
        one once the finished ones' training seconds reach `time_budget_s`. A trial's overhead_s
        is the time spent in `_ask` for it and in `_tell` for it."""
        self._start(n_trials, in_flight=pool.width)
        evaluations: list[Evaluation] = []
        in_flight: dict[Any, tuple[Proposal, float]] = {}
        train_s, proposing = 0.0, True
        while True:
            while proposing and len(in_flight) < pool.width and pool.reserve(block=not in_flight):
                started = time.perf_counter()
                proposal = None
                if len(evaluations) + len(in_flight) < n_trials and (time_budget_s is None or train_s < time_budget_s):
                    proposal = self._ask()
                if proposal is None:
                    pool.release()
                    proposing = False
                    break
                proposal.params = {k: _plain(v) for k, v in proposal.params.items()}
                in_flight[pool.submit(proposal.params)] = (proposal, time.perf_counter() - started)
            if not in_flight:
                return evaluations
            token, evaluation = pool.wait(list(in_flight))
            proposal, ask_s = in_flight.pop(token)
            started = time.perf_counter()
            self._tell(proposal, evaluation)
            evaluation.overhead_s = ask_s + time.perf_counter() - started
            evaluations.append(evaluation)
            train_s += evaluation.train_s
            if on_trial is not None:
                on_trial(evaluation)


REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    REGISTRY[cls.name] = cls
    return cls
