"""Resumable runner for the glyph K-sweep (printed Chinese characters, ``--dataset glyphs``): one JSON per run.

    .venv/bin/python benchmarks/glyphs_runs.py pilot    # the learning rates, seed 0, 40 % noise, K = 100 and 1000
    .venv/bin/python benchmarks/glyphs_runs.py ksweep   # K in {10, 100, 1000} x {0, 40 %} x 7 losses x 3 seeds
    .venv/bin/python benchmarks/glyphs_ksweep.py        # -> results/glyphs_ksweep.{json,md,png}

Each run is ``robustloss_core.engine.train`` (one torch thread) in a pool of ``--procs`` processes; a finished
run writes ``results/glyphs/<name>.json`` (config, per-epoch history, wall time, host) and is never rerun, so a
killed stage restarts with the runs it lacks (``fmnist_runs.run_all``).

The plan, written before the first run:
* setup (one for every K and loss): MLP1024, SGD momentum 0.9, batch 128, no weight decay, 20 epochs, lr·0.95^epoch,
  the project's synthetic-column defaults; the glyph set's defaults (20 training faces × 2 jittered renderings per
  class, 5 held-out faces for test, 32 px); 10 % of the training images held out with their noisy labels.
* losses: CE; MAE; MAE* (ε(K), Eq. 4, σ = 1 and c = 0.25, the product's defaults); GCE at the published q = 0.7;
  GCE+ (q calibrated from K_ref = 10, the paper's example); NF-MAE with the published CIFAR-10 parameters
  (α = β = 1, γ = 0.5) at every K and NF-MAE+ with analytic mode's parameters (the default reference K_ref = 100,
  the one the admissibility rule accepts: from K_ref = 10 every member is rejected at K = 100 and 1000).
* pilot: lr ∈ {0.003, 0.01, 0.03, 0.1, 0.3} per loss at K = 100 and K = 1000, 40 % noise, seed 0; the pick is the lr
  with the best noisy-validation top-1 at the last epoch (data a practitioner has); K = 10 uses K = 100's pick.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import fmnist_runs as fr  # noqa: E402  (the resumable pool: run_all / find_record)

OUT = os.path.join(HERE, "results", "glyphs")
SETUP = {"dataset": "glyphs", "model": "mlp1024", "weight_decay": 0.0, "noise_variant": "paper", "device": "cpu",
         "val_fraction": 0.1, "momentum": 0.9, "batch_size": 128, "epochs": 20,
         "lr_schedule": {"kind": "exponential", "gamma": 0.95}, "augment": False}
LABELS = ("CE", "MAE", "MAE*", "GCE", "GCE+", "NF-MAE", "NF-MAE+")
KS = (10, 100, 1000)
NOISE = (0.0, 0.4)
SEEDS = (0, 1, 2)
PILOT_LRS = (0.003, 0.01, 0.03, 0.1, 0.3)
PILOT_KS = (100, 1000)
GCE_REF_CLASSES = 10     # GCE+: q from K_ref = 10 (the paper's own example)
NF_MAE_PUBLISHED = {"alpha": 1.0, "beta": 1.0, "gamma": 0.5}


def loss_setting(label: str, K: int) -> tuple[str, float, dict]:
    """(registered loss, logit bias ε, loss parameters) of a row label at K classes."""
    from robustloss_core import theory

    if label == "CE":
        return "ce", 0.0, {}
    if label == "MAE":
        return "mae", 0.0, {}
    if label == "MAE*":
        return "mae", float(theory.logit_bias(K)), {}
    if label == "GCE":
        return "gce", 0.0, {"q": 0.7}
    if label == "GCE+":
        return "gce", 0.0, {"q": float(theory.default_calibration("gce", K, dataset="synthetic",
                                                                   reference_classes=GCE_REF_CLASSES).params["q"])}
    if label == "NF-MAE":
        return "nfl_mae", 0.0, dict(NF_MAE_PUBLISHED)
    if label == "NF-MAE+":
        cal = theory.default_calibration("nfl_mae", K, dataset="synthetic")
        if cal.rejected:
            raise RuntimeError(f"NF-MAE+ at K={K}: no admissible calibration ({cal.reason})")
        return "nfl_mae", 0.0, {k: float(v) for k, v in cal.params.items() if k in ("alpha", "beta", "gamma")}
    raise ValueError(f"unknown row label {label!r}; allowed: {', '.join(LABELS)}")


def run_config(label: str, K: int, lr: float, noise_rate: float, seed: int) -> dict:
    loss, eps, params = loss_setting(label, K)
    return {**SETUP, "dataset_args": {"classes": K}, "loss": loss, "logit_bias": eps,
            "loss_params": params, "lr": lr, "noise": "symmetric" if noise_rate > 0 else "none",
            "noise_rate": noise_rate, "seed": seed}


def name_of(c: dict) -> str:
    lp = "".join(f"_{k}{v:.4g}" for k, v in sorted(c["loss_params"].items()))
    lb = f"_eps{c['logit_bias']:.3f}" if c["logit_bias"] else ""
    return f"K{c['dataset_args']['classes']}_{c['loss']}{lb}{lp}_lr{c['lr']:g}_n{c['noise_rate']:g}_e{c['epochs']}_s{c['seed']}"


def pilot_runs() -> list[dict]:
    return [run_config(label, K, lr, 0.4, 0) for K in PILOT_KS for label in LABELS for lr in PILOT_LRS]


def pilot_pick(label: str, K: int) -> float | None:
    """The pilot's lr for ``label`` at K (K = 10: K = 100's): best last-epoch noisy-validation top-1; None until
    every pilot run of that row is done."""
    K = 100 if K == 10 else K
    scores = []
    for lr in PILOT_LRS:
        rec = fr.find_record(run_config(label, K, lr, 0.4, 0), out=OUT, namer=name_of)
        if rec is None:
            return None
        last = rec["history"][-1] if rec["status"] == "ok" and rec["history"] else {}
        scores.append((last.get("val_top1") or -1.0, lr))
    return max(scores)[1]


def ksweep_runs() -> list[dict]:
    """Every K-sweep run whose lr the pilot has fixed; seed-major (every row's seed 0 first), small K first."""
    out = []
    for seed in SEEDS:
        for K in KS:
            for rate in NOISE:
                for label in LABELS:
                    lr = pilot_pick(label, K)
                    if lr is not None:
                        out.append(run_config(label, K, lr, rate, seed))
    return out


STAGES = {"pilot": pilot_runs, "ksweep": ksweep_runs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=sorted(STAGES))
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--reverse", action="store_true", help="pending runs last-first (a second runner beside one)")
    a = ap.parse_args(argv)
    runs = STAGES[a.stage]()
    fr.run_all(runs[::-1] if a.reverse else runs, a.procs, out=OUT, namer=name_of)
    return 0


if __name__ == "__main__":
    sys.exit(main())
