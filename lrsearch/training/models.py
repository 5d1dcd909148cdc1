"""CIFAR-10 networks, chosen by name with `build_model(name, ...)`.

Every model offers `param_groups(weight_decay)`: torch optimizer groups carrying
`lr_mult` (read by `schedules.FunctionLR`), their own weight decay and, optionally,
`train_epochs` (the group trains that many epochs, then stays frozen). Every model's last
layer is `model.head`: fine-tuning gives it fresh weights, and `with_backbone_lr_mult` sets
the other parameters' LR apart from it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class _Groups:
    def param_groups(self, weight_decay: float) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr_mult": 1.0, "weight_decay": weight_decay}]


# ---------------------------------------------------------------- the CLR paper's network


def _caffe_fill(layers: tuple) -> None:
    """Caffe's fillers of the CIFAR-10 prototxts: gaussian weights (the layer's std), constant 0 biases."""
    for layer, std in layers:
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)


def _caffe_groups(spec: list[tuple], weight_decay: float) -> list[dict]:
    """Caffe's per-blob `param { lr_mult decay_mult }` as torch groups: (parameter, lr_mult, decay_mult)."""
    return [{"params": [p], "lr_mult": float(lr_mult), "weight_decay": weight_decay * decay_mult}
            for p, lr_mult, decay_mult in spec]


class WithinChannelLRN(nn.Module):
    """Caffe's LRN with norm_region WITHIN_CHANNEL: x / (1 + alpha * mean_{n x n}(x^2)) ** beta.

    torch's nn.LocalResponseNorm normalises ACROSS channels, so it does not apply. Caffe
    builds this from an average pool of x^2 over an n x n window padded by (n-1)/2, whose
    divisor counts the padding (always n*n), as count_include_pad=True does here.
    """

    def __init__(self, local_size: int = 3, alpha: float = 5e-5, beta: float = 0.75):
        super().__init__()
        self.local_size, self.alpha, self.beta = local_size, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean_sq = F.avg_pool2d(x * x, self.local_size, stride=1, padding=(self.local_size - 1) // 2, count_include_pad=True)
        return x * (1 + self.alpha * mean_sq).pow(-self.beta)


class CaffeCifar10Full(_Groups, nn.Module):
    """Caffe's examples/cifar10/cifar10_full_train_test.prototxt, the CLR paper's CIFAR-10 net.

    conv1 5x5x32 p2 -> max-pool 3/2 -> ReLU -> LRN; conv2 5x5x32 p2 -> ReLU -> avg-pool 3/2 -> LRN;
    conv3 5x5x64 p2 -> ReLU -> avg-pool 3/2; ip1 -> 10. Caffe rounds pooled sizes up
    (32 -> 16 -> 8 -> 4), so pooling uses ceil_mode=True; with pad 0 torch's average divisor
    for a window clipped at the border then matches Caffe's (the in-bounds count).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)
        self.ip1 = nn.Linear(64 * 4 * 4, num_classes)
        self.norm1, self.norm2 = WithinChannelLRN(), WithinChannelLRN()
        _caffe_fill(((self.conv1, 1e-4), (self.conv2, 0.01), (self.conv3, 0.01), (self.ip1, 0.01)))

    @property
    def head(self) -> nn.Linear:
        return self.ip1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(F.relu(F.max_pool2d(self.conv1(x), 3, 2, ceil_mode=True)))
        x = self.norm2(F.avg_pool2d(F.relu(self.conv2(x)), 3, 2, ceil_mode=True))
        x = F.avg_pool2d(F.relu(self.conv3(x)), 3, 2, ceil_mode=True)
        return self.ip1(x.flatten(1))

    def param_groups(self, weight_decay: float) -> list[dict]:
        # The prototxt's param { lr_mult decay_mult }: conv1/conv2 bias lr_mult 2; conv3 defaults;
        # ip1 weight decay_mult 250, ip1 bias lr_mult 2 and decay_mult 0.
        spec = [
            (self.conv1.weight, 1, 1), (self.conv1.bias, 2, 1),
            (self.conv2.weight, 1, 1), (self.conv2.bias, 2, 1),
            (self.conv3.weight, 1, 1), (self.conv3.bias, 1, 1),
            (self.ip1.weight, 1, 250), (self.ip1.bias, 2, 0),
        ]
        return _caffe_groups(spec, weight_decay)


class CaffeCifar10FullSigmoidBN(_Groups, nn.Module):
    """Caffe's examples/cifar10/cifar10_full_sigmoid_train_test_bn.prototxt, the CLR paper's Sec. 4.1.2 net:
    the "full" net with sigmoid units and batch normalisation instead of ReLU and LRN.

    conv1 5x5x32 p2 -> max-pool 3/2 -> BN -> sigmoid; conv2 5x5x32 p2 -> BN -> sigmoid -> avg-pool 3/2;
    conv3 5x5x64 p2 -> BN -> sigmoid -> avg-pool 3/2; ip1 -> 10. Its BN layers learn a scale (filler 1)
    and a shift (filler 0.001), with lr_mult 1 and no weight decay.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(32), nn.BatchNorm2d(32), nn.BatchNorm2d(64)
        self.ip1 = nn.Linear(64 * 4 * 4, num_classes)
        _caffe_fill(((self.conv1, 1e-4), (self.conv2, 0.01), (self.conv3, 0.01), (self.ip1, 0.01)))
        for bn in (self.bn1, self.bn2, self.bn3):
            nn.init.ones_(bn.weight)
            nn.init.constant_(bn.bias, 0.001)

    @property
    def head(self) -> nn.Linear:
        return self.ip1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.bn1(F.max_pool2d(self.conv1(x), 3, 2, ceil_mode=True)))
        x = F.avg_pool2d(torch.sigmoid(self.bn2(self.conv2(x))), 3, 2, ceil_mode=True)
        x = F.avg_pool2d(torch.sigmoid(self.bn3(self.conv3(x))), 3, 2, ceil_mode=True)
        return self.ip1(x.flatten(1))

    def param_groups(self, weight_decay: float) -> list[dict]:
        # The prototxt's param { lr_mult decay_mult }: conv1/conv2 bias lr_mult 2; BN scale and shift
        # lr_mult 1 (1.00001) decay_mult 0; ip1 weight decay_mult 250, ip1 bias lr_mult 0.2 decay_mult 0.
        spec = [
            (self.conv1.weight, 1, 1), (self.conv1.bias, 2, 1),
            (self.conv2.weight, 1, 1), (self.conv2.bias, 2, 1),
            (self.conv3.weight, 1, 1), (self.conv3.bias, 1, 1),
            *[(p, 1, 0) for bn in (self.bn1, self.bn2, self.bn3) for p in (bn.weight, bn.bias)],
            (self.ip1.weight, 1, 250), (self.ip1.bias, 0.2, 0),
        ]
        return _caffe_groups(spec, weight_decay)


# ---------------------------------------------------------------- fast net (airbench94)


def _identity_init(conv: nn.Conv2d) -> None:
    """Default init, then the first `in_channels` filters set to the identity (airbench: an implicit
    residual connection in a net without residuals)."""
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:conv.in_channels])


def _scale_free_batch_norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    """BatchNorm with its scale frozen at 1 (only the shift learns) and eps 1e-12, as airbench94's.
    `momentum` is torch's (airbench writes 0.6 for the running statistics' decay, torch's 0.4)."""
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=momentum)
    norm.weight.requires_grad_(False)
    return norm


class _ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int, bn_momentum: float):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm1 = _scale_free_batch_norm(c_out, bn_momentum)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _scale_free_batch_norm(c_out, bn_momentum)
        _identity_init(self.conv1)
        _identity_init(self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class FastNet(nn.Module):
    """Keller Jordan's airbench94 network (94.01% on CIFAR-10 in 9.9 epochs), written from its
    published description and hyperparameters:

    - a 2x2 patch-whitening first conv, frozen: the eigenvectors of the training patches'
      covariance scaled by 1/sqrt(eigenvalue + 5e-4), plus their negatives (24 filters); its
      bias starts at 0 and trains for `whiten_bias_epochs` epochs only;
    - three groups conv-maxpool-BN-GELU-conv-BN-GELU of widths 64/256/256, convolutions
      identity-initialised, BatchNorm without a learned scale (eps 1e-12, torch momentum 0.4);
    - a global max-pool, a linear head without bias, logits scaled by 1/9.

    `param_groups` gives the BatchNorm shifts `bias_scaler` (64) times the LR. The whitening is
    fitted on `whiten_samples` training images drawn at random (torch's generator, seeded by
    the trainer), not the first ones: a class-sorted copy would fit it on one class.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256),
                 whiten_images: torch.Tensor | None = None, whiten_samples: int = 5000, bn_momentum: float = 0.4,
                 bias_scaler: float = 64.0, whiten_bias_epochs: float = 3):
        super().__init__()
        self.bias_scaler, self.whiten_bias_epochs = bias_scaler, whiten_bias_epochs
        self.whiten = nn.Conv2d(3, 24, 2, bias=True)
        nn.init.zeros_(self.whiten.bias)
        self.groups = nn.Sequential(_ConvGroup(24, widths[0], bn_momentum), _ConvGroup(widths[0], widths[1], bn_momentum),
                                    _ConvGroup(widths[1], widths[2], bn_momentum))
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        if whiten_images is not None:
            sample = torch.randperm(len(whiten_images), device=whiten_images.device)[:whiten_samples]
            self.init_whitening(whiten_images[sample])
        self.whiten.weight.requires_grad_(False)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # N, C, 31, 31, 2, 2
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
        patches = patches - patches.mean(0)
        eigvals, eigvecs = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigvecs.T / torch.sqrt(eigvals + eps)[:, None]).reshape(12, 3, 2, 2)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(x)))
        return self.head(F.adaptive_max_pool2d(x, 1).flatten(1)) / 9.0

    def param_groups(self, weight_decay: float) -> list[dict]:
        norm_shifts = [m.bias for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        special = {id(p) for p in norm_shifts} | {id(self.whiten.bias)}
        others = [p for p in self.parameters() if p.requires_grad and id(p) not in special]
        return [
            {"params": others, "lr_mult": 1.0, "weight_decay": weight_decay},
            {"params": norm_shifts, "lr_mult": self.bias_scaler, "weight_decay": weight_decay},
            # `train_epochs`: the trainer freezes the group after that many epochs (FunctionLR's frozen_from)
            {"params": [self.whiten.bias], "lr_mult": 1.0, "weight_decay": weight_decay,
             "train_epochs": self.whiten_bias_epochs},
        ]


# ---------------------------------------------------------------- tiny net for tests and CPU presets


class TinyNet(_Groups, nn.Module):
    """Three conv-BN-ReLU stages (16/32/64 channels) and a linear head: ~25k parameters."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in ((3, 16), (16, 32), (32, 64)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class _BasicBlock(nn.Module):
    """He et al. 2016's basic block: conv-BN-ReLU-conv-BN plus the shortcut, then ReLU; a strided block's
    shortcut is a 1x1 convolution with BN (their option B)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class ResNet8(nn.Module):
    """A CIFAR ResNet-8 (He et al. 2016, Sec. 4.2's 6n+2 layers with n=1), made cheap for a CPU: a 3x3 stem
    (16 channels) and a 2x2 max-pool to 16x16, one basic block per stage at 16, 32 and 64 channels (16x16,
    8x8, 4x4), global average pool, linear head: ~78k parameters.

    `param_groups` decays the convolution and linear weights only, not BatchNorm's scales and shifts nor the
    head's bias (nanoGPT's `configure_optimizers` rule: decay tensors of 2 dimensions or more), as AdamW
    recipes do."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(), nn.MaxPool2d(2))
        self.blocks = nn.Sequential(_BasicBlock(widths[0], widths[0], 1), _BasicBlock(widths[0], widths[1], 2),
                                    _BasicBlock(widths[1], widths[2], 2))
        self.head = nn.Linear(widths[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))

    def param_groups(self, weight_decay: float) -> list[dict]:
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.dim() >= 2], "lr_mult": 1.0, "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2], "lr_mult": 1.0, "weight_decay": 0.0}]


class PlainNet(_Groups, nn.Module):
    """Three conv-ReLU-maxpool stages (16/32/64 channels, biases, torch's default init) and a linear head on the
    flattened 4x4 maps: TinyNet without its BatchNorm, ~34k parameters. Without BatchNorm nothing rescales the
    activations, so the loss blows up within a few steps once the LR passes the edge of stability."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((3, *widths[:-1]), widths):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1] * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


MODELS = {"caffe_cifar10_full": CaffeCifar10Full, "caffe_cifar10_full_sigmoid_bn": CaffeCifar10FullSigmoidBN,
          "fast": FastNet, "tiny": TinyNet, "resnet8": ResNet8, "plain": PlainNet}


def build_model(name: str, num_classes: int = 10, train_images: torch.Tensor | None = None) -> nn.Module:
    """A fresh model by name; `train_images` (normalised, N x C x H x W) initialises the fast
    net's whitening layer (from a random sample: seed torch's generator first)."""
    if name not in MODELS:
        raise ValueError(f"model {name!r}: expected one of {', '.join(MODELS)}")
    if name == "fast":
        return FastNet(num_classes, whiten_images=train_images)
    return MODELS[name](num_classes)


def count_parameters(model: nn.Module) -> int:
    return int(sum(np.prod(p.shape) for p in model.parameters()))


def head_parameter_names(model: nn.Module) -> set[str]:
    """The names (as in `model.state_dict()`) of the head's parameters."""
    head = {id(p) for p in model.head.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in head}


def with_backbone_lr_mult(model: nn.Module, groups: list[dict], mult: float) -> list[dict]:
    """`groups` (from `model.param_groups`) with every parameter outside `model.head` at `mult` times its
    group's LR, the head's unchanged (fastai's discriminative LRs, two layer groups). Each group splits in two
    where it holds both; the other keys (weight decay, train_epochs) stay with both halves."""
    if mult == 1.0:
        return groups
    head = {id(p) for p in model.head.parameters()}
    split = []
    for group in groups:
        for in_head, lr_mult in ((False, group["lr_mult"] * mult), (True, group["lr_mult"])):
            params = [p for p in group["params"] if (id(p) in head) == in_head]
            if params:
                split.append({**group, "params": params, "lr_mult": lr_mult})
    return split
