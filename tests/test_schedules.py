"""Schedules against independent references: torch's CyclicLR and OneCycleLR, and the
closed-form formulas of the CLR paper / bckenstler's Keras CLR written out here."""

import math

import pytest
import torch

from lrsearch.training.schedules import (
    FunctionLR,
    constant,
    cosine,
    cyclic_lr,
    exponential,
    linear_decay,
    make_schedule,
    multistep,
    one_cycle,
    staged,
    warmup_linear_decay,
    with_warmup,
)


def _torch_lrs(make_scheduler, n, lr=1.0):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.99994)])
@pytest.mark.parametrize("step_size", [2000, 777])
def test_cyclic_equals_torch_cycliclr(mode, gamma, step_size):
    base, top, n = 0.001, 0.006, 20_000
    ref = _torch_lrs(lambda opt: torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=base, max_lr=top, step_size_up=step_size, mode=mode, gamma=gamma, cycle_momentum=False), n)
    ours = [cyclic_lr(it, base, top, step_size, mode=mode, gamma=gamma) for it in range(n)]
    for it, (a, b) in enumerate(zip(ours, ref)):
        assert a == pytest.approx(b, rel=1e-9, abs=0), it


def _keras_clr(it, base, top, step, mode, gamma, window):
    # bckenstler/CLR (Keras) written independently, with the window applied to the triangle
    cycle = math.floor(1 + it / (2 * step))
    x = abs(it / step - 2 * cycle + 1)
    w = {"triangular": max(0.0, 1 - x), "welch": 1 - x**2, "hann": 0.5 * (1 + math.cos(math.pi * x))}[window]
    scale = {"triangular": 1.0, "triangular2": 1 / (2.0 ** (cycle - 1)), "exp_range": gamma**it}[mode]
    return base + (top - base) * w * scale


@pytest.mark.parametrize("window", ["triangular", "welch", "hann"])
@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_windows_match_formula_and_shape(window, mode):
    for it in range(0, 9000, 7):
        assert cyclic_lr(it, 0.001, 0.006, 2000, mode, 0.9999, window) == pytest.approx(
            _keras_clr(it, 0.001, 0.006, 2000, mode, 0.9999, window), rel=1e-12)
    # every window starts a cycle at base_lr and peaks at max_lr after step_size iterations
    assert cyclic_lr(0, 0.001, 0.006, 2000, window=window) == pytest.approx(0.001)
    assert cyclic_lr(2000, 0.001, 0.006, 2000, window=window) == pytest.approx(0.006)
    assert cyclic_lr(4000, 0.001, 0.006, 2000, window=window) == pytest.approx(0.001)
    # Welch lies above the triangle and Hann crosses it at mid-ramp (CLR paper Sec. 3.1)
    if window == "welch":
        assert cyclic_lr(1000, 0, 1, 2000, window="welch") == pytest.approx(0.75)
    if window == "hann":
        assert cyclic_lr(1000, 0, 1, 2000, window="hann") == pytest.approx(0.5)


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_equals_torch(three_phase, anneal):
    n = 1000
    ref = _torch_lrs(lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.4, total_steps=n, pct_start=0.25, anneal_strategy=anneal, three_phase=three_phase,
        div_factor=20, final_div_factor=100, cycle_momentum=False), n)
    ours = [one_cycle(it, 0.4, n, 0.25, 20, 100, anneal, three_phase) for it in range(n)]
    assert ours == pytest.approx(ref, rel=1e-9)


def test_closed_forms():
    assert multistep(59_999, 0.001) == pytest.approx(0.001)
    assert multistep(60_000, 0.001) == pytest.approx(1e-4)
    assert multistep(65_000, 0.001) == pytest.approx(1e-5)
    assert exponential(100, 0.01, 0.99) == pytest.approx(0.01 * 0.99**100)
    assert linear_decay(0, 0.007, 0.001, 100) == pytest.approx(0.007)
    assert linear_decay(50, 0.007, 0.001, 100) == pytest.approx(0.004)
    assert linear_decay(500, 0.007, 0.001, 100) == pytest.approx(0.001)
    ref = _torch_lrs(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100, eta_min=0.01), 100, lr=0.1)
    assert [cosine(it, 0.1, 100, 0.01) for it in range(100)] == pytest.approx(ref, rel=1e-9)
    warm = with_warmup(lambda it: constant(it, 0.1), 10)
    assert [warm(i) for i in (0, 5, 10, 20)] == pytest.approx([0.0, 0.05, 0.1, 0.1])


def test_staged_restarts_each_stage():
    run = staged([(100, lambda it: it), (250, lambda it: 1000 + it)])
    assert [run(0), run(99), run(100), run(249), run(300)] == [0, 99, 1000, 1149, 1200]
    with pytest.raises(ValueError, match="increase"):
        staged([(100, constant), (50, constant)])


def test_make_schedule_from_config():
    fn = make_schedule({"name": "cyclic", "base_lr": 0.001, "max_lr": 0.006, "step_size": 2000,
                        "mode": "triangular2"}, total_steps=25_000)
    assert fn(6000) == pytest.approx(cyclic_lr(6000, 0.001, 0.006, 2000, "triangular2"))
    assert make_schedule({"name": "one_cycle", "max_lr": 1.0}, 100)(99) == pytest.approx(one_cycle(99, 1.0, 100))
    fn = make_schedule({"name": "staged", "stages": [
        {"until": 100, "name": "constant", "lr": 0.1}, {"until": 200, "name": "linear_decay", "start_lr": 0.1, "end_lr": 0.0}]}, 200)
    assert fn(150) == pytest.approx(0.05)  # second stage's length (100) is its n_iters
    warm = make_schedule({"name": "constant", "lr": 0.2, "warmup_iters": 4}, 10)
    assert warm(2) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown parameter.*max_lrr"):
        make_schedule({"name": "cyclic", "base_lr": 0.1, "max_lrr": 1, "step_size": 5}, 10)
    with pytest.raises(ValueError, match="missing step_size"):
        make_schedule({"name": "cyclic", "base_lr": 0.1, "max_lr": 1}, 10)
    with pytest.raises(ValueError, match="schedule name 'sawtooth'"):
        make_schedule({"name": "sawtooth"}, 10)


def test_function_lr_drives_optimizer_with_lr_mult():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": [params[0]], "lr_mult": 1.0}, {"params": [params[1]], "lr_mult": 2.0}], lr=0.0)
    sched = FunctionLR(opt, lambda it: cyclic_lr(it, 0.1, 0.5, 10))
    seen = []
    for _ in range(25):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for it, (lr1, lr2) in enumerate(seen):
        assert lr1 == pytest.approx(cyclic_lr(it, 0.1, 0.5, 10)) and lr2 == pytest.approx(2 * lr1)


@pytest.mark.parametrize("total", [430, 476, 97])
def test_warmup_linear_decay_is_airbench94s_shape(total):
    """airbench94's published points: 0.2x at step 0, 1x at int(0.23 * total), 0.07x at the end, linear between."""
    import numpy as np

    warmup = int(0.23 * total)
    expected = np.interp(np.arange(total + 1), [0, warmup, total], [0.2, 1.0, 0.07]) * 1.5
    got = [warmup_linear_decay(it, 1.5, total) for it in range(total + 1)]
    assert got == pytest.approx(expected.tolist())
    schedule = make_schedule({"name": "warmup_linear_decay", "lr": 1.5}, total)  # total_steps from the run
    assert schedule(warmup) == pytest.approx(1.5) and schedule(total) == pytest.approx(0.105)


def test_function_lr_freezes_a_group_from_its_step():
    weights = [torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))]
    opt = torch.optim.SGD([{"params": [weights[0]]}, {"params": [weights[1]], "frozen_from": 3}], lr=0.0, momentum=0.9)
    sched = FunctionLR(opt, lambda it: 0.1)
    for it in range(6):
        assert opt.param_groups[1]["lr"] == (0.1 if it < 3 else 0.0)
        before = weights[1].item()
        (weights[0] + weights[1]).sum().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        assert (weights[1].item() == before) == (it >= 3)  # momentum does not move a frozen weight either


def test_exp_range_bounds_decay_both_boundaries_as_the_papers_text():
    gamma = 0.9999
    for it in (0, 1000, 2000, 3000, 5000, 12345):
        tri = cyclic_lr(it, 0.001, 0.006, 2000, "triangular")  # the undecayed triangle, checked against torch above
        bounds = cyclic_lr(it, 0.001, 0.006, 2000, "exp_range", gamma, decay="bounds")
        assert bounds == pytest.approx(tri * gamma**it)
        amplitude = cyclic_lr(it, 0.001, 0.006, 2000, "exp_range", gamma)
        assert amplitude == pytest.approx(0.001 + (tri - 0.001) * gamma**it)
    # at a cycle's trough, bounds decays base_lr too while amplitude keeps it
    assert cyclic_lr(4000, 0.001, 0.006, 2000, "exp_range", gamma, decay="bounds") == pytest.approx(0.001 * gamma**4000)
    assert cyclic_lr(4000, 0.001, 0.006, 2000, "exp_range", gamma) == pytest.approx(0.001)
    with pytest.raises(ValueError, match="decay 'both'"):
        cyclic_lr(10, 0.001, 0.006, 2000, "exp_range", gamma, decay="both")


def test_warmup_frac_is_that_fraction_of_the_run_in_front_of_the_schedule():
    total, peak = 200, 0.4
    fn = make_schedule({"name": "linear_decay", "start_lr": peak, "end_lr": 0.0, "warmup_frac": 0.15}, total)
    for it in range(total):  # Goyal et al.'s gradual warm-up: a linear ramp from 0 multiplies the schedule
        ramp = min(1.0, it / 30)
        assert fn(it) == pytest.approx(peak * (1 - it / total) * ramp), it
    assert make_schedule({"name": "constant", "lr": 0.1, "warmup_frac": 0.0}, 10)(0) == 0.1
    with pytest.raises(ValueError, match="not both"):
        make_schedule({"name": "constant", "lr": 0.1, "warmup_frac": 0.1, "warmup_iters": 3}, 10)
    with pytest.raises(ValueError, match="warmup_frac 1.5"):
        make_schedule({"name": "constant", "lr": 0.1, "warmup_frac": 1.5}, 10)


def test_the_tasks_schedule_names_are_the_registry():
    from lrsearch.training.schedules import SCHEDULES
    from lrsearch.training.tasks import SCHEDULE_FAMILIES, SCHEDULE_NAMES

    assert SCHEDULE_NAMES == (*SCHEDULES, "staged")
    for family, spec in SCHEDULE_FAMILIES.items():  # each family's template builds, with "$lr" filled
        filled = {k: (0.1 if v == "$lr" else v) for k, v in spec.items()}
        assert make_schedule(filled, 50)(0) > 0, family
