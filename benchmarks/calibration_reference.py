"""Follow-up to paper_claims.py at K = 1000: why the calibrated ("+") losses did not learn there.

    .venv/bin/python benchmarks/calibration_reference.py                # ~45 min on 2 cores, resumable
    .venv/bin/python benchmarks/calibration_reference.py --report-only  # tables from the JSONL files
    .venv/bin/python benchmarks/calibration_reference.py --smoke --out /tmp/x

Sec. 3.3 calibrates a loss for K classes by matching <delta_y>(0) to a reference setting "known to
learn" at K_ref classes. paper_claims.py used K_ref = 100 (reference-params.md's default: the CIFAR-100
parameters); the paper's text names CIFAR-10 as its example reference (K_ref = 10), whose target
<delta_y>(0) is 5-30x larger. Three questions, same synthetic data and MLP1024 as paper_claims.py
(K = 1000, 25 / 10 train / test examples per class):

  A. learning rate: each row at lr in LRS (0 % noise, seed 0, 8 epochs), chosen on the final top-1 of the
     engine's validation hold-out (10 % of the training set; never the test labels);
  B. seeds and noise: the best lr of A per row, 0 % and 40 % symmetric noise, seeds 0, 1, 2;
  C. budget: the best lr, 0 % noise, seed 0, 24 epochs instead of 8.

Rows (``spec``): CE; MAE* (Eq. 4 epsilon); GCE+, NCE+MAE+ and NCE+AGCE+ calibrated from K_ref = 100 and
from K_ref = 10 (``paper_claims.loss_spec("gce+10", K)`` = ``theory.default_calibration(..., reference_classes=10)``).
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import paper_claims as pc  # noqa: E402  (shares the worker, pool, JSONL and statistics helpers)

K = 1000
ROWS = ["ce", "mae*", "gce+100", "gce+10", "nce_mae+100", "nce_mae+10", "nce_agce+100", "nce_agce+10"]
LRS = [0.01, 0.03, 0.1, 0.3]
SIZE = (25, 10, 8)          # train / test per class, epochs (as paper_claims.SIZES[1000])
LONG_EPOCHS = 24
NOISE = [0.0, 0.4]
SEEDS = [0, 1, 2]
SMOKE = dict(K=20, rows=["ce", "gce+10"], lrs=[0.1], size=(5, 2, 1), long_epochs=2, noise=[0.0], seeds=[0])


def jobs_for(specs: dict, k, lrs_of, noise, seeds, size, done) -> list[dict]:
    out = []
    for nr in noise:
        for seed in seeds:
            for label, s in specs.items():
                for lr in lrs_of(label):
                    if (label, k, float(nr), seed, float(lr), size[2]) in done:
                        continue
                    out.append(dict(label=label, K=k, noise_rate=float(nr), seed=seed, size=size, lr=lr,
                                    loss=s["loss"], loss_params=s["loss_params"], logit_bias=s["logit_bias"]))
    return out


def key(r: dict) -> tuple:
    return (r["label"], int(r["K"]), float(r["noise_rate"]), int(r["seed"]), float(r["lr"]), int(r["epochs"]))


def fmt(m, s) -> str:
    return "–" if m is None else (f"{m:.1f} ± {s:.1f}" if s is not None else f"{m:.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="seconds: K=20, 2 rows, 1 epoch, tiny data")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args(argv)

    k, rows_l, lrs, size, long_epochs, noise, seeds = K, ROWS, LRS, SIZE, LONG_EPOCHS, NOISE, SEEDS
    if a.smoke:
        k, rows_l, lrs, size, long_epochs, noise, seeds = (SMOKE[n] for n in
                                                           ("K", "rows", "lrs", "size", "long_epochs", "noise", "seeds"))
    os.makedirs(a.out, exist_ok=True)
    jsonl = os.path.join(a.out, "calibration_reference.jsonl")
    rows = pc.load_results(jsonl)
    specs = {label: pc.loss_spec(label, k) for label in rows_l}
    t0 = time.time()

    def run(jobs, tag):
        if not a.report_only:
            pc.run_pool(jobs, jsonl, a.workers, rows, t0, tag)

    done = {key(r) for r in rows}
    run(jobs_for(specs, k, lambda _: lrs, [0.0], [0], size, done), "A: lr")

    def best_lr(label):  # best final validation top-1 of phase A; ties -> larger lr; rows without it are no evidence
        cands = [r for r in rows if r["label"] == label and r["K"] == k and r["noise_rate"] == 0 and r["seed"] == 0
                 and r["epochs"] == size[2] and r["lr"] in lrs and "val_top1" in r]
        if not cands:
            return None
        return max(cands, key=lambda r: (r["val_top1"] if r["val_top1"] is not None else -1, r["lr"]))["lr"]

    done = {key(r) for r in rows}
    chosen = lambda lab: [lr for lr in [best_lr(lab)] if lr is not None]  # noqa: E731
    run(jobs_for(specs, k, chosen, noise, seeds, size, done), "B: seeds x noise")
    done = {key(r) for r in rows}
    run(jobs_for(specs, k, chosen, [0.0], [0], (*size[:2], long_epochs), done), "C: budget")

    def cell(label, lr, nr, seed=None, epochs=size[2], field="test_top1"):
        vals = [r[field] for r in rows if r["label"] == label and r["lr"] == lr and r["noise_rate"] == nr
                and r["epochs"] == epochs and (seed is None or r["seed"] == seed) and r["K"] == k]
        return pc._stats(vals)

    ce_lr = best_lr("ce")
    md = [f"# calibration_reference ({datetime.date.today().isoformat()})", "",
          f"Machine: {pc.machine()}; load average at report: {os.getloadavg()}", "",
          f"synthetic K={k}, {size[0]} / {size[1]} train / test per class, MLP1024, SGD momentum 0.9, batch 128, "
          f"LR x0.95/epoch. Final-epoch test top-1 (%).", "",
          "| row | parameters | " + " | ".join(f"A: lr={lr:g}" for lr in lrs)
          + f" | best lr | B: 0 % ({len(seeds)} seeds) | B: 40 % ({len(seeds)} seeds) | train acc (clean), 0 % | "
          + f"C: {long_epochs} epochs |",
          "|---|---|" + "---:|" * (len(lrs) + 5)]
    for label, s in specs.items():
        params = ", ".join(f"{n}={v:.4g}" for n, v in s["loss_params"].items()) or (
            f"ε={s['logit_bias']:.3f}" if s["logit_bias"] else "–")
        lr_b = best_lr(label)
        a_cells = [fmt(*cell(label, lr, 0.0, seed=0)[:2]) for lr in lrs]
        b0, b4 = (fmt(*cell(label, lr_b, nr)[:2]) for nr in (0.0, 0.4))
        tr = fmt(*cell(label, lr_b, 0.0, field="train_acc_clean")[:2])
        c = fmt(*cell(label, lr_b, 0.0, seed=0, epochs=long_epochs)[:2])
        md.append(f"| {label} | {params} | " + " | ".join(a_cells) + f" | {lr_b} | {b0} | {b4} | {tr} | {c} |")
    md += ["", f"Chance: {100 / k:.2f} %. CE's best lr: {ce_lr} (on validation; – : the rows lack val_top1, "
           "rerun phase A). Rows: `loss+K_ref` = "
           "theory.default_calibration(loss, K, reference_classes=K_ref)."]
    with open(os.path.join(a.out, "calibration_reference.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"done in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
