"""Small helpers the benchmark scripts share: strict-JSON values, seed statistics and the verdict vocabulary."""
from __future__ import annotations

import math


def finite(obj):
    """``obj`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def mean_sem(xs, *, skip_missing: bool = False) -> tuple[float, float]:
    """Mean and standard error of the mean (sample sd / √n; NaN for one value). ``skip_missing``: ignore
    None and non-finite values (NaN for none left); otherwise a NaN value (a diverged run) makes the mean NaN."""
    if skip_missing:
        xs = [x for x in xs if x is not None and math.isfinite(x)]
        if not xs:
            return math.nan, math.nan
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, math.nan
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))


# The project's one verdict vocabulary (services.compare): paired / Welch gap intervals, better | tie | worse |
# undetermined, and the README wording against the paper's direction (reproduced | contradicted | not significant).
import os as _os  # noqa: E402
import sys as _sys  # noqa: E402

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))
from services.compare import (PAPER_WORDS, VERDICTS, gap_interval, paired_ci, paper_wording, verdict,  # noqa: E402,F401
                              welch_ci)


def gap_verdict(a: dict, b: dict) -> dict:
    """{"gap", "ci95", "interval", "verdict"} of a − b from per-seed values {seed: value} (paired when the
    seeds agree, else Welch): what every benchmark script reports beside a comparison."""
    gap, ci, kind = gap_interval(a, b)
    return {"gap": gap, "ci95": ci, "interval": kind, "verdict": verdict(ci)}
