"""Figures of the analytic mode (matplotlib, Agg backend, PNG files).

* ``plot_error_curves``: <delta_y>(z) of Eq. 3 for several losses, one panel per number of classes,
  with the initial logit distribution N(0, sigma^2) beneath (and N(epsilon, sigma^2) when a logit bias
  is given): the paper's Fig. 1 / Fig. 2.
* ``plot_logit_bias_vs_classes``: epsilon(K) of Eq. 4 for one or more c, with the large-K asymptote
  (the paper's Fig. 4).
* ``plot_calibration_scan``: the solution set of a ``theory.calibration_scan`` (Fig. 6 style).
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import theory  # noqa: E402

__all__ = ["plot_error_curves", "plot_logit_bias_vs_classes", "plot_calibration_scan"]

# Full-vector losses (nce, nfl, ... ) cost samples x K per point: plots cap that work per z.
_PLOT_FULL_BUDGET = 500_000


def _prepare_path(path) -> str:
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"path={path!r} is invalid: figures are written as PNG, use a .png file name")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return path


def _loss_specs(losses, params) -> list[tuple[str, str, dict]]:
    """-> [(label, loss name, params)]. ``losses``: names, or (label, name, params) triples;
    ``params``: {name or label: params} or None."""
    if isinstance(losses, str):
        losses = [losses]
    specs = []
    for item in losses:
        if isinstance(item, str):
            p = dict((params or {}).get(item, {}))
            label = item if not p else f"{item} " + ", ".join(f"{k}={v:g}" for k, v in p.items()
                                                              if isinstance(v, (int, float)))
            specs.append((label, item, p))
        else:
            label, name, p = item
            specs.append((str(label), str(name), dict(p or (params or {}).get(label, {}))))
    if not specs:
        raise ValueError("losses is empty: name at least one loss")
    return specs


def _bias_for(logit_bias, k: int, sigma: float):
    if logit_bias is None:
        return None
    if isinstance(logit_bias, str):
        if logit_bias != "auto":
            raise ValueError(f"logit_bias={logit_bias!r} is invalid: use a float, a {{K: eps}} dict, 'auto' or None")
        return theory.logit_bias(k, sigma=sigma)
    if isinstance(logit_bias, Mapping):
        return logit_bias.get(k)
    return float(logit_bias)


def plot_error_curves(losses, num_classes_list, path, *, params=None, logit_bias=None,
                      z=np.linspace(-4, 12, 200), sigma=1.0, samples=None, seed=0, title=None) -> str:
    """Draw <delta_y>(z) (Eq. 3) per loss, one column per K in ``num_classes_list``, with the initial
    logit histogram N(0, sigma^2) beneath and, if ``logit_bias`` is given (float, {K: eps} or "auto"
    for Eq. 4's epsilon(K)), the shifted N(epsilon, sigma^2) (Fig. 2b). The curve is in the coordinate
    of the logit entering the loss. Returns ``path`` (PNG)."""
    path = _prepare_path(path)
    ks = [num_classes_list] if isinstance(num_classes_list, (int, np.integer)) else list(num_classes_list)
    if not ks:
        raise ValueError("num_classes_list is empty: give at least one number of classes")
    specs = _loss_specs(losses, params)
    z = np.asarray(z, dtype=float)
    fig, axes = plt.subplots(2, len(ks), figsize=(max(6.4, 4.6 * len(ks)), 5.6), sharex="col", squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]})
    rng = np.random.default_rng(seed)
    for col, k in enumerate(ks):
        ax, hx = axes[0, col], axes[1, col]
        for label, name, p in specs:
            n = samples
            if n is None:
                probe = theory._build(name, int(k), p)[0]
                if not getattr(probe, "py_only", False):
                    n = max(200, min(theory._default_samples(int(k), True), _PLOT_FULL_BUDGET // int(k)))
            curve = theory.mean_backprop_error(name, int(k), z, params=p, sigma=sigma, samples=n, seed=seed)
            ax.plot(z, curve.mean, label=label, lw=1.6)
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_title(f"K = {k}")
        ax.grid(alpha=0.3)
        if col == 0:
            ax.set_ylabel(r"$\langle\delta_y\rangle(z_y)$")
        x0 = sigma * rng.standard_normal(20000)
        bins = np.linspace(z.min(), z.max(), 80)
        hx.hist(x0, bins=bins, density=True, color="tab:blue", alpha=0.55, label=rf"$N(0,{sigma:g}^2)$")
        eps = _bias_for(logit_bias, int(k), sigma)
        if eps is not None:
            hx.hist(x0 + eps, bins=bins, density=True, color="tab:green", alpha=0.55,
                    label=rf"$N(\epsilon={eps:.2f},{sigma:g}^2)$")
            ax.axvline(eps, color="tab:green", ls="--", lw=0.9)
        hx.set_xlabel(r"correct-class logit $z_y$")
        hx.set_yticks([])
        hx.legend(fontsize=7, loc="upper right")
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title or "Mean back-propagation error of the correct neuron (Eq. 3),\n"
                 r"other logits $z_{j\neq y}\sim N(0,\sigma^2)$", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_logit_bias_vs_classes(path, ks=None, c=0.25, *, sigma=1.0) -> str:
    """epsilon(K) from Eq. 4 for each c (a float or a list), log-scaled K axis, with the large-K
    asymptote ln((K-1) e^{sigma^2/2}) + psi(c) dashed (Fig. 4). Returns ``path`` (PNG)."""
    path = _prepare_path(path)
    ks = np.unique(np.round(np.geomspace(2, 10000, 40)).astype(int)) if ks is None else np.asarray(ks, dtype=int)
    cs = [c] if np.isscalar(c) else list(c)
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for cc in cs:
        eps = [theory.logit_bias(int(k), c=cc, sigma=sigma) for k in ks]
        line, = ax.plot(ks, eps, marker="o", ms=3, label=f"c = {cc:g}")
        big = ks[ks >= 3]
        ax.plot(big, [theory.logit_bias_asymptote(int(k), c=cc, sigma=sigma) for k in big], ls="--", lw=0.9,
                color=line.get_color(), alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("number of classes K")
    ax.set_ylabel(r"logit bias $\epsilon$")
    ax.set_title(r"Eq. 4: $E[p_y]=c$, $z_y\sim N(\epsilon,\sigma^2)$ (dashed: large-K asymptote)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_calibration_scan(scan: dict, path, *, x=None) -> str:
    """Solution set of ``theory.calibration_scan`` (Fig. 6 style): the solved parameter against the
    (first) grid parameter; trivial pure-rescaling solutions marked with a red x. Returns ``path``."""
    path = _prepare_path(path)
    rows = scan.get("rows", [])
    x = x or next(iter(scan.get("grid", {})), None)
    y = scan.get("solve_for")
    if x is None or y is None:
        raise ValueError("scan is invalid: need the dict returned by theory.calibration_scan")
    pts = [(r[x], r[y], bool(r.get("trivial"))) for r in rows if r.get(y) is not None]
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    if pts:
        xs, ys, tv = map(np.asarray, zip(*pts))
        ax.plot(xs[~tv], ys[~tv], marker="o", color="tab:red", ls="--", label="solutions")
        if tv.any():
            ax.plot(xs[tv], ys[tv], "x", color="k", ms=9, mew=2, label="trivial (pure rescaling)")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{scan.get('loss')} at K={scan.get('num_classes')}: "
                 rf"$\langle\delta_y\rangle(z^*)$ = {scan.get('target') or float('nan'):.4g}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
