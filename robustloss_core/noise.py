"""Synthetic label noise (Sec. 4 of the paper): symmetric and asymmetric, seeded, clean labels kept.

Symmetric, rate η (``kind="symmetric"``):
  * ``variant="paper"`` (default): with probability η a label is replaced by a class drawn uniformly
    from all K classes, so it may stay correct: the expected fraction changed is η(K − 1)/K.
  * ``variant="flip"`` (APL's code): with probability η a label is replaced by a class drawn uniformly
    from the K − 1 *other* classes: the expected fraction changed is η.
Asymmetric, rate η (``kind="asymmetric"``): with probability η a label of a mapped class becomes its
fixed partner ``ASYMMETRIC_MAPS[dataset][y]``; classes absent from the map never change. Maps and their
sources are in ``ASYMMETRIC_SOURCES``; for CIFAR-100 ``variant="paper"`` uses the true super-classes
(Zhang & Sabuncu 2018), ``variant="blocks"`` APL's consecutive index blocks [5i, 5i + 5).

``apply_label_noise`` draws everything from ``numpy.random.default_rng(seed)``: same inputs and seed,
same labels. It returns a :class:`NoisyLabels` with the noisy and clean labels, the mask of changed
labels and the realised rate (fraction changed), and records kind, variant and the map used so the
run's config can name them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from .presets import resolve_dataset

__all__ = ["NoisyLabels", "apply_label_noise", "ASYMMETRIC_MAPS", "ASYMMETRIC_SOURCES", "CIFAR100_COARSE",
           "NOISE_KINDS", "NOISE_VARIANTS", "asymmetric_map"]

# CIFAR-100 fine label -> coarse (super-class) label: the dataset's own table (the "coarse_labels" that
# accompany "fine_labels" in cifar-100-python/train), indexed by fine label 0..99.
CIFAR100_COARSE: tuple[int, ...] = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3,
    3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10,
    16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19,
    2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)


def _cycle_within(groups: list[list[int]]) -> dict[int, int]:
    """Each member of a group maps to the next member (ascending order), the last to the first."""
    out = {}
    for g in groups:
        g = sorted(g)
        out.update({c: g[(i + 1) % len(g)] for i, c in enumerate(g)})
    return out


ASYMMETRIC_MAPS: dict[str, dict[int, int]] = {
    # truck→automobile, bird→airplane, deer→horse, cat↔dog
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    "cifar100": _cycle_within([[f for f in range(100) if CIFAR100_COARSE[f] == c] for c in range(20)]),
    "cifar100-blocks": _cycle_within([list(range(5 * i, 5 * i + 5)) for i in range(20)]),
    # boot→sneaker, sneaker→sandal, pullover→shirt, coat↔dress
    "fashionmnist": {9: 7, 7: 5, 2: 6, 4: 3, 3: 4},
}
ASYMMETRIC_SOURCES: dict[str, str] = {
    "cifar10": "Zhang & Sabuncu 2018; src: HanxunH/Active-Passive-Losses@04bce53 dataset.py",
    "cifar100": "Zhang & Sabuncu 2018: next class within the true super-class, circularly (reconstructed choice)",
    "cifar100-blocks": "src: HanxunH/Active-Passive-Losses@04bce53 dataset.py: next class within blocks [5i, 5i+5)",
    "fashionmnist": "reconstructed: from the GCE paper (Zhang & Sabuncu 2018), unverified",
}
# which map each (preset column, asymmetric variant) uses; a dataset name resolves to its column through the
# one dataset map (presets.resolve_dataset: fmnist -> fashionmnist), as for every other preset decision
_ASYM_VARIANT_MAP = {("cifar10", "paper"): "cifar10", ("cifar100", "paper"): "cifar100",
                     ("cifar100", "blocks"): "cifar100-blocks", ("fashionmnist", "paper"): "fashionmnist"}

NOISE_KINDS = ("none", "symmetric", "asymmetric")
NOISE_VARIANTS: dict[str, tuple[str, ...]] = {"none": ("paper", "flip", "blocks"), "symmetric": ("paper", "flip"),
                                              "asymmetric": ("paper", "blocks")}


@dataclass
class NoisyLabels:
    """Result of :func:`apply_label_noise`. ``rate`` is the realised fraction of labels changed."""

    noisy: np.ndarray          # int64 [N]
    clean: np.ndarray          # int64 [N]
    is_noisy: np.ndarray       # bool [N], noisy != clean
    rate: float                # realised fraction changed
    kind: str
    variant: str
    requested_rate: float
    mapping: str | None = None  # ASYMMETRIC_MAPS key used (asymmetric only)
    seed: int = 0
    num_classes: int = 0

    def to_dict(self) -> dict:
        """JSON-serialisable summary (no per-example arrays)."""
        return {"kind": self.kind, "variant": self.variant, "requested_rate": self.requested_rate,
                "rate": self.rate, "num_noisy": int(self.is_noisy.sum()), "num_examples": int(self.clean.size),
                "mapping": self.mapping, "seed": self.seed, "num_classes": self.num_classes}


def asymmetric_map(dataset: str, variant: str = "paper") -> tuple[str, dict[int, int]]:
    """(map key, map) used for asymmetric noise on ``dataset`` (its preset column's, presets.resolve_dataset);
    ValueError if it has none, or naming the allowed names for an unknown dataset."""
    ds = resolve_dataset(dataset) if dataset is not None else None   # None: no dataset, no map (not cifar10's)
    key = _ASYM_VARIANT_MAP.get((ds, variant))
    if key is None:
        with_map = sorted({d for d, _ in _ASYM_VARIANT_MAP})
        if ds in with_map:
            allowed = sorted(v for d, v in _ASYM_VARIANT_MAP if d == ds)
            raise ValueError(f"asymmetric noise variant {variant!r} is not defined for {ds}; allowed: {allowed}")
        raise ValueError(f"asymmetric noise needs a class map, dataset {dataset!r} has none; "
                         f"datasets with one: {', '.join(with_map)}")
    return key, ASYMMETRIC_MAPS[key]


def apply_label_noise(labels, num_classes: int, *, kind: str, rate: float, seed: int,
                      variant: str = "paper", dataset: str | None = None) -> NoisyLabels:
    """Corrupt ``labels`` (ints in [0, num_classes)) with ``kind`` noise of rate ``rate`` ∈ [0, 1].

    kind: "none" | "symmetric" | "asymmetric"; variant: symmetric "paper" (uniform over all K, may stay
    correct) or "flip" (uniform over the K − 1 others); asymmetric "paper" (dataset's map) or "blocks"
    (CIFAR-100 only). ``dataset`` names the asymmetric map. Deterministic in ``seed``.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; allowed: {', '.join(NOISE_KINDS)}")
    if variant not in NOISE_VARIANTS[kind]:
        raise ValueError(f"unknown {kind} noise variant {variant!r}; allowed: {', '.join(NOISE_VARIANTS[kind])}")
    if isinstance(rate, bool) or not isinstance(rate, Real) or not math.isfinite(float(rate)) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate {rate!r} is outside the allowed range [0, 1]")
    rate = float(rate)
    if kind == "none" and rate != 0.0:
        raise ValueError(f"noise rate {rate} given with noise kind 'none'; use rate 0 or kind symmetric/asymmetric")
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 2:
        raise ValueError(f"num_classes {num_classes!r} must be an integer >= 2")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ValueError(f"noise seed {seed!r} must be an integer")
    clean = np.asarray(labels)
    if clean.ndim != 1 or (clean.size and not np.issubdtype(clean.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-D integer array, got shape {clean.shape} dtype {clean.dtype}")
    clean = clean.astype(np.int64, copy=True)
    if clean.size and (clean.min() < 0 or clean.max() >= num_classes):
        raise ValueError(f"labels span [{clean.min()}, {clean.max()}], outside [0, {num_classes - 1}] for "
                         f"num_classes={num_classes}")
    n, K = clean.size, int(num_classes)
    rng = np.random.default_rng(int(seed))
    mapping = None
    if kind == "none":
        noisy = clean.copy()
    elif kind == "symmetric":
        hit = rng.random(n) < rate
        if variant == "paper":
            draw = rng.integers(0, K, size=n)
        else:  # flip: uniform over the K - 1 other classes
            draw = (clean + rng.integers(1, K, size=n)) % K
        noisy = np.where(hit, draw, clean)
    else:
        mapping, amap = asymmetric_map(dataset, variant)
        if max(max(amap), max(amap.values())) >= K:
            raise ValueError(f"asymmetric map {mapping!r} needs {max(amap) + 1} classes, num_classes={K}")
        partner = np.arange(K, dtype=np.int64)
        partner[list(amap)] = list(amap.values())
        hit = rng.random(n) < rate
        noisy = np.where(hit, partner[clean], clean)
    noisy = noisy.astype(np.int64)
    is_noisy = noisy != clean
    return NoisyLabels(noisy=noisy, clean=clean, is_noisy=is_noisy, rate=float(is_noisy.mean()) if n else 0.0,
                       kind=kind, variant=variant, requested_rate=rate, mapping=mapping, seed=int(seed),
                       num_classes=K)
