import pytest
import torch
import torch.nn.functional as F

from lrsearch.training.models import (
    MODELS,
    CaffeCifar10Full,
    FastNet,
    PlainNet,
    ResNet8,
    TinyNet,
    WithinChannelLRN,
    build_model,
    count_parameters,
    head_parameter_names,
    with_backbone_lr_mult,
)
from lrsearch.training.tasks import MODEL_NAMES


def test_caffe_net_shapes_and_parameter_count():
    net = CaffeCifar10Full()
    x = torch.randn(2, 3, 32, 32)
    # Caffe rounds pooled sizes up: 32 -> 16 -> 8 -> 4
    p1 = F.max_pool2d(net.conv1(x), 3, 2, ceil_mode=True)
    assert p1.shape == (2, 32, 16, 16)
    assert net(x).shape == (2, 10)
    # conv1 5*5*3*32+32, conv2 5*5*32*32+32, conv3 5*5*32*64+64, ip1 1024*10+10 (Caffe's own count)
    assert count_parameters(net) == 2432 + 25632 + 51264 + 10250 == 89578


def test_caffe_net_init_and_multipliers_follow_the_prototxt():
    torch.manual_seed(0)
    net = CaffeCifar10Full()
    assert net.conv1.weight.std().item() == pytest.approx(1e-4, rel=0.1)
    for layer in (net.conv2, net.conv3, net.ip1):
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert all(torch.all(m.bias == 0) for m in (net.conv1, net.conv2, net.conv3, net.ip1))
    groups = {id(g["params"][0]): (g["lr_mult"], g["weight_decay"]) for g in net.param_groups(0.004)}
    assert groups[id(net.conv1.bias)] == (2.0, 0.004) and groups[id(net.conv2.bias)] == (2.0, 0.004)
    assert groups[id(net.conv3.weight)] == (1.0, 0.004) and groups[id(net.conv3.bias)] == (1.0, 0.004)
    assert groups[id(net.ip1.weight)] == (1.0, pytest.approx(0.004 * 250))
    assert groups[id(net.ip1.bias)] == (2.0, 0.0)


def test_within_channel_lrn_matches_caffe_formula_by_loops():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 5, 5) * 30
    lrn = WithinChannelLRN(local_size=3, alpha=5e-5, beta=0.75)
    y = lrn(x)
    padded = F.pad(x, (1, 1, 1, 1))
    for c in range(2):
        for i in range(5):
            for j in range(5):
                window = padded[0, c, i:i + 3, j:j + 3]
                scale = 1 + 5e-5 / 9 * (window**2).sum()  # Caffe: alpha / n^2 * sum over the n x n window
                assert y[0, c, i, j].item() == pytest.approx((x[0, c, i, j] / scale**0.75).item(), rel=1e-5)


def test_ceil_mode_average_pool_divides_like_caffe():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = F.avg_pool2d(x, 3, 2, ceil_mode=True)
    assert out.shape == (1, 1, 2, 2)
    # Caffe's bottom-right window is clipped to rows/cols 2..3: the mean of those 4 values
    assert out[0, 0, 1, 1].item() == pytest.approx(x[0, 0, 2:4, 2:4].mean().item())


def test_fast_net_whitening_layer_whitens_patches():
    torch.manual_seed(0)
    images = torch.randn(200, 3, 32, 32) @ torch.randn(32, 32) * 0.3  # correlated pixels
    net = FastNet(whiten_images=images)
    assert not net.whiten.weight.requires_grad and net.whiten.bias.requires_grad
    with torch.no_grad():
        out = F.conv2d(images, net.whiten.weight[:12])  # the 12 eigen-filters, without the bias
    feats = out.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(feats.T)
    assert torch.allclose(cov, torch.eye(12), atol=0.05)
    assert net(images[:4]).shape == (4, 10)


def test_tiny_net_is_small_and_models_by_name():
    assert count_parameters(TinyNet()) < 30_000
    assert isinstance(build_model("tiny"), TinyNet)
    with pytest.raises(ValueError, match="model 'resnet'"):
        build_model("resnet")


def test_fast_net_is_airbench94s():
    net = FastNet()
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 6
    assert all(not n.weight.requires_grad and n.bias.requires_grad and n.eps == 1e-12 and n.momentum == 0.4
               for n in norms)
    assert torch.all(net.whiten.bias == 0)
    # identity initialisation: a 3x3 conv whose first in_channels filters are the identity
    group = net.groups[1]
    x, y = torch.randn(2, group.conv1.in_channels, 8, 8), torch.randn(2, group.conv2.in_channels, 8, 8)
    with torch.no_grad():
        assert torch.allclose(group.conv2(y), y, atol=1e-6)
        assert torch.allclose(group.conv1(x)[:, :group.conv1.in_channels], x, atol=1e-6)
    groups = net.param_groups(weight_decay=0.002)
    by_mult = {g["lr_mult"]: g for g in groups if "train_epochs" not in g}
    assert {id(p) for p in by_mult[64.0]["params"]} == {id(n.bias) for n in norms}
    (whiten_group,) = [g for g in groups if "train_epochs" in g]
    assert whiten_group["params"] == [net.whiten.bias] and whiten_group["train_epochs"] == 3
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(trainable)


def test_fast_net_whitening_is_fitted_on_a_random_sample_not_the_first_images():
    """A class-sorted copy puts one class first: fitting on the first images whitens that class only."""
    torch.manual_seed(0)
    mixing = torch.randn(32, 32)
    images = torch.cat([torch.randn(300, 3, 32, 32) * 0.2, torch.randn(300, 3, 32, 32) @ mixing * 0.3])

    def whitened_cov(net):
        with torch.no_grad():
            out = F.conv2d(images, net.whiten.weight[:12])
        return torch.cov(out.permute(0, 2, 3, 1).reshape(-1, 12).T)

    torch.manual_seed(1)
    sampled = FastNet(whiten_images=images, whiten_samples=300)
    first = FastNet(whiten_images=images[:300], whiten_samples=300)
    eye = torch.eye(12)
    assert (whitened_cov(sampled) - eye).abs().max() < 0.3
    assert (whitened_cov(first) - eye).abs().max() > 3


def test_every_model_has_a_head_for_k_classes_and_the_tasks_know_every_model():
    assert tuple(MODELS) == MODEL_NAMES
    x = torch.randn(2, 3, 32, 32)
    for name in MODELS:
        model = build_model(name, num_classes=5, train_images=x)
        assert isinstance(model.head, torch.nn.Linear) and model.head.out_features == 5, name
        assert model(x).shape == (2, 5), name
        assert head_parameter_names(model) <= {n for n, _ in model.named_parameters()}


def test_resnet8_is_residual_with_batch_norm_and_decays_weights_only():
    net = ResNet8()
    assert 50_000 < count_parameters(net) < 100_000
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 1 + 2 * 3 + 2  # stem, blocks, 2 shortcuts
    block = net.blocks[0]
    with torch.no_grad():  # the residual branch zeroed: the block passes ReLU(x) through its identity shortcut
        block.norm2.weight.zero_()
        block.norm2.bias.zero_()
        x = torch.randn(2, 16, 8, 8)
        assert torch.allclose(block(x), torch.relu(x))
    decayed, free = net.param_groups(0.05)
    assert decayed["weight_decay"] == 0.05 and free["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() == 1 for p in free["params"])
    assert sorted(id(p) for g in (decayed, free) for p in g["params"]) == sorted(id(p) for p in net.parameters())


def test_plain_net_has_no_normalisation():
    net = PlainNet()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in net.modules())
    assert count_parameters(net) == 448 + 4640 + 18496 + 1024 * 10 + 10


def test_backbone_lr_mult_scales_everything_but_the_head():
    net = CaffeCifar10Full()
    groups = net.param_groups(0.004)
    split = with_backbone_lr_mult(net, groups, 0.1)
    head = {id(net.ip1.weight), id(net.ip1.bias)}
    original = {id(g["params"][0]): g for g in groups}
    assert sorted(id(p) for g in split for p in g["params"]) == sorted(id(p) for p in net.parameters())
    for group in split:
        (p,) = group["params"]
        expected = original[id(p)]["lr_mult"] * (1.0 if id(p) in head else 0.1)
        assert group["lr_mult"] == pytest.approx(expected) and group["weight_decay"] == original[id(p)]["weight_decay"]
    assert with_backbone_lr_mult(net, groups, 1.0) is groups
    tiny = TinyNet()
    (whole,) = tiny.param_groups(0.0)
    backbone, head_group = with_backbone_lr_mult(tiny, [whole], 0.5)  # one group splits in two
    assert backbone["lr_mult"] == 0.5 and head_group["lr_mult"] == 1.0
    assert head_group["params"] == list(tiny.head.parameters())
