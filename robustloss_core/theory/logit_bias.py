"""Eq. (4): the logit bias epsilon(K) such that the mean correct-class softmax output is c,

    E[p_y] = c,   z_y ~ N(epsilon, sigma^2),  z_{j != y} ~ N(0, sigma^2) i.i.d.

Evaluated without Monte Carlo: p_y = 1 / (1 + e^{-z} S) and 1/(1 + x) = int_0^inf e^{-t(1+x)} dt turn
E_S[p_y | z] into a one-dimensional integral of the log-normal Laplace transform
M(u) = E_g[exp(-u e^{sigma g})] raised to the power K - 1. Trapezoidal rules on aligned uniform grids
(spectrally accurate for these analytic integrands) give E[p_y](epsilon) as a smooth, monotone function,
solved by brentq from a bracket around the large-K asymptote ln((K-1) e^{sigma^2/2}) + psi(c),
E_{x ~ N(0, sigma^2)}[sigmoid(x + psi)] = c. c = ``presets.C_DEFAULT`` (0.25, reconstructed).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy import optimize, special

from ..presets import C_DEFAULT
from ._util import check_c, check_k, check_sigma

__all__ = ["expected_py", "logit_bias", "logit_bias_asymptote"]

_H = 0.05                  # step of the s (= ln t) and z grids (trapezoid error ~1e-13 here)
_S_LO, _S_HI = -40.0, 4.5


def _log_laplace(v: np.ndarray, sigma: float) -> np.ndarray:
    """m(v) = ln E_g[exp(-e^{v + sigma g})], g ~ N(0, 1): ln M(e^v)."""
    hg = min(0.05, 0.05 / sigma)
    g = np.arange(-14.0, 14.0 + hg / 2, hg)
    logw = -0.5 * g * g - 0.5 * math.log(2 * math.pi) + math.log(hg)
    out = np.empty(v.size)
    per = max(1, 2_000_000 // g.size)
    for s in range(0, v.size, per):
        out[s:s + per] = special.logsumexp(-np.exp(v[s:s + per, None] + sigma * g[None, :]) + logw[None, :], axis=1)
    return np.minimum(out, 0.0)


@functools.lru_cache(maxsize=64)
def py_table(num_classes: int, sigma: float, z_lo: float, z_hi: float):
    """E_S[p_y | z] = int exp(s - e^s) M(e^{s - z})^{K-1} ds on the z grid z_lo + j h, aligned with the
    s grid so that s - z falls on one shared grid (the Laplace transform is evaluated once per point);
    h = min(_H, sigma / 4) keeps the Gaussian average over z resolved for small sigma."""
    h = min(_H, sigma / 4)
    s = np.arange(_S_LO, _S_HI + h / 2, h)
    nz = int(round((z_hi - z_lo) / h)) + 1
    zg = z_lo + h * np.arange(nz)
    v = (_S_LO - zg[-1]) + h * np.arange(s.size + nz - 1)     # v_r = s_i - z_j with r = i + nz - 1 - j
    corr = np.correlate(np.exp((num_classes - 1) * _log_laplace(v, sigma)), np.exp(s - np.exp(s)), mode="valid")
    return zg, np.clip(h * corr[::-1], 0.0, 1.0)


def _window(lo: float, hi: float, sigma: float) -> tuple[float, float]:
    """A cached z-table window (multiples of 4, for reuse) covering [lo, hi] +- 12 sigma."""
    return 4.0 * math.floor((lo - 12 * sigma) / 4.0), 4.0 * math.ceil((hi + 12 * sigma) / 4.0)


def _expected_py(k: int, eps: float, sigma: float, window: tuple[float, float]) -> float:
    zg, p = py_table(k, sigma, *window)
    w = np.exp(-0.5 * ((zg - eps) / sigma) ** 2)
    return float(np.dot(w, p) / w.sum())


def expected_py(num_classes, eps, *, sigma=1.0) -> float:
    """E[p_y] for z_y ~ N(eps, sigma^2), z_{j != y} ~ N(0, sigma^2): the left side of Eq. 4."""
    k, sigma, eps = check_k(num_classes), check_sigma(sigma), float(eps)
    return _expected_py(k, eps, sigma, _window(eps, eps, sigma))


def _psi(c: float, sigma: float) -> float:
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    return optimize.brentq(lambda psi: float(np.dot(w, special.expit(sigma * x + psi))) - c, -60.0, 60.0, xtol=1e-13)


def logit_bias_asymptote(num_classes, *, c=C_DEFAULT, sigma=1.0) -> float:
    """Large-K limit of Eq. 4: ln((K-1) e^{sigma^2/2}) + psi(c), E_{x~N(0,sigma^2)}[sigmoid(x + psi)] = c."""
    k, c, sigma = check_k(num_classes), check_c(c), check_sigma(sigma)
    return math.log(k - 1) + 0.5 * sigma * sigma + _psi(c, sigma)


def logit_bias(num_classes, *, c=C_DEFAULT, sigma=1.0) -> float:
    """Eq. 4: epsilon with E[p_y] = c for z_y ~ N(epsilon, sigma^2), z_{j != y} ~ N(0, sigma^2).

    brentq on the quadrature E[p_y](epsilon) in a bracket of +-(2 + 2 sigma) around the large-K
    asymptote (widened until it brackets). c defaults to ``presets.C_DEFAULT`` (reconstructed).
    """
    k, c, sigma = check_k(num_classes), check_c(c), check_sigma(sigma)
    centre = logit_bias_asymptote(k, c=c, sigma=sigma)
    half = 2.0 + 2.0 * sigma
    for width in range(1, 9):
        lo, hi = centre - width * half, centre + width * half
        window = _window(lo, hi, sigma)
        f = lambda e: _expected_py(k, e, sigma, window) - c  # noqa: E731
        if f(lo) < 0 < f(hi):
            return float(optimize.brentq(f, lo, hi, xtol=1e-10, rtol=1e-12))
    raise ValueError(f"could not bracket the logit bias for K={k}, c={c}, sigma={sigma}")  # pragma: no cover
