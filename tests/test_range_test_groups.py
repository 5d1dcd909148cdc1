"""The range test on several parameter groups, with gradient accumulation and mixed precision (issue 36):
each against an independent reference (a spy on the optimizer, one batch k times the size, float32,
torch-lr-finder, the same sweep without the batch the GradScaler skipped)."""

import copy

import numpy as np
import pytest
import torch

from lrsearch.search.lr_finder import RULES, model_range_test, suggest_lr, suggest_range
from lrsearch.training.errors import InputError


def _problem(seed: int = 0, n: int = 1024, d: int = 16, classes: int = 4):
    """A noisy linear classification problem and an MLP without batch statistics (no BatchNorm, no dropout)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, classes, generator=g)
    x = torch.randn(n, d, generator=g)
    y = (x @ w + 0.5 * torch.randn(n, classes, generator=g)).argmax(1)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.Tanh(), torch.nn.Linear(32, classes))
    return model, x, y


def _batches(x, y, size: int) -> list:
    """Batches in a fixed order: the same data order for every run compared."""
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def _sgd(model, lr: float = 0.1):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)


def _spy_on_step(optimizer) -> list[list[float]]:
    """Each group's LR as the optimizer steps with it, recorded apart from what the range test writes."""
    seen, step = [], optimizer.step

    def spy(*args, **kwargs):
        seen.append([g["lr"] for g in optimizer.param_groups])
        return step(*args, **kwargs)

    optimizer.step = spy
    return seen


# ------------------------------------------------------------ several parameter groups


@pytest.mark.parametrize("built", ["lrs", "lr_mult"])
def test_two_groups_keep_their_ratio_over_the_sweep_and_in_every_suggestion(built):
    model, x, y = _problem()
    first, second = model[0].parameters(), model[2].parameters()
    # ratio: the second group's LR over the first's; reference: the group whose LR is the sweep's `lr`
    if built == "lrs":  # a user's discriminative LRs: the second group at a tenth of the first's
        groups = [{"params": first, "lr": 0.1}, {"params": second, "lr": 0.01}]
        ratio, reference, mults = 0.1, 0, (1.0, 0.1)
    else:  # lrsearch's finetune groups: the backbone at lr_mult 0.1, the head at 1
        groups = [{"params": first, "lr": 0.1, "lr_mult": 0.1}, {"params": second, "lr": 0.1, "lr_mult": 1.0}]
        ratio, reference, mults = 10.0, 1, (0.1, 1.0)
    optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    spied = _spy_on_step(optimizer)
    val = _batches(x[:256], y[:256], 128)
    test = model_range_test(model, optimizer, _batches(x, y, 16), 1e-4, 100.0, steps=64, val_loader=val, n_evals=16)
    table, seen = test.table, np.array(spied)
    assert len(table) > 20 and table["train_loss"].max() > 2 * table["train_loss"].min()  # it falls, then rises
    assert list(table.columns) == ["step", "lr", "lr_group0", "lr_group1", "train_loss", "smoothed_loss", "val_acc"]
    # the columns are the LRs the optimizer stepped with, and the ratio holds at every step
    assert np.array_equal(seen[:len(table)], table[["lr_group0", "lr_group1"]].to_numpy())
    assert np.allclose(seen[:, 1] / seen[:, 0], ratio, rtol=1e-12, atol=0)
    assert np.array_equal(table["lr"], table[f"lr_group{reference}"])
    assert test.lr_mults == pytest.approx(mults, rel=1e-12)
    # each rule read on a group's own LR column gives that group's suggestion, at the same ratio
    suggestions = test.suggestions()
    assert set(suggestions["rule"]) == {*RULES, "smith-acc", "smith-loss"}
    found = suggestions.dropna(subset=["lr"])
    assert set(found["rule"]) >= {"valley", "steep", "minimum", "smith-loss"}
    for (rule, bound), rows in found.groupby(["rule", "bound"]):
        lrs = rows.sort_values("group")["lr"].to_numpy()
        assert lrs[1] / lrs[0] == pytest.approx(ratio, rel=1e-12), (rule, bound)
        for group, lr in enumerate(lrs):
            column = table[f"lr_group{group}"]
            if rule.startswith("smith-"):
                metric = rule.removeprefix("smith-")
                curve = test.evaluations() if metric == "acc" else table
                own = suggest_range(curve[f"lr_group{group}"], curve["val_acc" if metric == "acc" else "train_loss"],
                                    metric)[0 if bound == "base_lr" else 1]
            else:
                own = suggest_lr(column, table["train_loss"], rule)
            assert lr == pytest.approx(own, rel=1e-12), (rule, bound, group)
    assert test.group_lrs(test.suggest_lr("valley")) == pytest.approx(
        found[found["rule"] == "valley"].sort_values("group")["lr"].tolist(), rel=1e-12)


def test_a_group_built_at_lr_zero_stays_frozen():
    model, x, y = _problem()
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                                 {"params": model[2].parameters(), "lr": 0.0}], lr=0.1)
    head = copy.deepcopy(model[2].state_dict())
    test = model_range_test(model, optimizer, _batches(x, y, 32), 1e-3, 1.0, steps=10, restore=False)
    assert (test.table["lr_group1"] == 0).all() and (test.table["lr_group0"] > 0).all()
    assert all(torch.equal(v, model[2].state_dict()[k]) for k, v in head.items())


# ------------------------------------------------------------ gradient accumulation


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("k, size", [(2, 16), (4, 8)])
def test_k_batches_of_b_are_one_batch_of_k_times_b(dtype, rtol, k, size):
    # The same gradients summed in another order: float64 agrees to ~1e-13 and float32 to ~2e-5 after 40 steps
    # up to lr 10 (measured over 3 seeds), where the growing LR amplifies the rounding.
    model, x, y = _problem()
    model, x = model.to(dtype), x.to(dtype)
    small, large = copy.deepcopy(model), copy.deepcopy(model)
    accumulated = model_range_test(small, _sgd(small), _batches(x, y, size), 1e-3, 10.0, steps=40,
                                   accumulation_steps=k, diverge_factor=1e9)
    one_batch = model_range_test(large, _sgd(large), _batches(x, y, k * size), 1e-3, 10.0, steps=40,
                                 diverge_factor=1e9)
    assert len(accumulated.table) == len(one_batch.table) == 40 and accumulated.steps_per_epoch == len(x) // (k * size)
    assert np.array_equal(accumulated.table["lr"], one_batch.table["lr"])
    np.testing.assert_allclose(accumulated.table["train_loss"], one_batch.table["train_loss"], rtol=rtol)
    assert one_batch.table["train_loss"].max() > 2 * one_batch.table["train_loss"].min()  # the sweep went somewhere


def test_the_default_length_is_one_pass_over_the_loader_in_sweep_steps():
    model, x, y = _problem()
    test = model_range_test(model, _sgd(model), _batches(x, y, 64), 1e-3, 0.1, accumulation_steps=4)
    assert len(test.table) == 16 // 4 and test.steps_per_epoch == 4


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_torch_lr_finder_gives_the_same_lrs_and_losses(k, mode):
    lr_finder = pytest.importorskip("torch_lr_finder")
    from torch.utils.data import DataLoader, TensorDataset

    model, x, y = _problem()
    data = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)  # one data order for both
    theirs_model, ours_model = copy.deepcopy(model), copy.deepcopy(model)
    finder = lr_finder.LRFinder(theirs_model, _sgd(theirs_model), torch.nn.CrossEntropyLoss(), device="cpu")
    # smooth_f=0: their raw losses; diverge_th high: both run all 50 steps (their stop rule is not ours)
    finder.range_test(data, start_lr=1e-3, end_lr=3.0, num_iter=50, step_mode=mode, smooth_f=0, diverge_th=1e9,
                      accumulation_steps=k)
    ours = model_range_test(ours_model, _sgd(ours_model), data, 1e-3, 3.0, steps=50, mode=mode, diverge_factor=1e9,
                            accumulation_steps=k)
    assert len(finder.history["lr"]) == len(ours.table) == 50
    np.testing.assert_allclose(ours.table["lr"], finder.history["lr"], rtol=1e-12)
    # they add the k float32 losses as tensors, we as Python floats: a few float32 ulps apart
    np.testing.assert_allclose(ours.table["train_loss"], finder.history["loss"], rtol=1e-6)


# ------------------------------------------------------------ mixed precision


@pytest.mark.parametrize("seed", range(3))
def test_bf16_autocast_on_the_cpu_stays_near_float32(seed):
    model, x, y = _problem(seed)
    runs = {}
    for dtype in (None, torch.bfloat16):
        copied = copy.deepcopy(model)
        runs[dtype] = model_range_test(copied, _sgd(copied), _batches(x, y, 32), 1e-3, 10.0, steps=32,
                                       autocast_dtype=dtype, diverge_factor=1e9)
    fp32, bf16 = (runs[d].table for d in (None, torch.bfloat16))
    rel = np.abs(bf16["train_loss"] - fp32["train_loss"]) / fp32["train_loss"]
    assert rel[0] > 0  # autocast did run in bfloat16
    # bfloat16 keeps 8 significant bits: rounding the first step's logits moves its loss by under 2^-8 (0.4%;
    # measured at most 0.023% over 20 seeds)
    assert rel[0] < 2**-8
    # the errors compound along the sweep: up to the float32 curve's smoothed minimum each loss stays within 3%
    # (measured at most 1.6% over 20 seeds); past it the loss blows up, and bf16 with it, at its own pace
    bottom = int(np.argmin(fp32["smoothed_loss"])) + 1
    assert bottom > 16 and rel[:bottom].max() < 0.03
    # and Smith's loss range is the same sweep step (it was in all 20 seeds)
    assert runs[torch.bfloat16].suggest_range("loss") == runs[None].suggest_range("loss")


class _InfGradient(torch.autograd.Function):
    """Identity forward; backward makes the gradient inf where `poison` is set (a float16 overflow, on demand)."""

    @staticmethod
    def forward(ctx, x, poison):
        ctx.poison = poison
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return (grad * float("inf") if ctx.poison else grad), None


class _Poisoned(torch.nn.Module):
    """`inner`, with inf gradients on the forward calls numbered in `calls` (1, 2, ...)."""

    def __init__(self, inner: torch.nn.Module, calls):
        super().__init__()
        self.inner, self.calls, self.n = inner, calls, 0

    def forward(self, x):
        self.n += 1
        return _InfGradient.apply(self.inner(x), self.n in self.calls)


@pytest.mark.parametrize("k", [1, 2])
def test_a_step_the_grad_scaler_skips_is_no_sweep_point(k):
    model, x, y = _problem()
    data = _batches(x, y, 32)  # 32 batches: 12 steps of k plus the skipped one, without cycling the loader
    poisoned_batch = 5  # the 5th batch read has inf gradients
    skipping = _Poisoned(copy.deepcopy(model), {poisoned_batch})
    test = model_range_test(skipping, _sgd(skipping), data, 1e-3, 3.0, steps=12, autocast_dtype=torch.float16,
                            diverge_factor=1e9, accumulation_steps=k)
    # the reference: the same sweep on the data without that step's k batches
    first = (poisoned_batch - 1) // k * k
    clean = copy.deepcopy(model)
    reference = model_range_test(clean, _sgd(clean), data[:first] + data[first + k:], 1e-3, 3.0, steps=12,
                                 autocast_dtype=torch.float16, diverge_factor=1e9, accumulation_steps=k)
    assert test.skipped_steps == 1 and reference.skipped_steps == 0 and test.stop_reason == "completed"
    assert test.table["step"].tolist() == list(range(1, 13))
    assert np.array_equal(test.table["lr"], reference.table["lr"])
    # the scale halved at the skip: a power of two, so the unscaled gradients are the same
    np.testing.assert_allclose(test.table["train_loss"], reference.table["train_loss"], rtol=1e-6)


def test_gradients_inf_at_every_scale_stop_the_test_and_a_given_scaler_is_restored():
    model, x, y = _problem()
    always = _Poisoned(model, range(1, 10**6))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    test = model_range_test(always, _sgd(always), _batches(x, y, 32), 1e-3, 3.0, steps=12,
                            autocast_dtype=torch.float16, grad_scaler=scaler)
    # the given scaler halves from 2^10 to 2^-1 in 11 skips, then the test stops (the default one starts at 2^16)
    assert test.status == "diverged" and "inf or nan even at a loss scale below 1" in test.stop_reason
    assert test.skipped_steps == 11 and test.table.empty
    assert scaler.get_scale() == 2.0**10


# ------------------------------------------------------------ arguments


@pytest.mark.parametrize("argument, value", [
    ("accumulation_steps", 0), ("accumulation_steps", 2.5), ("accumulation_steps", True), ("accumulation_steps", "2"),
    ("steps", 0), ("steps", 10.0), ("n_evals", 0), ("diverge_factor", 1.0), ("beta", 1.0), ("beta", -0.1),
    ("autocast_dtype", torch.float64), ("grad_scaler", "yes"),
])
def test_a_bad_argument_is_one_error_naming_it(argument, value):
    model, x, y = _problem()
    with pytest.raises(InputError, match=rf"range test: {argument}=") as err:
        model_range_test(model, _sgd(model), _batches(x, y, 32), **{argument: value})
    assert "expected" in str(err.value)


def test_a_loader_shorter_than_one_accumulation_needs_steps():
    model, x, y = _problem(n=64)
    with pytest.raises(InputError, match="2 batches for accumulation_steps=4; give steps"):
        model_range_test(model, _sgd(model), _batches(x, y, 32), accumulation_steps=4)
    test = model_range_test(model, _sgd(model), _batches(x, y, 32), 1e-3, 0.1, steps=3, accumulation_steps=4)
    assert len(test.table) == 3  # cycled: 12 batches from 2


# ------------------------------------------------------------ the finetune workload's range-test strategies


@pytest.fixture
def ten_classes(monkeypatch, tmp_path):
    """Random CIFAR-shaped images of 10 classes (finetune pretrains on 0-4 and fine-tunes on 5-9), the pretrained
    backbone cached under tmp_path."""
    import lrsearch.training.trainer as trainer
    from lrsearch.training.data import CIFAR10

    rng = np.random.default_rng(0)
    data = CIFAR10(rng.integers(0, 256, (2000, 32, 32, 3), dtype=np.uint8), np.arange(2000) % 10,
                   rng.integers(0, 256, (400, 32, 32, 3), dtype=np.uint8), np.arange(400) % 10,
                   tuple("abcdefghij"), "ten-classes", "python")
    monkeypatch.setattr(trainer, "load_cifar10", lambda source=None: data)
    monkeypatch.setenv("LRSEARCH_PRETRAINED", str(tmp_path / "pretrained"))
    source = tmp_path / "ten-classes"  # a path that exists: the pretrained weights' cache key names it
    source.write_text("stand-in")
    trainer._prepare_data.cache_clear()
    yield str(source)
    trainer._prepare_data.cache_clear()


def test_the_finetune_range_test_sweeps_backbone_and_head_at_backbone_lr_mult(ten_classes, monkeypatch):
    import lrsearch.training.trainer as trainer
    from lrsearch.search.objective import TrainingObjective
    from lrsearch.search.strategies import get_strategy
    from lrsearch.training.tasks import get_task

    torch.set_num_threads(1)
    pretrain = {"classes": (0, 1, 2, 3, 4), "train_subset": None, "val_size": 100, "test_subset": None, "epochs": 1,
                "eval_every": 5, "lr": 0.05, "augment": False, "seed": 0}
    task = get_task("finetune", train_subset=None, val_size=200, test_subset=None, epochs=1, eval_every=4,
                    pretrain=pretrain)
    built, make_optimizer = [], trainer.make_optimizer

    def spy(task, groups, *args, **kwargs):  # every optimizer the range test and the trial that follows build
        built.append([(g["lr_mult"], len(g["params"])) for g in groups])
        return make_optimizer(task, groups, *args, **kwargs)

    monkeypatch.setattr(trainer, "make_optimizer", spy)
    objective = TrainingObjective(task, seed=0, device="cpu", data_source=ten_classes)
    strategy = get_strategy("lr-range-fixed", {"lr": {"low": 1e-3, "high": 3.0, "log": True}})
    test, final = strategy.run(objective, n_trials=2)
    assert test.extra["kind"] == "range_test" and final.status == "ok"
    # two groups: the pretrained backbone at backbone_lr_mult (0.1) x the head's LR, the head at `lr`
    assert task.backbone_lr_mult == 0.1 and test.extra["lr_mults"] == [0.1, 1.0]
    table = test.record.table
    assert np.allclose(table["lr_group0"] / table["lr_group1"], 0.1) and np.array_equal(table["lr"], table["lr_group1"])
    note = test.extra["suggestion"]
    assert note["group_lrs"]["lr"] == pytest.approx([0.1 * note["lr"], note["lr"]])
    # the trial that follows trains with the same groups at the same ratio (pretraining built the first optimizer)
    assert built[-2] == built[-1] and [mult for mult, _ in built[-1]] == [0.1, 1.0]
