"""Model registry: the networks of the paper's Appendix A.1.

``build_model(name, num_classes, input_shape) -> nn.Module`` mapping a batch [N, *input_shape] to logits [N, K].

=========  ==========================================================================================
name       architecture
=========  ==========================================================================================
resnet32   CIFAR ResNet (He et al. 2016, Sec. 4.2; as akamaster/pytorch_resnet_cifar10): 3×3 conv 16,
           three stages of 5 basic blocks with 16/32/64 channels (stride 2 at stages 2, 3), global
           average pool, linear. Shortcut "option A": identity, or at a down-sampling block the input
           sub-sampled by 2 and zero-padded in the channel dimension (no parameters). 0.46 M parameters
           at K = 10. Input channels from ``input_shape`` (1 for Fashion-MNIST, 3 for CIFAR).
resnet34   CIFAR-100 ResNet-34 (as weiaicunzai/pytorch-cifar100): 3×3 stem conv 64 + BN + ReLU, no
           max-pool, basic blocks [3, 4, 6, 3] with 64/128/256/512 channels (stride 2 at stages 2-4),
           projection shortcuts (1×1 conv + BN) where shape changes, global average pool, linear.
wrn101     ``torchvision.models.wide_resnet101_2(weights=None, num_classes=K)`` (the paper used it from
           the PyTorch library); the stem conv is replaced if the input does not have 3 channels.
mlp1024    flatten → 1024 → 512 → 512 → K, ReLU between layers ("MLP1024").
=========  ==========================================================================================

Initialisation (Appendix A.1): ResNets get Kaiming-normal weights for every conv and linear layer
(fan-in mode, ReLU gain √2, i.e. std = √(2 / fan_in)); the MLP gets Xavier-uniform weights
(U(−b, b), b = √(6 / (fan_in + fan_out))). All biases are zero; BatchNorm weight 1, bias 0.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MODELS", "register_model", "build_model", "default_model", "list_models", "init_kaiming",
           "init_xavier", "ResNetCifar", "MLP"]

MODELS: dict[str, Callable[[int, tuple[int, ...]], nn.Module]] = {}


def register_model(name: str):
    """Decorator: register ``factory(num_classes, input_shape) -> nn.Module`` under ``name``."""

    def deco(fn):
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(MODELS)


def build_model(name: str, num_classes: int, input_shape) -> nn.Module:
    """Build registered model ``name`` for ``num_classes`` outputs and inputs of shape ``input_shape``
    ((C, H, W) for the ResNets, any shape for the MLP, which flattens)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be an integer >= 1")
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape={tuple(input_shape)!r} must be a non-empty tuple of positive sizes")
    return MODELS[name](num_classes, shape)


def default_model(dataset: str) -> str:
    """The paper's network for ``dataset``: its preset column's training setup's (presets.resolve_dataset,
    the one dataset -> column map; ValueError naming the allowed names for an unknown one)."""
    from . import presets

    return presets.training_setup(dataset)["model"]


# ------------------------------------------------------------------------------------------ init
def _zero_bias_bn(m: nn.Module) -> None:
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
        if m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
        nn.init.zeros_(m.bias)


def init_kaiming(model: nn.Module) -> nn.Module:
    """Kaiming-normal (fan-in, ReLU gain) conv and linear weights, zero biases, BN (1, 0)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        _zero_bias_bn(m)
    return model


def init_xavier(model: nn.Module) -> nn.Module:
    """Xavier-uniform linear (and conv) weights, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
        _zero_bias_bn(m)
    return model


def _image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"{name} needs image inputs (C, H, W), got input_shape={input_shape}; "
                         f"use mlp1024 for feature vectors")
    return input_shape  # type: ignore[return-value]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


# ------------------------------------------------------------------------------------- resnet32
class _PadShortcut(nn.Module):
    """Option-A shortcut: x[:, :, ::s, ::s] with (cout − cin) zero channels split evenly on both sides."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, cout - cin

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        lo = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.extra - lo))


class BasicBlock(nn.Module):
    """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), two 3×3 convs."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3x3(cout, cout), nn.BatchNorm2d(cout)
        if stride == 1 and cin == cout:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "pad":
            self.shortcut = _PadShortcut(cin, cout, stride)
        else:  # projection
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _stage(cin: int, cout: int, blocks: int, stride: int, shortcut: str) -> nn.Sequential:
    layers = [BasicBlock(cin, cout, stride, shortcut)]
    layers += [BasicBlock(cout, cout, 1, shortcut) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNetCifar(nn.Module):
    """Stem 3×3 conv + BN + ReLU, stages of basic blocks, global average pool, linear classifier."""

    def __init__(self, num_classes: int, in_channels: int, widths, blocks, shortcut: str):
        super().__init__()
        self.stem = nn.Sequential(_conv3x3(in_channels, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stages.append(_stage(cin, w, n, 1 if i == 0 else 2, shortcut))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)
        init_kaiming(self)

    def features(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1)

    def forward(self, x):
        return self.fc(self.features(x))


@register_model("resnet32")
def resnet32(num_classes: int, input_shape) -> nn.Module:
    c, _, _ = _image_shape("resnet32", input_shape)
    return ResNetCifar(num_classes, c, (16, 32, 64), (5, 5, 5), shortcut="pad")


@register_model("resnet34")
def resnet34(num_classes: int, input_shape) -> nn.Module:
    c, _, _ = _image_shape("resnet34", input_shape)
    return ResNetCifar(num_classes, c, (64, 128, 256, 512), (3, 4, 6, 3), shortcut="projection")


@register_model("wrn101")
def wrn101(num_classes: int, input_shape) -> nn.Module:
    from torchvision.models import wide_resnet101_2

    c, _, _ = _image_shape("wrn101", input_shape)
    model = wide_resnet101_2(weights=None, num_classes=num_classes)
    if c != 3:
        model.conv1 = nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return init_kaiming(model)


# ----------------------------------------------------------------------------------------- MLP
class MLP(nn.Module):
    """flatten → Linear/ReLU hidden layers → Linear(K)."""

    def __init__(self, in_features: int, hidden, num_classes: int):
        super().__init__()
        layers, d = [nn.Flatten()], in_features
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(inplace=True)]
            d = h
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)
        init_xavier(self)

    def forward(self, x):
        return self.net(x)


@register_model("mlp1024")
def mlp1024(num_classes: int, input_shape) -> nn.Module:
    d = 1
    for s in input_shape:
        d *= s
    return MLP(d, (1024, 512, 512), num_classes)
