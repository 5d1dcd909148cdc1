"""HEBO (Huawei's heteroscedastic evolutionary Bayesian optimisation) driven with ask/tell:
`HEBO.suggest()` -> a one-row DataFrame, `HEBO.observe(rows, y)`.

HEBO minimises: it is told the negated value. Its `DesignSpace` is a fixed table of named columns, so a
conditional space is searched flattened (space.py). A log dimension is HEBO's `pow` type (searched in
log10), a linear one `num`, a choice `cat`. HEBO's model and acquisition are its defaults (a GP on
power-transformed values, the MACE acquisition, optimised by NSGA-II through pymoo); its first
`rand_sample` proposals are scrambled Sobol points, seeded (`scramble_seed`).

Randomness: past the Sobol start-up, HEBO draws from numpy's and torch's global generators (its GP's
initial values, pymoo's evolution, the pick among the Pareto front). Both are this run's own while HEBO
runs (common.own_numpy_state, and a forked torch state), so a seeded run repeats itself and the trainer's
generators are left as they were. pymoo must be <= 0.6.1.5: from 0.6.1.6 on, pymoo's algorithms draw from a
fresh generator seeded from the OS when given no seed, and HEBO passes none, so runs would not repeat.

Threads: HEBO's import sets torch to one thread for the whole process (hebo/optimizers/hebo.py: its tensors
are tiny). The trainer shares the process, so the count is put back after the import, and HEBO gets its one
thread only while it runs (its tensors are too small for a second one to help).

Cost: each proposal past the start-up fits the GP (100 RMSprop steps) and runs `acq_generations` (HEBO's
100) generations of NSGA-II over 100 candidates, whose pure-Python duplicate elimination dominates: about
5 s a proposal at 100 generations on 2 CPU cores (measured 2026-12-01 by the retired replay; to be remeasured
with `make budgets REPLAY=1 SLOW=1`).
"""

from __future__ import annotations

import contextlib

from lrsearch.search.strategies.base import AskTellStrategy, Option, Proposal, register
from lrsearch.search.strategies.common import own_numpy_state, within_bounds
from lrsearch.search.strategies.space import Dimension


def _hebo_parameter(d: Dimension) -> dict:
    if d.categorical:
        return {"name": d.name, "type": "cat", "categories": list(d.choices)}
    if d.log:
        return {"name": d.name, "type": "pow", "lb": d.low, "ub": d.high, "base": 10}
    return {"name": d.name, "type": "num", "lb": d.low, "ub": d.high}


def _import_hebo():
    """HEBO's classes, imported without letting HEBO's import change torch's thread count."""
    import torch
    threads = torch.get_num_threads()
    from hebo.design_space.design_space import DesignSpace
    from hebo.optimizers.hebo import HEBO
    torch.set_num_threads(threads)
    return DesignSpace, HEBO


@contextlib.contextmanager
def _generations(generations: int):
    """HEBO.suggest builds its acquisition optimiser as `EvolutionOpt(..., pop=100, iters=100)`; meanwhile,
    give it `generations` instead of 100 (HEBO's default passes through unchanged)."""
    import hebo.optimizers.hebo as module
    original = module.EvolutionOpt

    class Sized(original):
        def __init__(self, *args, **conf):
            super().__init__(*args, **(conf | {"iters": generations}))

    module.EvolutionOpt = Sized
    try:
        yield
    finally:
        module.EvolutionOpt = original


@register
class HEBOStrategy(AskTellStrategy):
    name = "hebo"
    summary = "HEBO (GP on power-transformed values, MACE acquisition, NSGA-II), 10 Sobol start-up trials"
    requires = (("hebo", "pip install -e '.[hebo]' && pip install --no-deps hebo==0.3.6"),)
    default_startup_trials = 10  # as Optuna's TPE and GP (HEBO's own default: one more than the dimensions)
    flattens_conditional = True  # its DesignSpace is a fixed set of columns
    options_spec = (Option("acq_generations", int, 100, "NSGA-II generations of the acquisition search per "
                           "proposal (HEBO's 100; most of a proposal's seconds)"),)

    @property
    def startup_trials(self) -> int:
        """HEBO takes at least 2 random start-up points (`max(2, rand_sample)` in HEBO.__init__)."""
        return max(2, int(self.option("n_startup_trials")))

    def _start(self, n_trials, in_flight):
        import torch
        design_space, hebo = _import_hebo()
        self._flat = self.space.flattened()
        self._numpy = own_numpy_state(self.seed)
        self._torch = torch.Generator().manual_seed(self.seed).get_state()
        self._hebo = hebo(design_space().parse([_hebo_parameter(d) for d in self._flat]),
                          rand_sample=self.startup_trials, scramble_seed=self.seed)

    @contextlib.contextmanager
    def _running(self):
        """While HEBO runs: this run's numpy and torch generators, and one torch thread (HEBO's own setting,
        for its small tensors); the caller's generators and thread count after."""
        import torch
        threads = torch.get_num_threads()
        with self._numpy, torch.random.fork_rng(devices=[]), _generations(self.option("acq_generations")):
            torch.set_rng_state(self._torch)
            torch.set_num_threads(1)
            try:
                yield
            finally:
                self._torch = torch.get_rng_state()
                torch.set_num_threads(threads)

    def _ask(self):
        with self._running():
            row = self._hebo.suggest(n_suggestions=1)
        flat = {d.name: within_bounds(d, row[d.name].iloc[0]) for d in self._flat}
        return Proposal(self.space.from_flat(flat), None, row)

    def _tell(self, proposal, evaluation):
        import numpy as np
        if not evaluation.has_value:  # HEBO has no failure state: a failed point is left out of its observations
            return
        with self._running():
            self._hebo.observe(proposal.handle, np.array([[-evaluation.value]]))
