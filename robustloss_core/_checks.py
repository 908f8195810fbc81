"""Argument checks shared by the dataset builders: one line naming the value and what is allowed."""
from __future__ import annotations

import math
from numbers import Integral, Real


def int_arg(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < lo or (hi is not None and value > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}={value!r} must be an integer {rng}")
    return int(value)


def float_arg(name: str, value, lo: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= lo:
        raise ValueError(f"{name}={value!r} must be a finite number > {lo}")
    return float(value)
