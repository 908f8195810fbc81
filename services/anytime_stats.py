"""Per-search-seed statistics of the anytime replay (``services.anytime``): what a *single* search run buys.

The replay's curves are the mean (and 95 % band) over search seeds of the incumbent's test top-1. The budget at
which that *mean* reaches analytic's mean (``matched_at``) is the budget at which the *slowest* seeds have found
analytic's configuration when it is the grid's best — not what a typical search needs. So, per method, from each
search seed's own incumbent curve:

  * ``budget_to_match`` — per search seed, the first budget (trial-epochs) after which its incumbent's test
    top-1 is at least analytic's mean minus a tolerance: analytic's s.e.m. over its seeds when it has one (two
    or more seeds), else 0.5 points (``tolerance``, ``tolerance_rule`` say which). ``per_seed`` holds None for a
    seed that never matches, ``matched`` the fraction that do. ``median``, ``q25``, ``q75`` are numpy's
    (linear-interpolation) percentiles over *all* search seeds with a never-matching seed counted as
    +infinity: a quantile that falls on such a seed, or interpolates towards one, is None ("never") — so the
    median is None when half or more of the seeds never match. ``ratio_*``: the same divided by analytic's
    budget.
  * ``regret_at_analytic_budget`` — per search seed, analytic's mean test top-1 minus the test top-1 of the
    seed's incumbent once it has spent analytic's budget (its last incumbent at a budget ≤ analytic's;
    positive = analytic better): ``mean`` and the 95 % band ``lo``, ``hi`` (2.5th / 97.5th percentiles) over the
    seeds that hold an incumbent by then. A seed that has not finished a single configuration within analytic's
    budget has no incumbent and no regret: it is left out of mean and band and counted in ``no_incumbent``
    (all None when no seed has one).
"""
from __future__ import annotations

import math

import numpy as np

DEFAULT_TOLERANCE = 0.5   # test top-1 points, when analytic has no s.e.m.
BAND = (2.5, 97.5)        # percentiles over search seeds


def tolerance(analytic_row: dict) -> tuple[float, str]:
    """(tolerance in points, the rule that gave it): analytic's s.e.m. over its seeds, else 0.5 points."""
    sem, n = analytic_row.get("top1_sem"), int(analytic_row.get("seeds") or 0)
    if sem is not None and n >= 2 and math.isfinite(float(sem)):
        return float(sem), f"analytic's s.e.m., {n} seeds"
    return DEFAULT_TOLERANCE, f"{DEFAULT_TOLERANCE:g} points (analytic has no s.e.m.: {n} seed(s))"


def quantile_inf(values: list[float | None], q: float) -> float | None:
    """numpy's linear-interpolation percentile ``q`` of ``values`` with None as +infinity; None when the result
    involves an infinite value (it lands on one, or interpolates towards one)."""
    x = sorted(math.inf if v is None else float(v) for v in values)
    if not x:
        return None
    h = (len(x) - 1) * q / 100.0
    lo, hi = math.floor(h), math.ceil(h)
    frac = h - lo
    if math.isinf(x[lo]) or (frac > 0 and math.isinf(x[hi])):
        return None
    return x[lo] + frac * (x[hi] - x[lo]) if frac > 0 else x[lo]


def incumbent_top1(trace, top1: list[float]) -> tuple[list, list]:
    """(budgets, incumbent test top-1) after every spend of one search run; None before its first incumbent."""
    return list(trace.epochs), [None if i < 0 else top1[i] for i in trace.incumbent]


def first_match(budgets: list, values: list, target: float) -> float | None:
    """The first budget whose incumbent value is at least ``target`` (None if never)."""
    return next((b for b, v in zip(budgets, values) if v is not None and v >= target - 1e-9), None)


def held_at(budgets: list, values: list, budget: float) -> float | None:
    """The incumbent value held once ``budget`` is spent: the last at a budget ≤ ``budget`` (None if none)."""
    held = None
    for b, v in zip(budgets, values):
        if b > budget + 1e-9:
            break
        held = v
    return held


def budget_to_match(curves: list[tuple[list, list]], target: float, analytic_budget: float) -> dict:
    """``budget_to_match`` of one method: per seed, median, IQR, matched fraction (see the module docstring)."""
    per_seed = [first_match(b, v, target) for b, v in curves]
    per_seed = [None if b is None else (int(b) if float(b).is_integer() else float(b)) for b in per_seed]
    out = {"per_seed": per_seed, "matched": sum(b is not None for b in per_seed) / max(len(per_seed), 1),
           "matched_seeds": sum(b is not None for b in per_seed), "seeds": len(per_seed)}
    for key, q in (("median", 50), ("q25", 25), ("q75", 75)):
        v = quantile_inf(per_seed, q)
        out[key] = v
        out[f"ratio_{key}"] = None if v is None or not analytic_budget else v / analytic_budget
    return out


def regret_at_budget(curves: list[tuple[list, list]], analytic_mean: float, budget: float) -> dict:
    """``regret_at_analytic_budget`` of one method (see the module docstring)."""
    held = [held_at(b, v, budget) for b, v in curves]
    regrets = [analytic_mean - h for h in held if h is not None]
    out = {"per_seed": [None if h is None else analytic_mean - h for h in held],
           "no_incumbent": sum(h is None for h in held), "budget": budget}
    if not regrets:
        return {**out, "mean": None, "lo": None, "hi": None}
    lo, hi = np.percentile(regrets, BAND)
    return {**out, "mean": float(np.mean(regrets)), "lo": float(lo), "hi": float(hi)}


def per_seed_stats(traces: list, top1: list[float], analytic: dict | None) -> tuple[dict | None, dict | None]:
    """(budget_to_match, regret_at_analytic_budget) of one method's traces; (None, None) without analytic.
    ``analytic``: the anytime payload's analytic point with its ``tolerance``."""
    if analytic is None:
        return None, None
    curves = [incumbent_top1(t, top1) for t in traces]
    target = analytic["top1_mean"] - analytic["tolerance"]
    return (budget_to_match(curves, target, analytic["budget"]),
            regret_at_budget(curves, analytic["top1_mean"], analytic["budget"]))


def _x(v: float | None) -> str:
    return "never" if v is None else f"{v:.2f}".rstrip("0").rstrip(".")


def statement(method: str, d: dict) -> str:
    """One method's anytime sentence: "median k× analytic's budget (IQR a–b×), m/20 seeds match; regret at 1× r
    [lo, hi]" (the per-seed figures, not the mean-curve crossing; 1× = at analytic's own budget)."""
    b, r = d["budget_to_match"][method], d["regret_at_analytic_budget"][method]
    median = "never" if b["ratio_median"] is None else f"{_x(b['ratio_median'])}× analytic's budget"
    q25, q75 = b["ratio_q25"], b["ratio_q75"]
    iqr = f"{_x(q25)}–{_x(q75)}×" if q75 is not None else f"{_x(q25)}{'' if q25 is None else '×'}–never"
    text = f"{method}: median {median} (IQR {iqr}), {b['matched_seeds']}/{b['seeds']} seeds match"
    if r["mean"] is None:
        return text + f"; no incumbent at analytic's budget ({r['no_incumbent']}/{b['seeds']} seeds)"
    text += f"; regret at 1× {r['mean']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]"
    return text + (f" ({r['no_incumbent']} seed(s) without an incumbent)" if r["no_incumbent"] else "")


def statements(loss: str, d: dict) -> list[str]:
    """The per-loss anytime lines for the terminal and compare.md; [] without an analytic point."""
    a = d.get("analytic")
    if a is None or not d.get("budget_to_match"):
        return []
    head = (f"anytime {loss}: analytic {a['top1_mean']:.2f} % at {a['budget']} trial-epochs; a seed matches at "
            f">= {a['top1_mean'] - a['tolerance']:.2f} % ({a['tolerance_rule']})")
    return [head] + [f"  {statement(m, d)}" for m in d["budget_to_match"]]


def draw_matches(ax, d: dict) -> None:
    """On a trial-epochs panel: the match level (analytic's mean − tolerance, dotted), and per method (colour
    C<i>, in ``d["methods"]`` order, slightly apart vertically) its median budget to match (marker) and
    interquartile range (bar; dashed to the grid's budget where the 75th percentile is "never")."""
    a = d["analytic"]
    if a is None or "tolerance" not in a:   # an anytime.json from before the per-seed figures
        return
    level = a["top1_mean"] - a["tolerance"]
    ax.axhline(level, color="k", linestyle=":", linewidth=0.8, label=f"match level (analytic − {a['tolerance']:.2f})")
    methods = list(d["methods"])
    lows = [min(c["top1_lo"]) for c in d["methods"].values() if c["top1_lo"]]
    span = max(d["grid"]["top1_mean"] - min(lows + [level]), 1.0)
    for i, method in enumerate(methods):
        b = (d.get("budget_to_match") or {}).get(method)
        if b is None or b["q25"] is None:
            continue
        y = level - 0.025 * span * (i + 1)
        right = b["q75"] if b["q75"] is not None else d["grid"]["budget"]
        ax.plot([b["q25"], right], [y, y], color=f"C{i}", linewidth=2.2, solid_capstyle="butt",
                linestyle="-" if b["q75"] is not None else "--")
        if b["median"] is not None:
            ax.plot([b["median"]], [y], "o", color=f"C{i}", markersize=6, markeredgecolor="k", zorder=6)


def report_lines(payload: dict) -> list[str]:
    """Per loss, the per-search-seed anytime statements (:func:`statements`): median budget to match
    with its IQR, the seeds that match, the regret at analytic's budget — not the mean-curve crossing."""
    return [line for loss, d in payload["losses"].items() for line in statements(loss, d)]


def append_to_compare_md(storage, name: str, lines: list[str]) -> None:
    """compare.md (when written) gains an "anytime" section with ``lines``."""
    if not storage.exists(name, "compare.md"):
        return
    with storage.fs.open_input_stream(storage.path(name, "compare.md")) as f:
        text = f.read().decode()
    md = ("\n## anytime (replay, per search seed; `anytime.json`, `anytime.png`)\n\n"
          + "\n".join(("  - " if line.startswith(" ") else "- ") + line.strip() for line in lines) + "\n")
    storage.write_bytes((text.rstrip("\n") + "\n" + md).encode(), name, "compare.md")
