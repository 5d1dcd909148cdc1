"""Nothing about the data is hard-coded: the model's head has as many outputs as the data has classes, and an
epoch of the range test is the prepared training split's, not an assumed 50,000 images."""

import numpy as np
import pytest
import torch

import lrsearch.training.trainer as trainer
from lrsearch.training.data import CIFAR10
from lrsearch.training.tasks import get_task


@pytest.fixture
def four_classes(monkeypatch):
    """A 4-class data set of 600 training and 200 test images in CIFAR-10's shape, under its own source name."""
    rng = np.random.default_rng(0)
    data = CIFAR10(rng.integers(0, 256, (600, 32, 32, 3), dtype=np.uint8), np.arange(600) % 4,
                   rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8), np.arange(200) % 4,
                   ("a", "b", "c", "d"), "four-classes", "python")
    monkeypatch.setattr(trainer, "load_cifar10", lambda source=None: data)
    trainer._prepare_data.cache_clear()
    yield "four-classes"
    trainer._prepare_data.cache_clear()


def test_the_heads_outputs_follow_the_datas_classes(four_classes):
    torch.set_num_threads(1)
    task = get_task("smoke", epochs=None, steps=4, eval_every=2, train_subset=None, val_size=100, test_subset=None)
    result, setup = trainer._train(task, {"lr": 0.05}, 0, torch.device("cpu"), data_source=four_classes)
    assert result.status == "ok", result.error
    assert setup.model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    assert trainer.prepare_data(task, torch.device("cpu"), four_classes).n_classes == 4


def test_a_range_test_epoch_is_the_prepared_training_split(four_classes):
    from lrsearch.search.lr_finder import task_range_test

    torch.set_num_threads(1)
    task = get_task("smoke", train_subset=None, val_size=100, test_subset=None)  # 500 training images: 5 batches
    assert trainer.steps_per_epoch(task, "cpu", four_classes) == 5
    test = task_range_test(task, 1e-3, 1.0, epochs=2, mode="exp", n_evals=2, device="cpu", data_source=four_classes)
    assert test.status != "failed", test.stop_reason
    assert test.table["step"].max() <= 10
