"""Issue 11/12 evidence at K = 1000: which losses learn with many classes, under a shared LR fixed in
advance and under a per-loss LR searched on the (noisy) validation split?

    .venv/bin/python benchmarks/many_classes_k1000.py                    # full run (~20-30 min of one core)
    .venv/bin/python benchmarks/many_classes_k1000.py --smoke --out /tmp/x   # seconds (CI)

Data: ``synthetic-easy`` (sigma 1), K = 1000, ``PER_CLASS`` training examples per class (10 % held out by
the engine as the validation split), ``TEST_PER_CLASS`` test examples per class, no label noise (the
question is learnability; nearest-prototype oracle 94.0 %, datasets.synthetic_oracle_top1). MLP1024,
SGD momentum 0.9, no weight decay, batch 128, constant LR, ``EPOCHS`` epochs. Losses: CE; GCE q = 0.7
(published CIFAR-10 value); GCE+ with q = theory.default_calibration("gce", 1000, dataset="synthetic",
reference_classes=K_ref).params for K_ref = 10 and 100 (Sec. 3.3: match the back-propagation error at
the initial logit distribution); MAE* = MAE with ε = theory.logit_bias(1000) (Eq. 4, c = 0.25).

LR protocols: "shared" = every loss at ``SHARED_LR`` (fixed in advance), seeds 0, 1, 2; "searched" = per
loss the LR of ``LR_GRID`` with the best final validation top-1 on seed 0 (ties: the smaller LR; a
diverged run, non-finite loss, is never chosen), then seeds 1, 2 at that LR. Identical configurations are trained once (the runs are deterministic on CPU).
Each run is ``robustloss_core.engine.train`` in a multiprocessing Pool of 1 process (1 torch thread).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from noise_k10 import _init_worker, finite, machine, mean_sem  # noqa: E402  (same machine record and statistics)

KEEP = ("val_top1", "val_top1_best", "test_top1", "test_top1_at_best", "best_epoch", "train_acc_noisy", "train_loss")

K = 1000
PER_CLASS, TEST_PER_CLASS, EPOCHS, BATCH = 16, 5, 5, 128
SHARED_LR = 0.1
LR_GRID = [0.03, 0.1, 0.3]
SEEDS = [0, 1, 2]
SMOKE = dict(classes=50, per_class=4, test_per_class=2, epochs=1, grid=[0.1], seeds=[0, 1])


def loss_specs(classes: int) -> dict:
    """label -> (registered loss, loss_params, logit bias)."""
    from robustloss_core import theory

    def gce_plus(k_ref):
        return theory.default_calibration("gce", classes, dataset="synthetic", reference_classes=k_ref).params

    return {"CE": ("ce", {}, 0.0), "GCE q=0.7": ("gce", {"q": 0.7}, 0.0),
            "GCE+ (K_ref=10)": ("gce", gce_plus(10), 0.0), "GCE+ (K_ref=100)": ("gce", gce_plus(100), 0.0),
            "MAE*": ("mae", {}, theory.logit_bias(classes))}


def config(spec, lr, seed, size) -> dict:
    loss, params, eps = spec
    return {"dataset": "synthetic-easy",
            "dataset_args": {"classes": size["classes"], "train_per_class": size["per_class"],
                             "test_per_class": size["test_per_class"]},
            "model": "mlp1024", "loss": loss, "loss_params": dict(params), "logit_bias": eps, "lr": lr,
            "lr_schedule": {"kind": "constant"}, "momentum": 0.9, "weight_decay": 0.0, "batch_size": BATCH,
            "epochs": size["epochs"], "seed": seed, "device": "cpu", "val_fraction": 0.1}


def run_one(job: dict) -> dict:
    """One run's row; a diverged run (NonFiniteLossError) has ``diverged`` set and no metrics."""
    from robustloss_core import engine

    t0 = time.time()
    row = {k: v for k, v in job.items() if k != "config"}
    try:
        out = engine.train(job["config"])
    except engine.NonFiniteLossError as exc:
        return {**row, **dict.fromkeys(KEEP), "diverged": str(exc), "seconds": time.time() - t0}
    return {**row, **{k: out[k] for k in KEEP}, "diverged": None,
            "curve_test_top1": [m["test_top1"] for m in out["history"]], "seconds": time.time() - t0}


class Runner:
    """Runs jobs through a Pool of 1, once per distinct (loss, lr, seed)."""

    def __init__(self, pool, specs, size):
        self.pool, self.specs, self.size, self.done = pool, specs, size, {}

    def run(self, wanted: list[tuple[str, float, int]]) -> None:
        todo = [w for w in dict.fromkeys(wanted) if w not in self.done]
        jobs = [{"loss": lab, "lr": lr, "seed": s, "config": config(self.specs[lab], lr, s, self.size)}
                for lab, lr, s in todo]
        for row in self.pool.imap(run_one, jobs):
            self.done[(row["loss"], row["lr"], row["seed"])] = row
            what = f"DIVERGED ({row['diverged']})" if row["diverged"] else (
                f"val {row['val_top1']:.2f} test {row['test_top1']:.2f} | best val {row['val_top1_best']:.2f} "
                f"(epoch {row['best_epoch']}) test {row['test_top1_at_best']:.2f}")
            print(f"[{len(self.done)}] {row['loss']} lr {row['lr']:g} seed {row['seed']}: {what} "
                  f"({row['seconds']:.0f}s)", flush=True)

    def rows(self, lab, lr, seeds):
        return [self.done[(lab, lr, s)] for s in seeds]


def stats(rows) -> dict:
    """mean ± s.e.m. over seeds; NaN (and the count of diverged seeds) where a seed diverged."""
    out = {"diverged_seeds": sum(1 for r in rows if r["diverged"])}
    if out["diverged_seeds"]:
        return {**out, **{k: {"mean": math.nan, "sem": math.nan, "values": [r[k] for r in rows]}
                          for k in ("test_top1", "test_top1_at_best", "val_top1")}}
    for key in ("test_top1", "test_top1_at_best", "val_top1"):
        m, s = mean_sem([r[key] for r in rows])
        out[key] = {"mean": m, "sem": s, "values": [r[key] for r in rows]}
    return out


def fmt(d):
    if math.isnan(d["mean"]):
        return "diverged"
    return f"{d['mean']:.2f} ± {d['sem']:.2f}" if not math.isnan(d["sem"]) else f"{d['mean']:.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="K = 50, tiny data, 1 epoch, 1 lr, 2 seeds (seconds)")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results; --smoke: a temp folder)")
    a = p.parse_args(argv)
    out_dir = a.out or (os.path.join(tempfile.gettempdir(), "robustloss-smoke") if a.smoke
                        else os.path.join(HERE, "results"))
    os.makedirs(out_dir, exist_ok=True)
    size = SMOKE if a.smoke else dict(classes=K, per_class=PER_CLASS, test_per_class=TEST_PER_CLASS, epochs=EPOCHS,
                                      grid=LR_GRID, seeds=SEEDS)
    specs = loss_specs(size["classes"])
    seeds, grid = size["seeds"], size["grid"]
    start, t0 = machine(), time.time()
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1, initializer=_init_worker) as pool:
        r = Runner(pool, specs, size)
        r.run([(lab, lr, seeds[0]) for lab in specs for lr in dict.fromkeys([SHARED_LR, *grid])])   # seed 0
        chosen = {}
        for lab in specs:
            scores = {lr: r.done[(lab, lr, seeds[0])]["val_top1"] for lr in grid}
            scores = {lr: -math.inf if v is None else v for lr, v in scores.items()}   # diverged: never chosen
            chosen[lab] = max(sorted(scores), key=lambda v: scores[v])
        r.run([(lab, lr, s) for lab in specs for lr in (SHARED_LR, chosen[lab]) for s in seeds[1:]])
    summary = {}
    for lab in specs:
        summary[lab] = {"loss": specs[lab][0], "params": specs[lab][1], "logit_bias": specs[lab][2],
                        "shared": {"lr": SHARED_LR, **stats(r.rows(lab, SHARED_LR, seeds))},
                        "searched": {"lr": chosen[lab], "val_top1_seed0_by_lr":
                                     {lr: r.done[(lab, lr, seeds[0])]["val_top1"] for lr in grid},
                                     **stats(r.rows(lab, chosen[lab], seeds))}}
    from robustloss_core import datasets

    result = {"benchmark": "many_classes_k1000", "smoke": a.smoke, "wall_seconds": time.time() - t0,
              "machine_start": start, "machine_end": machine(),
              "setup": {"dataset": "synthetic-easy", "classes": size["classes"], "train_per_class": size["per_class"],
                        "test_per_class": size["test_per_class"], "val_fraction": 0.1, "noise": "none",
                        "epochs": size["epochs"], "batch_size": BATCH, "lr_schedule": "constant", "momentum": 0.9,
                        "weight_decay": 0.0, "model": "mlp1024", "shared_lr": SHARED_LR, "lr_grid": grid,
                        "seeds": seeds, "lr_choice": "searched: best final val_top1 on seed 0, then seeds 1, 2",
                        "oracle_top1": datasets.synthetic_oracle_top1(size["classes"], 1.0,
                                                                      samples=20_000 if a.smoke else 200_000)},
              "summary": summary, "runs": list(r.done.values())}
    path = os.path.join(out_dir, "many_classes_k1000.json")
    with open(path, "w") as f:
        json.dump(finite(result), f, indent=1)
    n = len(seeds)
    print(f"\n### K = {size['classes']}, no noise (synthetic-easy, MLP1024, {size['epochs']} epochs, {n} seeds; "
          f"searched LR chosen on seed 0)\n")
    print("| loss | params | shared lr | final test top-1 | test top-1 at best val | searched lr | final test top-1 |"
          " test top-1 at best val |")
    print("|---|---|---|---|---|---|---|---|")
    for lab, e in summary.items():
        par = ", ".join(f"{k}={v:.3g}" for k, v in e["params"].items()) or (f"ε={e['logit_bias']:.3f}"
                                                                           if e["logit_bias"] else "-")
        sh, se = e["shared"], e["searched"]
        print(f"| {lab} | {par} | {sh['lr']:g} | {fmt(sh['test_top1'])} | {fmt(sh['test_top1_at_best'])} | "
              f"{se['lr']:g} | {fmt(se['test_top1'])} | {fmt(se['test_top1_at_best'])} |")
    print(f"\nchance {100 / size['classes']:.2f} %, oracle {result['setup']['oracle_top1']:.1f} %; wrote {path} "
          f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
