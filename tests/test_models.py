import pytest
import torch
import torch.nn.functional as F

from lrsearch.training.models import (
    CaffeCifar10Full,
    FastNet,
    TinyNet,
    WithinChannelLRN,
    build_model,
    count_parameters,
)


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
