"""Figures of the analytic mode (matplotlib, Agg backend, PNG files); one colour per loss in every figure
(``LOSS_COLORS``), parameters printed to 3 significant digits.

* ``plot_error_curves``: <delta_y>(z) of Eq. 3 per loss, one panel per number of classes, with the initial
  logit distribution N(0, sigma^2) beneath (and N(epsilon, sigma^2) with a logit bias): Fig. 1 / 2. Given
  a ``calibration`` it draws, per loss, the uncalibrated curve at K, the calibrated curve at K and the
  reference curve at K_ref it was matched to.
* ``plot_epsilon_vs_k``: epsilon(K) of Eq. 4 for one or more c, with the large-K asymptote (Fig. 4).
* ``plot_solution_set``: the solutions of a calibration scan, admissible and rejected, with the picked
  point (Fig. 6).
"""
from __future__ import annotations

import os
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import theory  # noqa: E402
from .losses import LOSSES  # noqa: E402
from .presets import C_DEFAULT  # noqa: E402

__all__ = ["LOSS_COLORS", "plot_error_curves", "plot_epsilon_vs_k", "plot_logit_bias_vs_classes", "plot_solution_set"]

LOSS_COLORS = {"ce": "tab:blue", "mae": "tab:orange", "gce": "tab:green", "sce": "tab:red", "agce": "tab:purple",
               "nce": "tab:brown", "nfl": "tab:pink", "nce_mae": "tab:olive", "nfl_mae": "tab:cyan",
               "nce_agce": "darkred", "bitemp": "navy"}
HIST_COLORS = ("0.75", "0.35")      # N(0, sigma^2), N(epsilon, sigma^2): greys, no loss uses them
_PLOT_FULL_BUDGET = 500_000         # full-vector losses: samples x K per z at most this (min 200 samples)


def _prepare_path(path) -> str:
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"path={path!r} is invalid: figures are written as PNG, use a .png file name")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fmt_params(params: dict) -> str:
    """'q=0.261, alpha=737' (3 significant digits, switches and the logit bias left out)."""
    return ", ".join(f"{k}={v:.3g}" for k, v in (params or {}).items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "logit_bias")


def _color(name: str) -> str:
    return LOSS_COLORS.get(name, "0.2")


def _loss_specs(losses, params) -> list[tuple[str, str, dict]]:
    """-> [(label, loss name, params)] from names or (label, name, params) triples; ``params``:
    {name or label: params} or None."""
    specs = []
    for item in [losses] if isinstance(losses, str) else losses:
        if isinstance(item, str):
            p = {k: v for k, v in dict((params or {}).get(item, {})).items() if k != "logit_bias"}
            specs.append((f"{item} {fmt_params(p)}".strip(), item, p))
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


def _row_bias(row: dict) -> float | None:
    """epsilon of a calibration row: calibration.json keeps it beside params, Calibration.to_dict inside."""
    return row.get("logit_bias") or (row.get("params") or {}).get("logit_bias") or None


def _curve(name: str, k: int, z, params: dict, sigma: float, samples, seed: int) -> np.ndarray:
    if samples is None and not LOSSES[name].py_only:
        samples = max(200, min(2000, _PLOT_FULL_BUDGET // k))
    return theory.mean_backprop_error(name, k, z, params=params, sigma=sigma, samples=samples, seed=seed).mean


def _calibration_curves(name: str, row: dict) -> list[tuple[str, int, dict, str, float]]:
    """(label, K, params, line style, width) of the uncalibrated, calibrated and reference curves."""
    k, k_ref, ref = int(row["num_classes"]), row.get("reference_classes"), row.get("reference_params") or {}
    params = {p: v for p, v in (row.get("params") or {}).items() if p != "logit_bias"}
    if row.get("rejected") and row.get("fallback"):
        fb = row["fallback"]
        calibrated = (f"{fb['label']} {fmt_params(fb['params'])} (fallback: no admissible solution)", k, fb["params"])
    else:
        ratio = f", peak ratio {row['peak_ratio']:.3g}" if row.get("peak_ratio") is not None else ""
        calibrated = (f"{name}+ {fmt_params(params)}{ratio}", k, params)
    if not k_ref or k_ref == k:
        return [(*calibrated, "-", 1.8)]
    return [(f"{name} {fmt_params(ref)} at K={k} (uncalibrated)", k, ref, "--", 1.1), (*calibrated, "-", 1.8),
            (f"{name} {fmt_params(ref)} at K_ref={k_ref} (reference)", int(k_ref), ref, ":", 1.6)]


def plot_error_curves(losses, num_classes_list, path, *, params=None, calibration=None, logit_bias=None,
                      z=np.linspace(-4, 12, 121), sigma=1.0, samples=None, seed=0, title=None) -> str:
    """Draw <delta_y>(z) (Eq. 3) per loss, one column per K in ``num_classes_list``, with the initial
    logit histogram N(0, sigma^2) beneath and, with a ``logit_bias`` (float, {K: eps} or "auto" for Eq. 4's
    epsilon(K)), N(epsilon, sigma^2) and the epsilon line (Fig. 2b). ``losses``: names or (label, name,
    params) triples, ``params``: {loss: params}. ``calibration``: {loss: Calibration.to_dict() or a row of
    calibration.json}; a loss calibrated from a reference gets, in the panel of its K, the uncalibrated
    curve at K (dashed), the calibrated one (solid) and the reference curve at K_ref (dotted); a
    rejected one its fallback. Curves are in the coordinate of the logit entering the loss. Returns ``path``."""
    path = _prepare_path(path)
    ks = [num_classes_list] if isinstance(num_classes_list, (int, np.integer)) else list(num_classes_list)
    if not ks:
        raise ValueError("num_classes_list is empty: give at least one number of classes")
    calibration = calibration or {}
    specs = _loss_specs(losses, {**{n: r.get("params") for n, r in calibration.items()}, **(params or {})})
    z = np.asarray(z, dtype=float)
    fig, axes = plt.subplots(2, len(ks), figsize=(max(7.0, 5.6 * len(ks)), 6.4), sharex="col", squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]})
    x0 = sigma * np.random.default_rng(seed).standard_normal(20000)
    bins = np.linspace(z.min(), z.max(), 80)
    for col, k in enumerate(ks):
        ax, hx = axes[0, col], axes[1, col]
        for label, name, p in specs:
            row = calibration.get(name)
            if row and int(row["num_classes"]) == int(k) and row.get("reference_classes"):
                lines = _calibration_curves(name, row)
            else:
                star = row and int(row["num_classes"]) == int(k) and _row_bias(row)
                lines = [(f"{name}* (Eq. 4 logit bias)" if star else label, int(k), p, "-", 1.6)]
            for text, kk, pp, ls, lw in lines:
                ax.plot(z, _curve(name, kk, z, pp, sigma, samples, seed), ls=ls, lw=lw, color=_color(name), label=text)
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_title(f"K = {k}")
        ax.grid(alpha=0.3)
        ax.set_ylabel(r"$\langle\delta_y\rangle(z_y)$" if col == 0 else "")
        hx.hist(x0, bins=bins, density=True, color=HIST_COLORS[0], label=rf"$N(0,\sigma^2)$, $\sigma$={sigma:.3g}")
        eps = _bias_for(logit_bias, int(k), sigma)
        if eps is None:
            eps = next((_row_bias(r) for r in calibration.values() if int(r["num_classes"]) == int(k) and _row_bias(r)),
                       None)
        if eps is not None:
            hx.hist(x0 + eps, bins=bins, density=True, color=HIST_COLORS[1], alpha=0.6,
                    label=rf"$N(\epsilon,\sigma^2)$, $\epsilon$={eps:.3g}")
            for a in (ax, hx):
                a.axvline(eps, color="k", ls="--", lw=0.9,
                          label=rf"$\epsilon$ = {eps:.3g} (Eq. 4)" if a is ax else None)
        hx.set_xlabel(r"correct-class logit $z_y$")
        hx.set_yticks([])
        hx.legend(fontsize=7, loc="upper right")
        ax.legend(fontsize=6.5, loc="lower right")
    fig.suptitle(title or "Mean back-propagation error of the correct neuron (Eq. 3), "
                 r"other logits $z_{j\neq y}\sim N(0,\sigma^2)$", fontsize=10)
    return _save(fig, path)


def plot_epsilon_vs_k(path, ks=None, c=C_DEFAULT, *, sigma=1.0, mark=None) -> str:
    """epsilon(K) from Eq. 4 for each c (a float or a list), log-scaled K axis, with the large-K asymptote
    ln((K-1) e^{sigma^2/2}) + psi(c) dashed (Fig. 4); ``mark``: {K: epsilon} points to highlight (e.g. the
    run's). Returns ``path`` (PNG)."""
    path = _prepare_path(path)
    ks = np.unique(np.round(np.geomspace(2, 10000, 40)).astype(int)) if ks is None else np.asarray(ks, dtype=int)
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    cs = [c] if np.isscalar(c) else list(c)
    for cc, color in zip(cs, plt.cm.viridis(np.linspace(0.0, 0.8, len(cs)))):   # not the loss colours
        line, = ax.plot(ks, [theory.logit_bias(int(k), c=cc, sigma=sigma) for k in ks], marker="o", ms=3,
                        color=color, label=f"c = {cc:.3g}")
        big = ks[ks >= 3]
        ax.plot(big, [theory.logit_bias_asymptote(int(k), c=cc, sigma=sigma) for k in big], ls="--", lw=0.9,
                color=line.get_color(), alpha=0.7)
    for k, eps in (mark or {}).items():
        ax.plot([k], [eps], "k*", ms=11, label=rf"K = {k}: $\epsilon$ = {eps:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("number of classes K")
    ax.set_ylabel(r"logit bias $\epsilon$")
    ax.set_title(rf"Eq. 4: $E[p_y]=c$, $z_y\sim N(\epsilon,\sigma^2)$, $\sigma$={sigma:.3g} "
                 "(dashed: large-K asymptote)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


plot_logit_bias_vs_classes = plot_epsilon_vs_k   # the earlier name (benchmarks/paper_claims.py)


def _numeric(params: dict) -> dict:
    return {k: float(v) for k, v in params.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def plot_solution_set(scan: dict, path, *, picked=None) -> str:
    """The solutions of a ``theory.calibration_scan`` or ``theory.solution_set`` (Fig. 6): one panel per
    solved parameter, against the parameter that varies most over its rows; admissible solutions joined
    by a dashed red line, rejected ones as grey crosses (annotated with their peak ratio), ``picked`` (a
    row or its params, e.g. from ``theory.pilot_candidates``) as a black cross. Returns ``path`` (PNG)."""
    path = _prepare_path(path)
    if not isinstance(scan, dict) or not isinstance(scan.get("rows"), list):
        raise ValueError("scan is invalid: need the dict returned by theory.calibration_scan or theory.solution_set")
    rows = [r for r in scan["rows"] if r.get("params")]
    frees = list(dict.fromkeys(r["free"] for r in rows)) or [scan.get("solve_for") or "?"]
    pick = _numeric(picked.get("params", picked)) if picked else None
    fig, axes = plt.subplots(1, len(frees), figsize=(4.8 * len(frees), 3.9), squeeze=False)
    color = _color(scan.get("loss", ""))
    for ax, free in zip(axes[0], frees):
        group = [(_numeric(r["params"]), r) for r in rows if r["free"] == free]
        others = [k for k in (group[0][0] if group else {}) if k != free]
        spread = {k: len({p[k] for p, _ in group}) for k in others}
        x = max(others, key=lambda k: (spread[k], -others.index(k))) if others else free
        ok = sorted((p[x], p[free]) for p, r in group if not r["rejected"])
        bad = [(p[x], p[free]) for p, r in group if r["rejected"]]
        if ok:
            ax.plot(*zip(*ok), "o--", color="tab:red", label="admissible solutions")
        if bad:
            bound = scan.get("peak_bound", theory.PEAK_BOUND)
            ax.plot(*zip(*bad), "x", color="0.5", ms=8, mew=2,
                    label=f"rejected (peak ratio outside [1/{bound:.3g}, {bound:.3g}])")
        for p, r in group:
            if r.get("peak_ratio") is not None:
                ax.annotate(f"{r['peak_ratio']:.3g}x", (p[x], p[free]), fontsize=7, xytext=(4, 4),
                            textcoords="offset points")
        if pick and x in pick and free in pick and any(p == pick for p, _ in group):
            ax.plot([pick[x]], [pick[free]], "P", color="k", ms=13, label=f"picked: {fmt_params(pick)}")
        for axis, key in ((ax.set_xscale, x), (ax.set_yscale, free)):
            v = [p[key] for p, _ in group]
            if v and min(v) > 0 and max(v) / min(v) > 20:
                axis("log")
        ax.set_xlabel(x)
        ax.set_ylabel(free, color=color)
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=7)
    target = scan.get("target")
    fig.suptitle(f"{scan.get('loss')} at K={scan.get('num_classes')} from K_ref={scan.get('reference_classes')}: "
                 + (rf"$\langle\delta_y\rangle(z^*)$ = {target:.3g}" if target is not None else "solution set"),
                 fontsize=9)
    return _save(fig, path)
