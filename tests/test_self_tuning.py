"""Learning-rate-free optimizers: the trainer's trial against a plain torch loop around each library, the weights
and BatchNorm statistics they evaluate, and their strategies (one trial per seed, refused where they cannot run).

A tiny task on the real data: the smoke task's TinyNet (BatchNorm) on 200 training images, 6 steps of 50
(1.5 epochs), evaluated every 3 steps on 100 validation images."""

import math
import textwrap

import pytest
import torch
import torch.nn.functional as F

from lrsearch.training.tasks import SELF_TUNING_OPTIMIZERS, get_task, trial_settings

pytestmark = pytest.mark.usefixtures("jpeg_data")

TASK = get_task("smoke", train_subset=300, val_size=100, test_subset=100, batch_size=50, epochs=None, steps=6,
                eval_every=3)
SELF_TUNING = list(SELF_TUNING_OPTIMIZERS)


@pytest.fixture(autouse=True)
def _data(monkeypatch):
    from conftest import JPEG
    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).double().mean().item()
    model.train()
    return acc


def precise_batchnorm(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """schedulefree's README before an evaluation: model in train mode, optimizer in eval mode, training batches
    forward under no_grad (here the first ones, the statistics averaged equally over them, PreciseBN's form)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        for start in range(0, min(len(images), 50 * batch_size), batch_size):
            model(images[start:start + batch_size])
    for m in norms:
        m.momentum = 0.1


def direct_run(task, seed: int, make_optimizer, make_scheduler=None, schedule_free: bool = False) -> dict:
    """The library used directly, in a plain torch loop: the trainer's model and initialisation, its batch order
    (a seeded shuffle per epoch, no augmentation), cross-entropy, an evaluation every `eval_every` steps. With
    `schedule_free`, each evaluation is the README's (optimizer.eval(), BatchNorm recomputed) and the train-mode
    weights' accuracy is kept beside it."""
    from lrsearch.training.models import build_model
    from lrsearch.training.trainer import prepare_data

    data = prepare_data(task, torch.device("cpu"))
    torch.manual_seed(seed)
    model = build_model(task.model, num_classes=10)
    optimizer = make_optimizer(model)
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    if schedule_free:
        optimizer.train()
    shuffle = torch.Generator().manual_seed(seed)
    n, size = len(data.train_y), task.batch_size
    curve = {"train_loss": [], "val_acc": [], "train_mode_val_acc": []}
    losses, step = [], 0
    while step < task.steps:
        order = torch.randperm(n, generator=shuffle)
        for start in range(0, n - size + 1, size):
            idx = order[start:start + size]
            loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.item())
            step += 1
            if step % task.eval_every == 0:
                curve["train_loss"].append(sum(losses) / len(losses))
                losses.clear()
                if schedule_free:
                    curve["train_mode_val_acc"].append(accuracy(model, data.val_x, data.val_y))
                    optimizer.eval()
                    precise_batchnorm(model, data.train_x, size)
                curve["val_acc"].append(accuracy(model, data.val_x, data.val_y))
                if schedule_free and step < task.steps:
                    optimizer.train()
            if step == task.steps:
                break
    return curve


def trial_curve(result) -> dict:
    assert result.status == "ok", result.error
    return {key: [row[key] for row in result.curve] for key in ("train_loss", "val_acc")}


def test_a_prodigy_trial_is_the_library_used_directly():
    from prodigyopt import Prodigy

    from lrsearch.training.trainer import train

    # prodigyopt's README: lr=1., weight_decay as the problem needs (decoupled by default), CosineAnnealingLR with
    # T_max = the total steps; TinyNet decays every parameter at the task's weight decay
    expected = direct_run(TASK, 3, lambda model: Prodigy(model.parameters(), lr=1.0, weight_decay=TASK.weight_decay),
                          lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=TASK.steps))
    got = trial_curve(train(TASK, {"optimizer": "prodigy"}, seed=3))
    assert got["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
    assert got["val_acc"] == pytest.approx(expected["val_acc"], abs=1e-9)


def test_a_schedule_free_trial_is_the_library_used_directly_and_evaluates_the_averaged_weights():
    from schedulefree import SGDScheduleFree

    from lrsearch.training.trainer import train

    # SGDScheduleFree's defaults (lr 1.0, momentum 0.9); warm-up 2% of 6 steps rounds to none
    expected = direct_run(TASK, 3, lambda model: SGDScheduleFree(model.parameters(), weight_decay=TASK.weight_decay),
                          schedule_free=True)
    got = trial_curve(train(TASK, {"optimizer": "schedulefree-sgd"}, seed=3))
    assert got["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
    assert got["val_acc"] == pytest.approx(expected["val_acc"], abs=1e-9)  # optimizer.eval()'s weights
    assert got["val_acc"] != pytest.approx(expected["train_mode_val_acc"], abs=1e-9)  # not the weights it trains


def test_recalibrated_batchnorm_statistics_are_the_averaged_weights_own():
    from lrsearch.training.trainer import trial_parts

    setup, data = trial_parts(TASK, {"optimizer": "schedulefree-sgd"}, seed=0)
    for (x, y), _ in zip(setup.loader, range(3)):
        setup.step(x, y)
    conv, norm = setup.model.features[0], setup.model.features[1]
    trained = norm.running_mean.clone()  # the training points' moving average
    setup.before_eval(setup)  # optimizer.eval(): the averaged weights in the model
    setup.recalibrate(setup)
    size = TASK.batch_size
    with torch.no_grad():  # the first BatchNorm sees conv1's output: its mean over the 4 batches, at these weights
        expected = torch.stack([conv(data.train_x[i:i + size]).mean((0, 2, 3)) for i in range(0, 200, size)]).mean(0)
    assert torch.allclose(norm.running_mean, expected, atol=1e-5)
    assert not torch.allclose(norm.running_mean, trained, atol=1e-3)
    assert norm.momentum == 0.1  # torch's default restored for training


def test_dog_evaluates_its_averaged_weights_and_trains_on_its_own():
    from lrsearch.training.trainer import trial_parts

    setup, _ = trial_parts(TASK, {"optimizer": "dog"}, seed=0)
    for (x, y), _ in zip(setup.loader, range(3)):
        setup.step(x, y)
    assert setup.optimizer.param_groups[0]["reps_rel"] == 1e-4  # TinyNet has BatchNorm (dog's README)
    trained = [p.detach().clone() for p in setup.model.parameters()]
    averager = setup.after_step.__self__  # dog.PolynomialDecayAverager.step
    setup.before_eval(setup)
    assert all(torch.equal(p, a) for p, a in zip(setup.model.parameters(), averager.averaged_model.parameters()))
    assert not all(torch.equal(p, t) for p, t in zip(setup.model.parameters(), trained))
    setup.after_eval(setup)
    assert all(torch.equal(p, t) for p, t in zip(setup.model.parameters(), trained))


def published_lr(name: str) -> float:
    """The lr each library recommends, read from the installed library itself, not from lrsearch's config: the
    optimizer's own default (schedulefree, prodigyopt, dadaptation and dog recommend their defaults), and for
    mechanic, whose wrapper has none, the `mechanize(torch.optim.SGD)(..., lr=...)` line of its packaged README."""
    import importlib.metadata
    import inspect
    import re

    if name == "mechanic":
        readme = importlib.metadata.distribution("mechanic-pytorch").read_text("METADATA")  # README as its body
        return float(re.search(r"mechanize\(torch\.optim\.SGD\)\(model\.parameters\(\), lr=([0-9.]+)\)", readme).group(1))
    import dadaptation
    import dog
    import prodigyopt
    import schedulefree

    cls = {"schedulefree-sgd": schedulefree.SGDScheduleFree, "schedulefree-adamw": schedulefree.AdamWScheduleFree,
           "prodigy": prodigyopt.Prodigy, "dadapt-sgd": dadaptation.DAdaptSGD, "dadapt-adam": dadaptation.DAdaptAdam,
           "dog": dog.DoG}[name]
    return inspect.signature(cls).parameters["lr"].default


@pytest.mark.parametrize("name", SELF_TUNING)
def test_every_self_tuning_optimizer_trains_a_trial_at_its_recommended_lr(name):
    from lrsearch.training.schedules import make_schedule
    from lrsearch.training.trainer import train

    task = TASK.with_overrides(steps=4, eval_every=2)
    r = train(task, {"optimizer": name}, seed=0)
    assert r.status == "ok", r.error
    assert all(math.isfinite(row["train_loss"]) for row in r.curve) and r.train_s > 0 and r.eval_s > 0
    schedule = make_schedule(trial_settings(task, {"optimizer": name}).schedule, 4)  # the recommended lr at its peak
    assert max(schedule(i) for i in range(4)) == published_lr(name)
    assert [row["lr"] for row in r.curve] == [schedule(1), schedule(3)]


@pytest.mark.parametrize("name", SELF_TUNING)
def test_a_warm_up_from_zero_trains_too(name):
    """The resnet-adamw task warms up from lr 0, which Prodigy and D-Adaptation refuse at construction."""
    from lrsearch.training.trainer import train

    task = TASK.with_overrides(steps=4, eval_every=2, schedule={"name": "cosine", "base_lr": "$lr", "min_lr": 0.0,
                                                                "warmup_frac": 0.5})  # resnet-adamw's shape
    r = train(task, {"optimizer": name}, seed=0)
    assert r.status == "ok", r.error
    assert all(math.isfinite(row["train_loss"]) for row in r.curve)


def test_divergence_is_still_detected():
    from lrsearch.training.trainer import train

    r = train(TASK, {"optimizer": "schedulefree-sgd", "lr": 1e4}, seed=0)
    assert r.status == "diverged" and r.value == 0.0 and "loss" in r.error


def test_a_missing_library_fails_its_trial_only(monkeypatch):
    import sys

    from lrsearch.training.trainer import train

    monkeypatch.setitem(sys.modules, "prodigyopt", None)  # as if not installed
    task = TASK.with_overrides(steps=2, eval_every=2)
    r = train(task, {"optimizer": "prodigy"})
    assert r.status == "failed" and "pip install -e '.[selftuning]'" in r.error
    assert train(task, {"lr": 0.05}).status == "ok"


def test_registries_agree():
    from lrsearch.search.strategies import REGISTRY, strategy_names
    from lrsearch.training.self_tuning import BUILDERS

    strategies = [n for n in strategy_names() if getattr(REGISTRY[n], "self_tuning", False)]
    assert strategies == list(BUILDERS) == SELF_TUNING


# ------------------------------------------------------------ the strategies


@pytest.mark.parametrize("name", SELF_TUNING)
def test_a_self_tuning_strategy_makes_one_trial_whatever_its_budget_and_says_so(name):
    from lrsearch.search.strategies import Evaluation, get_strategy

    space = {"lr": {"low": 1e-3, "high": 3.0, "log": True}, "weight_decay": {"low": 1e-5, "high": 1e-2, "log": True}}
    calls = {0: [], 1: []}
    for seed, made in calls.items():
        strategy = get_strategy(name, space, seed=seed)
        evaluations = strategy.run(lambda params, report, made=made: made.append(params) or Evaluation(params, 0.5), 5)
        assert len(evaluations) == 1 and strategy.budget_unused() == 4
    assert calls[0] == calls[1] == [{"optimizer": name} | SELF_TUNING_OPTIMIZERS[name]]
    notes = strategy.space_notes()
    assert strategy.flattens_space and all(note.startswith(f"{name}: ") for note in notes)
    assert "weight_decay at the workload's defaults" in notes[0] and "budget unused: 4 of 5" in notes[1]
    assert strategy.requires[0][1] == "pip install -e '.[selftuning]'" and strategy.missing_packages() == []


def test_a_self_tuning_run_is_repeatable_with_its_seed():
    from lrsearch.search.objective import TrainingObjective
    from lrsearch.search.strategies import get_strategy

    task = TASK.with_overrides(steps=3)

    def curve(seed):
        (evaluation,) = get_strategy("prodigy", seed=seed).run(TrainingObjective(task, seed=seed), 3)
        return [(row["train_loss"], row["val_acc"]) for row in evaluation.record.curve]

    assert curve(0) == curve(0) != curve(1)


def test_a_plain_objective_refuses_self_tuning_strategies(tmp_path):
    from lrsearch.experiment.config import ConfigError, Experiment

    code = tmp_path / "quad.py"
    code.write_text(textwrap.dedent("""
        def objective(params, report):
            report(0, (params["lr"] - 0.1) ** 2)
    """))
    common = dict(name="quad", task=f"{code}:objective", budgets=[3], seeds=[0], direction="minimize",
                  space={"lr": {"low": 1e-3, "high": 1.0, "log": True}})
    with pytest.raises(ConfigError, match="prodigy, dog: .* optimizer of its own .* leave them out"):
        Experiment(strategies=["random", "prodigy", "dog"], **common)
    Experiment(strategies=["random"], **common)
    Experiment(name="t", task="smoke", strategies=["random", "prodigy", "dog"], budgets=[3], seeds=[0])


def test_the_report_says_who_beat_the_range_test_and_tpe():
    import pandas as pd

    from lrsearch.reporting.contenders import comparison, contender_lines

    inf = float("inf")
    summary = pd.DataFrame({
        "strategy": ["prodigy", "dog", "lr-range-1cycle", "optuna-tpe", "random"], "budget": 6,
        "median_best_val_acc": [0.40, 0.30, 0.35, 0.38, 0.37], "median_time_to_target_s": [5.0, inf, 8.0, 6.0, 7.0],
        "success_rate": [1.0, 0.0, 1.0, 1.0, 1.0]})
    table = comparison(summary).set_index(["contender", "reference"])
    assert set(table.index) == {("prodigy", "lr-range-1cycle"), ("prodigy", "optuna-tpe"), ("dog", "lr-range-1cycle"),
                                ("dog", "optuna-tpe")}
    assert table["beats_on_value"].to_dict() == {("prodigy", "lr-range-1cycle"): True, ("prodigy", "optuna-tpe"): True,
                                                 ("dog", "lr-range-1cycle"): False, ("dog", "optuna-tpe"): False}
    assert not table.loc[("dog", "optuna-tpe"), "beats_on_time"]  # never reached: never faster
    text = "\n".join(contender_lines(summary))
    assert "5 of the 6 trials of its budget are unused" in text
    assert "on median best value: prodigy; on median time-to-target: prodigy." in text
    # a minimised metric: lower is better
    low = summary.assign(median_best_val_acc=[0.1, 0.5, 0.3, 0.2, 0.2])
    assert comparison(low, "minimize").set_index(["contender", "reference"])["beats_on_value"].sum() == 2
