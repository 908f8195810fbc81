"""Appendix A.3: the logits of a freshly initialised network are close to i.i.d. N(0, sigma^2),

    z_i(x) ~ N(0, sigma^2)   (zero-mean Kaiming / Xavier weights, zero biases),

the distribution Eq. 3 and Eq. 4 average over. ``initial_logit_stats`` measures mean, standard deviation
and histogram of model(inputs); ``measure_sigma`` returns the standard deviation, the sigma to feed into
``mean_backprop_error``, ``logit_bias`` and the calibration instead of the paper's sigma = 1.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

__all__ = ["initial_logit_stats", "measure_sigma"]


def _initial_logits(model: torch.nn.Module, inputs, batch_stats: bool) -> np.ndarray:
    x = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    if not torch.is_tensor(x):
        raise ValueError(f"inputs of type {type(x).__name__} are invalid: need a tensor or an (x, y) batch")
    was_training = model.training
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    run = copy.deepcopy(model).eval() if batch_stats and bns else model.eval()
    if batch_stats:   # BatchNorm normalises with the batch's statistics, as in the first training step
        for m in run.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.train()
    try:
        device = next(iter(run.parameters()), x).device
        with torch.no_grad():
            logits = run(x.to(device)).double().cpu()
    finally:
        model.train(was_training)
    if logits.numel() == 0 or not bool(torch.isfinite(logits).all()):
        raise ValueError("model produced no logits or non-finite logits: check the model and inputs")
    return logits.numpy()


def initial_logit_stats(model: torch.nn.Module, inputs, *, bins: int = 50, batch_stats: bool = True) -> dict:
    """Mean, standard deviation (population) and histogram of all logits model(inputs), under no_grad.

    ``batch_stats=True`` (default) gives what the first training step sees: BatchNorm normalises with
    the batch's statistics, on a copy of the model so its running statistics are untouched (a fresh
    BatchNorm in eval mode uses running stats (0, 1) and lets a deep ResNet's logits explode, which says
    nothing about training); every other module is in eval mode (no dropout). ``batch_stats=False``: eval
    mode. The model's mode is restored. ``inputs``: a tensor or an (x, y) batch. Returns JSON-serialisable
    {"mean", "std", "hist_counts", "hist_edges", "num_logits", "shape"}.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins={bins!r} is invalid: need an integer >= 1")
    logits = _initial_logits(model, inputs, batch_stats)
    flat = logits.reshape(-1)
    counts, edges = np.histogram(flat, bins=bins)
    return {"mean": float(flat.mean()), "std": float(flat.std()), "hist_counts": counts.astype(int).tolist(),
            "hist_edges": edges.astype(float).tolist(), "num_logits": int(flat.size), "shape": list(logits.shape)}


def measure_sigma(model: torch.nn.Module, inputs, *, batch_stats: bool = True) -> float:
    """sigma of A.3: the standard deviation of the initial logits model(inputs) (BatchNorm with the
    batch's statistics, as ``initial_logit_stats``)."""
    return float(_initial_logits(model, inputs, batch_stats).std())
