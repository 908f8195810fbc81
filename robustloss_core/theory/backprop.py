"""Eq. (3): the mean back-propagation error of the correct neuron at initialisation,

    <delta_y>(z) = E_{z_j ~ N(0, sigma^2), j != y} [ dL/dz_y | z_y = z ].

For a loss of p_y only, p_y = 1 / (1 + e^{-z} S) = sigmoid(z - ln S), S = sum_{j != y} e^{z_j} (a sum of
K - 1 i.i.d. log-normals), so the expectation is one-dimensional in S. Method "py": draw a pool of
``samples`` values of ln S once (seeded float32 normals in antithetic pairs g / -g, cached per
(K, sigma, samples, seed)) and average delta_y(p_y(z, S)) over it for every z (common random numbers:
curves are smooth in z and in the loss parameters). Losses of the whole logit vector (NCE, NFL, biTemp
and their combinations) are averaged over full sampled logit vectors from the same draws, with the
loss's closed-form ``delta_y`` ("delta"; autograd where it has none) or autograd for any loss
("autograd", a cross-check). The standard error comes from the spread of the antithetic pair means.

z is the logit entering the loss, i.e. after any logit bias (Fig. 2b keeps the curve and shifts the
logit distribution to N(epsilon, sigma^2)); a RobustLoss's own ``logit_bias`` is compensated for.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Iterable

import numpy as np
import torch
from scipy import special

from ._util import build, check_k, check_sigma, jsonable

__all__ = ["ErrorCurve", "mean_backprop_error", "METHODS"]

METHODS = ("auto", "py", "delta", "autograd")
_CHUNK = 4_000_000  # normals per drawn block


def default_samples(num_classes: int, full: bool) -> int:
    """Monte Carlo size from a budget of normal draws (even, for antithetic pairs). "py" pool:
    2e7 / (K - 1) values of ln S in [1e4, 2e5]; full logit vectors: 2e6 / K in [1000, 20000]."""
    n = int(np.clip(2e6 / num_classes, 1000, 20000)) if full else int(np.clip(2e7 / (num_classes - 1), 1e4, 2e5))
    return n + n % 2


def resolve_samples(samples, num_classes: int, full: bool) -> int:
    if samples is None:
        return default_samples(num_classes, full)
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 4:
        raise ValueError(f"samples={samples!r} is invalid: need an integer >= 4 (or None for the default)")
    return int(samples) + int(samples) % 2


def _draw_rows(rng: np.random.Generator, rows: int, cols: int) -> Iterable[np.ndarray]:
    """float32 standard-normal blocks (r, cols), r summing to ``rows``: the same stream as one
    (rows, cols) draw, so the ln S pool and the full vectors share their numbers."""
    step = max(1, _CHUNK // max(cols, 1))
    for start in range(0, rows, step):
        yield rng.standard_normal((min(step, rows - start), cols), dtype=np.float32)


@functools.lru_cache(maxsize=16)
def log_s_pool(num_classes: int, sigma: float, samples: int, seed: int) -> np.ndarray:
    """ln S, S = sum_{j != y} e^{sigma g_j}, for samples/2 antithetic pairs: array (2, samples/2)."""
    rng = np.random.default_rng(seed)
    plus, minus = [], []
    for g in _draw_rows(rng, samples // 2, num_classes - 1):
        sg = sigma * g if sigma <= 4.0 else sigma * g.astype(np.float64)   # float32 exp overflows near 88
        plus.append(np.log(np.exp(sg).sum(axis=1)).astype(np.float64))
        minus.append(np.log(np.exp(-sg).sum(axis=1)).astype(np.float64))
    out = np.stack([np.concatenate(plus), np.concatenate(minus)])
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=4)
def other_logits(num_classes: int, sigma: float, samples: int, seed: int) -> torch.Tensor:
    """Full logit vectors (float64, (samples, K)), column 0 free for z_y (label 0; every user writes it
    before reading, no copy of the cached draws is made): rows [0, samples/2)
    use sigma*g, the rest -sigma*g (antithetic). Same draws as ``log_s_pool`` for the same arguments."""
    half = samples // 2
    g = np.concatenate(list(_draw_rows(np.random.default_rng(seed), half, num_classes - 1))).astype(np.float64) * sigma
    out = np.zeros((samples, num_classes), dtype=np.float64)
    out[:half, 1:], out[half:, 1:] = g, -g
    return torch.from_numpy(out)


@dataclasses.dataclass
class ErrorCurve:
    """<delta_y>(z) at the correct neuron (Eq. 3) with its Monte Carlo standard error."""
    z: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    loss: str = ""
    num_classes: int = 0
    params: dict = dataclasses.field(default_factory=dict)
    sigma: float = 1.0
    samples: int = 0
    seed: int = 0
    method: str = ""

    def __float__(self) -> float:
        if self.mean.size != 1:
            raise TypeError(f"float() needs a scalar curve, this one has {self.mean.size} points")
        return float(self.mean.reshape(-1)[0])

    def to_dict(self) -> dict:
        return jsonable(dataclasses.asdict(self))


def _py_curve(loss_obj, zs: np.ndarray, log_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    means, errs = np.empty(zs.size), np.empty(zs.size)
    per = max(1, 2_000_000 // log_s.size)
    for start in range(0, zs.size, per):
        p = special.expit(zs[start:start + per, None, None] - log_s[None, :, :])
        d = np.asarray(loss_obj.delta_y_from_py(p), dtype=np.float64)
        pm = 0.5 * (d[:, 0, :] + d[:, 1, :])
        means[start:start + per] = pm.mean(axis=1)
        errs[start:start + per] = pm.std(axis=1, ddof=1) / math.sqrt(pm.shape[1])
    return means, errs


def _full_delta(loss_obj, logits: torch.Tensor, use_autograd: bool) -> np.ndarray:
    """delta_y for label 0 of every row of ``logits`` (in the loss's raw-input coordinate)."""
    targets = torch.zeros(logits.shape[0], dtype=torch.long)
    if not use_autograd:
        try:
            return loss_obj.delta_y(logits, targets).double().numpy()
        except NotImplementedError:
            pass
    return loss_obj.delta_y_autograd(logits, targets).double().numpy()


def _full_curve(loss_obj, zs: np.ndarray, others: torch.Tensor, use_autograd: bool):
    bias = float(loss_obj.logit_bias)
    n, half = others.shape[0], others.shape[0] // 2
    rows = max(1, 2_000_000 // others.shape[1])
    means, errs = np.empty(zs.size), np.empty(zs.size)
    for i, z in enumerate(zs):
        others[:, 0] = float(z) - bias   # column 0 is z_y's, set by every user; the loss adds its bias back
        d = np.concatenate([_full_delta(loss_obj, others[s:s + rows], use_autograd) for s in range(0, n, rows)])
        pm = 0.5 * (d[:half] + d[half:])
        means[i], errs[i] = pm.mean(), pm.std(ddof=1) / math.sqrt(pm.size)
    return means, errs


def choose_method(loss_obj, method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method={method!r} is invalid: use one of {list(METHODS)}")
    if method == "auto":
        return "py" if loss_obj.py_only else "delta"
    if method == "py" and not loss_obj.py_only:
        raise ValueError("method='py' needs a loss that depends on p_y only: use 'delta' or 'autograd'")
    return method


def mean_backprop_error(loss, num_classes, z, *, params=None, sigma=1.0, samples=None, seed=0,
                        method="auto") -> ErrorCurve:
    """Eq. (3): <delta_y>(z) = E[dL/dz_y | z_y = z], z_{j != y} ~ N(0, sigma^2) i.i.d.

    ``loss``: a name from ``losses.LOSSES`` or a RobustLoss; ``params`` its hyperparameters. ``z``: a
    scalar or array of correct-class logits (loss-input coordinate). ``method``: "auto" (p_y-only
    losses -> "py", others -> "delta"), "py", "delta" or "autograd" (module docstring). ``samples``:
    Monte Carlo draws (ln S values or logit vectors, rounded up to even), default ``default_samples``.
    Deterministic for a seed; the same seed gives the same draws across methods and calls.
    """
    k = check_k(num_classes)
    sigma = check_sigma(sigma)
    zs = np.atleast_1d(np.asarray(z, dtype=np.float64)).reshape(-1)
    if not np.all(np.isfinite(zs)):
        raise ValueError("z contains non-finite values: need finite logits")
    loss_obj, name = build(loss, k, params)
    how = choose_method(loss_obj, method)
    n = resolve_samples(samples, k, full=(how != "py"))
    if how == "py":
        means, errs = _py_curve(loss_obj, zs, log_s_pool(k, sigma, n, int(seed)))
    else:
        means, errs = _full_curve(loss_obj, zs, other_logits(k, sigma, n, int(seed)), how == "autograd")
    return ErrorCurve(z=zs, mean=means, stderr=errs, loss=name, num_classes=k, params=jsonable(loss_obj.params),
                      sigma=sigma, samples=n, seed=int(seed), method=how)
