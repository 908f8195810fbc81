"""Model registry: shapes, architecture facts of the reference implementations, Appendix A.1 init."""
import math

import pytest
import torch
import torch.nn as nn

from robustloss_core import models
from robustloss_core.models import build_model


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_resnet32_logits_and_size(shape):
    torch.manual_seed(0)
    m = build_model("resnet32", 10, shape)
    assert m(torch.randn(4, *shape)).shape == (4, 10)
    # akamaster's ResNet-32: 0.46 M parameters (3 input channels); option-A shortcuts carry none
    if shape[0] == 3:
        assert n_params(m) == 464_154
    assert m.stem[0].in_channels == shape[0]
    blocks = [b for b in m.modules() if isinstance(b, models.BasicBlock)]
    assert len(blocks) == 15 and [b.conv1.out_channels for b in blocks[::5]] == [16, 32, 64]
    assert sum(n_params(b.shortcut) for b in blocks) == 0


def test_option_a_shortcut_is_subsample_plus_zero_channels():
    sc = models._PadShortcut(16, 32, 2)
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, :8]) == 0 and torch.count_nonzero(y[:, 24:]) == 0


def test_resnet34_cifar100():
    torch.manual_seed(0)
    m = build_model("resnet34", 100, (3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    assert m(x).shape == (2, 100)
    blocks = [b for b in m.modules() if isinstance(b, models.BasicBlock)]
    assert len(blocks) == 16                               # [3, 4, 6, 3]
    assert m.stem[0].kernel_size == (3, 3) and m.stem[0].stride == (1, 1)
    assert not any(isinstance(x, nn.MaxPool2d) for x in m.modules())   # no max-pool: 32 → 4 at the last stage
    with torch.no_grad():
        assert m.stages(m.stem(x)).shape == (2, 512, 4, 4)
    # projection shortcuts (1×1 conv + BN) exactly where the shape changes
    proj = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    assert len(proj) == 3 and all(isinstance(b.shortcut[0], nn.Conv2d) for b in proj)


def test_wrn101_is_torchvision_wide_resnet101_2():
    m = build_model("wrn101", 1000, (3, 64, 64))
    assert n_params(m) == 126_886_696   # torchvision's documented size of wide_resnet101_2
    m.eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    # Kaiming normal (fan_in) was applied on top of torchvision's (fan_out) init
    w = m.layer4[0].conv2.weight
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / (w.shape[1] * 9)), rel=0.02)


def test_mlp1024_layers_and_xavier_init():
    torch.manual_seed(0)
    m = build_model("mlp1024", 7, (1, 28, 28))
    lins = [x for x in m.modules() if isinstance(x, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in lins] == [(784, 1024), (1024, 512), (512, 512), (512, 7)]
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 7)
    for l in lins:
        assert torch.count_nonzero(l.bias) == 0
        bound = math.sqrt(6.0 / (l.in_features + l.out_features))
        w = l.weight.abs()
        assert w.max().item() <= bound and w.max().item() > 0.98 * bound   # U(-b, b) fills its range
        assert l.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_resnet_kaiming_init_and_bn():
    torch.manual_seed(1)
    m = build_model("resnet32", 10, (3, 32, 32))
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d) and mod.weight.numel() >= 2000:
            fan_in = mod.weight[0].numel()
            assert mod.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.08)
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
    assert torch.count_nonzero(m.fc.bias) == 0
    assert m.fc.weight.std().item() == pytest.approx(math.sqrt(2.0 / 64), rel=0.1)


def test_mlp_initial_logits_match_mean_field_variance():
    """Xavier weights, zero biases: E[z²] = E[x²] · Π_l fan_in_l·Var(w_l)·(1/2 after each ReLU) exactly in
    expectation over the weights (pre-activations are symmetric). For D = 128 standardised inputs and
    K = 10: σ² = 128·2/1152·½ · 1024·2/1536·½ · 512·2/1024·½ · 512·2/522 = 0.07266 (σ ≈ 0.27)."""
    D, K = 128, 10
    dims = [D, 1024, 512, 512, K]
    pred = 1.0
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        pred *= a * 2.0 / (a + b) * (0.5 if i < len(dims) - 2 else 1.0)
    x = torch.randn(512, D, generator=torch.Generator().manual_seed(0))
    sq, means = [], []
    for seed in range(6):
        torch.manual_seed(seed)
        with torch.no_grad():
            z = build_model("mlp1024", K, (D,))(x).double()
        sq.append(z.pow(2).mean().item())
        means.append(z.mean().item())
    assert sum(sq) / len(sq) == pytest.approx(pred, rel=0.15)
    assert abs(sum(means) / len(means)) < 0.25 * math.sqrt(pred)   # centred at zero


def test_unknown_model_and_bad_shapes():
    with pytest.raises(ValueError, match="valid: mlp1024, resnet32, resnet34, wrn101"):
        build_model("resnet18", 10, (3, 32, 32))
    with pytest.raises(ValueError, match="image inputs"):
        build_model("resnet32", 10, (128,))
    assert set(models.MODELS) == {"resnet32", "resnet34", "wrn101", "mlp1024"}


@pytest.mark.parametrize("dataset,model", [("cifar10", "resnet32"), ("fashionmnist", "resnet32"),
                                           ("cifar100", "resnet34"), ("webvision", "wrn101"),
                                           ("imagefolder", "wrn101"), ("synthetic", "mlp1024")])
def test_default_model(dataset, model):
    assert models.default_model(dataset) == model
