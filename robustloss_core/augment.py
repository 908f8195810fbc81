"""Train-batch augmentation on the batch's own device, and normalisation.

``AUGMENTATIONS`` is the one spec per augmentation name: (op, argument) pairs that both this module's on-device
path (:func:`augment_batch`) and the DataLoader path (``datasets._tensor_transforms``) are built from. A dataset
names its augmentation in its registration (``datasets.register_dataset(augment=...)``). Test data is only
normalised.

================  =====================================================  ===========================
augment           train transform (on raw [0, 1] pixels, then normalise)  source
================  =====================================================  ===========================
``cifar10``       flip, crop 32 with zero padding 4                      akamaster/pytorch_resnet_cifar10
``cifar100``      crop 32 pad 4, flip, rotation U(−15°, 15°) (nearest)   weiaicunzai/pytorch-cifar100
``fashionmnist``  flip, crop 28 pad 4                                    paper A.1
================  =====================================================  ===========================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _uniform(n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gdev).to(device)


def _randint(high: int, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=gdev).to(device)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Mirror each image of [N, C, H, W] left-right with probability p."""
    hit = _uniform(x.shape[0], generator, x.device) < p
    return torch.where(hit[:, None, None, None], x.flip(-1), x)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side, then take an H×W window at a uniform offset per image."""
    n, _, h, w = x.shape
    xp = F.pad(x, (padding,) * 4)
    oy = _randint(2 * padding + 1, n, generator, x.device)
    ox = _randint(2 * padding + 1, n, generator, x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]      # [N, H, 1]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]      # [N, 1, W]
    out = xp[torch.arange(n, device=x.device)[:, None, None], :, rows, cols]  # [N, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def rotate_batch(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate image i of [N, C, H, W] (square) counter-clockwise by ``degrees[i]`` about its centre, like
    torchvision's ``rotate``: nearest-neighbour sampling, zero fill. Keeps the dtype (uint8 stays exact)."""
    ang = torch.deg2rad(degrees.to(device=x.device, dtype=torch.float32))
    c, s, z = torch.cos(ang), torch.sin(ang), torch.zeros_like(ang)
    # affine_grid maps output (x, y) (y pointing down) to input coordinates: inverse of a CCW rotation
    theta = torch.stack([torch.stack([c, -s, z], 1), torch.stack([s, c, z], 1)], 1)   # [N, 2, 3]
    xf = x if x.is_floating_point() else x.float()
    grid = F.affine_grid(theta.to(xf.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(xf, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out if x.is_floating_point() else out.round().to(x.dtype)


def random_rotate(x: torch.Tensor, degrees: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each image by an angle ~ U(−degrees, degrees) (torchvision RandomRotation's defaults)."""
    return rotate_batch(x, (_uniform(x.shape[0], generator, x.device) * 2.0 - 1.0) * degrees)


# One augmentation spec per name: (op, argument) pairs, read by both the on-device path (augment_batch) and the
# DataLoader path (_tensor_transforms). flip: mirror with p = 0.5; crop: zero-pad by n, random window; rotate:
# U(-d, d) degrees, nearest, zero fill.
AUGMENTATIONS: dict[str, tuple[tuple[str, float | None], ...]] = {
    "cifar10": (("flip", None), ("crop", 4)),
    "cifar100": (("crop", 4), ("flip", None), ("rotate", 15.0)),
    "fashionmnist": (("flip", None), ("crop", 4)),
}
_DEVICE_OPS = {"flip": lambda x, g, _: random_flip(x, g), "crop": lambda x, g, n: random_crop(x, int(n), g),
               "rotate": lambda x, g, d: random_rotate(x, d, g)}


def augment_batch(x: torch.Tensor, kind: str | None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply train augmentation ``kind`` (AUGMENTATIONS key, None = identity) to a batch [N, C, H, W] on its
    own device; dtype and shape are kept. Random numbers come from ``generator`` (on any device), so a
    generator in the same state gives the same batch."""
    if kind is None:
        return x
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; valid: {', '.join(sorted(AUGMENTATIONS))} or None")
    if x.dim() != 4:
        raise ValueError(f"augment_batch needs a [N, C, H, W] batch, got shape {tuple(x.shape)}")
    for op, arg in AUGMENTATIONS[kind]:
        x = _DEVICE_OPS[op](x, generator, arg)
    return x


def normalize_batch(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(x − mean) / std per channel (dim 1); uint8 input is first scaled to [0, 1]. mean None: only the
    dtype conversion (features already standardised)."""
    if not x.is_floating_point():
        x = x.float().div_(255.0)
    if mean is None:
        return x
    shape = (1, -1) + (1,) * (x.dim() - 2)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s
