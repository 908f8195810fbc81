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
    how = (f"{rounds} round(s) of {min(trials, concurrency)} trial(s) at ~{per_trial:.3g} s; {model} "
           f"{rate['examples_per_second']:,} examples/s on {rate['machine']}")
    return seconds, how


def describe(seconds: float) -> str:
    if seconds < 120:
        return f"~{seconds:.0f} s"
    if seconds < 7200:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def concurrency(req, fixed) -> tuple[int, str]:
    """Trials at once on this machine's CPUs (the embedded Ray's; a cluster's ``--address`` may have more)."""
    import os

    capacity = {"CPU": float(os.cpu_count() or 1), "GPU": 0.0}
    n = 1 if req.use_gpu else fixed.resources.concurrency(capacity)
    return n, "this machine's CPUs" if req.address is None else "this machine's CPUs; the cluster's may differ"


def print_plan(req, phases: dict, storage, resume_name: str | None) -> int:
    """``--dry-run``'s report: per phase ``{phase: (Fixed, trial hyperparameters, {loss: label})}`` the
    trials per loss, trial-epochs and the estimate; with ``resume_name`` the finished trials a resume keeps."""
    from services import salvage
    from services.spec import TrialSpec

    print(f"dry run: --mode {req.mode} on {req.dataset} (K = {req.num_classes}); nothing started, nothing stored")
    total_trials = total_epochs = 0
    seconds, notes = 0.0, set()
    for phase, (fixed, hparams, labels) in phases.items():
        epochs = int(fixed.train["epochs"])
        per_loss: dict = {}
        for hp in hparams:
            per_loss[hp["loss"]] = per_loss.get(hp["loss"], 0) + 1
        kept = 0
        sampled = hparams and hparams[0]["loss"] == "any"   # a searcher picks the configurations
        if resume_name and phase != "train" and not sampled:
            name = f"{resume_name}-{phase}" if req.mode == "all" else resume_name
            kept = len(salvage.plan(storage, name, [TrialSpec.from_hparams(fixed, hp) for hp in hparams])[0])
        losses = ", ".join(f"{labels.get(loss, loss).upper()} {n}" for loss, n in per_loss.items())
        if sampled:
            losses = f"losses and parameters chosen by --search {req.search}"
        todo = len(hparams) - kept
        print(f"  {phase:<9} {len(hparams)} trial(s) ({losses}) x {epochs} epoch(s) = {len(hparams) * epochs} "
              f"trial-epochs" + (f"; {kept} finished and kept, {todo} to run" if resume_name else ""))
        n, where = concurrency(req, fixed)
        est = sweep_seconds(trials=todo, concurrency=n, epochs=epochs, model=fixed.train["model"],
                            examples=train_examples(req.dataset, req.dataset_kwargs, req.val_fraction),
                            device="cuda" if req.use_gpu else "cpu", num_workers=fixed.resources.num_workers)
        if est is None and todo:
            notes.add(f"no measured throughput for {fixed.train['model']} with {req.dataset}")
        elif est is not None:
            seconds += est[0]
            notes.add(f"{n} trial(s) at once on {where}")
        total_trials, total_epochs = total_trials + todo, total_epochs + todo * epochs
    line = f"  total     {total_trials} trial(s) to run, {total_epochs} trial-epochs"
    if seconds:
        line += f"; estimate {describe(seconds)} unloaded"
    print(line + (f" ({'; '.join(sorted(notes))})" if notes else ""))
    if req.mode in ("analytic", "all") and req.pick == "pilot":
        print(f"  + up to {req.pilots} pilot trial(s) per calibrated loss of {req.pilot_fraction:g} x the epochs")
    return 0


def print_estimate(req, fixed, trials: int) -> float | None:
    """One line before a sweep: its expected time (services.estimate), or why there is none; the seconds."""
    from services.cluster import cluster_capacity

    t = fixed.train
    device = "cuda" if req.use_gpu else "cpu"
    capacity = cluster_capacity()
    concurrency = 1 if (req.use_gpu and capacity["GPU"] == 0) else fixed.resources.concurrency(capacity)
    est = sweep_seconds(trials=trials, concurrency=concurrency, epochs=int(t["epochs"]), model=t["model"],
                                 examples=train_examples(req.dataset, req.dataset_kwargs, req.val_fraction),
                                 device=device, num_workers=fixed.resources.num_workers)
    if est is None:
        print(f"estimate: none (no measured throughput for {t['model']} on {device} with {req.dataset})", flush=True)
        return None
    seconds, how = est
    print(f"estimate: {describe(seconds)} unloaded ({how})", flush=True)
    return seconds
