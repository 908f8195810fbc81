"""Shared helpers of the theory modules: one-line argument checks, JSON conversion, the loss registry."""
from __future__ import annotations

import math

import numpy as np
import torch


def check_k(num_classes) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} is invalid: need an integer >= 2")
    return int(num_classes)


def check_sigma(sigma) -> float:
    if isinstance(sigma, bool) or not (isinstance(sigma, (int, float, np.floating)) and math.isfinite(sigma)
                                       and sigma > 0):
        raise ValueError(f"sigma={sigma!r} is invalid: need a finite float > 0")
    return float(sigma)


def check_c(c) -> float:
    if isinstance(c, bool) or not (isinstance(c, (int, float, np.floating)) and 0.0 < c < 1.0):
        raise ValueError(f"c={c!r} is invalid: need a float in the open interval (0, 1)")
    return float(c)


def jsonable(x):
    """Plain Python (and None for NaN/inf) of nested dicts/lists of numpy/torch values."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, torch.Tensor):
        return jsonable(x.detach().cpu().tolist())
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def losses_module():
    from .. import losses  # lazy: the Eq. 4 quadrature works without torch losses
    return losses


def loss_name(loss) -> str:
    if isinstance(loss, str):
        return loss
    mod = losses_module()
    for name, cls in mod.LOSSES.items():
        if type(loss) is cls:
            return name
    raise ValueError(f"loss={type(loss).__name__} is not a registered loss: use one of {sorted(mod.LOSSES)}")


def build(loss, num_classes: int, params: dict | None):
    """Return (RobustLoss, name). A RobustLoss is used as is unless ``params`` are given or K differs."""
    mod = losses_module()
    if isinstance(loss, str):
        if loss not in mod.LOSSES:
            raise ValueError(f"loss={loss!r} is unknown: use one of {sorted(mod.LOSSES)}")
        return mod.build_loss(loss, num_classes, **dict(params or {})), loss
    name = loss_name(loss)
    if params or int(loss.num_classes) != num_classes:
        return mod.build_loss(name, num_classes, **{**loss.params, **dict(params or {})}), name
    return loss, name
