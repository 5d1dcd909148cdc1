"""Bring your own workload: a small MLP on scikit-learn's handwritten digits (8 x 8 images, 10 classes).

Two ways to hand lrsearch a problem, both runnable as they are:

    lrsearch run examples/digits.toml                  # `workload`: lrsearch trains the model you describe
    lrsearch run examples/digits-objective.toml        # `objective`: your loop trains, lrsearch times and records

`workload()` returns a ModelWorkload: a model factory, the data, the epochs and the target; lrsearch builds
the optimizer (SGD with the trial's lr, momentum, weight decay), runs the schedule, evaluates, detects
divergence, and the LR range-test strategies work on it. `objective(params, report, seed)` is a plain
function that trains however it likes and calls `report(epoch, metric, loss=...)` after each epoch; here its
metric is the validation cross-entropy, minimised (the experiment says `direction = "minimize"`).

The data come with scikit-learn (no download): 1,797 images, 1,297 to train and 500 to validate, split once
with a fixed seed. One trial takes well under a second on a CPU.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

import lrsearch


@lru_cache(maxsize=1)
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val): pixels scaled to [0, 1], a fixed 500-image validation split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    val, train = order[:500], order[500:]
    return x[train], y[train], x[val], y[val]


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def workload() -> lrsearch.ModelWorkload:
    x_train, y_train, x_val, y_val = digits()
    return lrsearch.ModelWorkload(
        name="digits-mlp", model=mlp, train_data=(x_train, y_train), val_data=(x_val, y_val),
        epochs=4, batch_size=64, eval_every=20, target=0.95,  # 95%: reached in 4 epochs at a good LR
        schedule={"name": "cosine", "base_lr": "$lr"}, default_params={"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0})


def objective(params: dict, report, seed: int = 0) -> None:
    """Train the MLP with Adam for 5 epochs; report the validation loss after each."""
    x_train, y_train, x_val, y_val = digits()
    torch.manual_seed(seed)
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, 6):
        for batch in torch.randperm(len(y_train), generator=generator).split(64):
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = F.cross_entropy(model(x_val), y_val).item()
        if report(epoch, val_loss, loss=loss.item()):
            return
