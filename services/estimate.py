"""How long a sweep will take, said before it starts (``presets.THROUGHPUT``: measured, machine-bound).

estimate = Ray's start and stop + rounds × (epochs × examples ÷ throughput [+ a Ray Train run's start-up
and teardown, for multi-worker trials]) + a worker's first-trial set-up, with rounds = ⌈trials ÷ trials
at once⌉ (all trials alike; Optuna's ASHA stops some early, so its estimate is an upper bound). None
where no throughput is measured for the model and device.
"""
from __future__ import annotations

import math

from robustloss_core import presets


def train_examples(dataset: str, dataset_kwargs: dict, val_fraction: float) -> int | None:
    """Examples a trial trains on per epoch (the validation hold-out excluded)."""
    if dataset.startswith("synthetic"):
        from robustloss_core.datasets import SYNTHETIC_DEFAULTS

        n = int(dataset_kwargs.get("classes", SYNTHETIC_DEFAULTS["classes"])) * int(
            dataset_kwargs.get("train_per_class", SYNTHETIC_DEFAULTS["train_per_class"]))
    elif dataset in presets.DATASET_EXAMPLES:
        n = presets.DATASET_EXAMPLES[dataset][0]
    else:
        return None
    return int(n * (1.0 - val_fraction))


def sweep_seconds(*, trials: int, concurrency: int, epochs: int, examples: int | None, model: str,
                  device: str, num_workers: int = 1) -> tuple[float, str] | None:
    """(seconds, how it was computed) for ``trials`` alike trials, ``concurrency`` at a time; a trial of
    ``num_workers`` > 1 is a Ray Train run and adds ``presets.TRAIN_RUN_SECONDS``."""
    rate = presets.THROUGHPUT.get((model, device))
    if rate is None or examples is None or trials < 1:
        return None
    per_trial = epochs * examples / rate["examples_per_second"]
    if num_workers > 1:
        per_trial += presets.TRAIN_RUN_SECONDS
    rounds = math.ceil(trials / max(1, concurrency))
    fixed = presets.SWEEP_FIXED_SECONDS
    seconds = fixed["ray"] + fixed["first_trial"] + rounds * per_trial
    how = (f"{rounds} round(s) of {min(trials, concurrency)} trial(s) at ~{per_trial:.3g} s each, from {model}'s "
           f"{rate['examples_per_second']:,} examples/s per {rate['per']} measured on {rate['machine']}")
    return seconds, how


def describe(seconds: float) -> str:
    if seconds < 120:
        return f"~{seconds:.0f} s"
    if seconds < 7200:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"
