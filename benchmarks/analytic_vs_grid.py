"""Analytic mode vs the baseline grid search (and Optuna TPE + ASHA), through the CLI.

    .venv/bin/python benchmarks/analytic_vs_grid.py                    # ~10-15 min on 2 cores
    .venv/bin/python benchmarks/analytic_vs_grid.py --quick --out /tmp/x   # tiny, for a check

Runs ``sweeps/run.py`` as subprocesses on one synthetic setting (default K = 200, 20 train / 10
test examples per class, 6 epochs, 1 seed, 0 % noise):

  1. ``--mode grid``   the paper's 9-value MLP1024 LR grid x each loss's reduced parameter grid
                       (benchmarks/configs/analytic_vs_grid.yaml: mae logit_bias x 2, gce q x 2);
  2. ``--mode analytic``  eps(K) from Eq. 4 for MAE*, q calibrated for GCE+, one run each at ``--lr``;
  3. ``--mode compare``   the CLI's report (best grid configuration vs analytic, compute);
  4. ``--mode grid --search optuna``  TPE + ASHA with the same trial budget as the grid;
  5. ``--mode analytic --calibration-reference 10`` (+ its compare): GCE+ calibrated from the CIFAR-10
                       setting (K_ref = 10, q = 0.7) instead of the default K_ref = 100.

Reads the ``--json-out`` files and writes ``analytic_vs_grid.{json,md}`` to ``--out``: per loss the
accuracy gap (analytic - best grid, top-1 points) and the compute ratio (analytic / grid,
worker-seconds with start-up, as the CLI accounts them), and Optuna's best accuracy and compute.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLI = [sys.executable, os.path.join(REPO, "sweeps", "run.py")]
GRID_FILE = os.path.join(HERE, "configs", "analytic_vs_grid.yaml")


RETRIES = 3   # a sweep killed from outside (e.g. another job's `ray stop --force`) is continued with --resume


def run_cli(args: list[str], log: str, resumable: bool = True) -> float:
    t0 = time.time()
    print("$ " + " ".join(["python sweeps/run.py"] + args), flush=True)
    for attempt in range(RETRIES + 1):
        extra = ["--resume"] if (attempt and resumable) else []
        with open(log, "a") as f:
            f.write(f"\n==== attempt {attempt} {' '.join(args + extra)}\n")
            f.flush()
            p = subprocess.run(CLI + args + extra, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        if p.returncode == 0:
            break
        print(f"  attempt {attempt} failed (rc {p.returncode}){'; resuming' if attempt < RETRIES else ''}", flush=True)
    dt = time.time() - t0
    if p.returncode != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"sweeps/run.py {' '.join(args)} failed (rc {p.returncode}); log tail:\n{tail}")
    print(f"  done in {dt:.0f}s (load {os.getloadavg()[0]:.1f}; attempts {attempt + 1})", flush=True)
    return dt


def summarize_runs(runs: list[dict]) -> dict:
    ok = [r for r in runs if r.get("test_top1") is not None]
    best = max(ok, key=lambda r: r["test_top1"]) if ok else None
    return {"trials": len(runs), "finished_all_epochs": sum(1 for r in runs if r.get("status") == "ok"),
            "worker_seconds": sum(float(r.get("compute_seconds") or 0.0) for r in runs),
            "trial_epochs": sum(int(r.get("epochs") or 0) for r in runs),
            "best_top1": best["test_top1"] if best else None,
            "best_config": {k: best.get(k) for k in ("loss", "params", "logit_bias", "lr")} if best else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--store", default=None, help="experiment storage (default: <out>/avg-store)")
    ap.add_argument("--classes", type=int, default=200)
    ap.add_argument("--train-per-class", type=int, default=20)
    ap.add_argument("--test-per-class", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=0.05, help="analytic runs' learning rate (top of the paper's grid)")
    ap.add_argument("--quick", action="store_true", help="K=20, tiny data, 2 epochs, 2 lrs x 2 values")
    a = ap.parse_args(argv)

    os.makedirs(a.out, exist_ok=True)
    store = a.store or os.path.join(a.out, "avg-store")
    tag = datetime.datetime.now().strftime("%H%M%S")
    grid_file, lrs = GRID_FILE, None
    if a.quick:
        a.classes, a.train_per_class, a.test_per_class, a.epochs = 20, 10, 5, 2
        grid_file = os.path.join(a.out, "quick-grid.yaml")
        with open(grid_file, "w") as f:
            f.write("lrs: [0.01, 0.05]\nlosses:\n  mae:\n    logit_bias: [0.0, 2.0]\n  gce:\n    q: [0.5, 0.7]\n")
    common = ["--dataset", "synthetic", "--classes", str(a.classes),
              "--dataset-args", f"train_per_class={a.train_per_class},test_per_class={a.test_per_class}",
              "--losses", "mae,gce", "--epochs", str(a.epochs), "--seeds", "1", "--storage-path", store, "--quiet"]
    names = {m: f"avg-{m}-{tag}" for m in ("grid", "analytic", "compare", "optuna", "analytic10", "compare10")}
    js = {m: os.path.join(a.out, f"avg-{m}.json") for m in names}
    logs = {m: os.path.join(a.out, f"avg-{m}.log") for m in names}
    walls = {}
    t_all = time.time()
    load0 = os.getloadavg()
    walls["grid"] = run_cli(["--mode", "grid", *common, "--grid-file", grid_file, "--name", names["grid"],
                             "--json-out", js["grid"]], logs["grid"])
    walls["analytic"] = run_cli(["--mode", "analytic", *common, "--lr", str(a.lr), "--name", names["analytic"],
                                 "--json-out", js["analytic"]], logs["analytic"])
    walls["compare"] = run_cli(["--mode", "compare", "--storage-path", store, "--grid", names["grid"], "--analytic",
                                names["analytic"], "--name", names["compare"], "--json-out", js["compare"]], logs["compare"],
                               resumable=False)
    with open(js["grid"]) as f:
        grid = json.load(f)
    budget = len(grid["runs"])
    walls["optuna"] = run_cli(["--mode", "grid", "--search", "optuna", "--num-samples", str(budget), *common,
                               "--grid-file", grid_file, "--name", names["optuna"], "--json-out", js["optuna"]],
                              logs["optuna"])
    walls["analytic10"] = run_cli(["--mode", "analytic", *common, "--losses", "gce", "--calibration-reference", "10",
                                   "--lr", str(a.lr), "--name", names["analytic10"], "--json-out", js["analytic10"]],
                                  logs["analytic10"])
    walls["compare10"] = run_cli(["--mode", "compare", "--storage-path", store, "--grid", names["grid"], "--analytic",
                                  names["analytic10"], "--name", names["compare10"], "--json-out", js["compare10"]],
                                 logs["compare10"], resumable=False)
    with open(js["analytic"]) as f:
        analytic = json.load(f)
    with open(js["compare"]) as f:
        comp = json.load(f)
    with open(js["compare10"]) as f:
        comp10 = json.load(f)
    k10 = next((r for r in comp10["rows"] if r["loss"] == "gce" and r["mode"] == "analytic"), None)
    with open(js["optuna"]) as f:
        optuna = json.load(f)

    per_loss = {}
    for r in comp["rows"]:
        per_loss.setdefault(r["loss"], {})[r["mode"]] = r
    table = []
    for loss, d in per_loss.items():
        g, an = d.get("grid"), d.get("analytic")
        if not g or not an:
            continue
        table.append({"loss": loss, "grid_best_top1": g["top1_mean"], "grid_best": {"params": g["params"],
                      "logit_bias": g["logit_bias"], "lr": g["lr"]}, "grid_trials": g["trials"],
                      "grid_worker_seconds": g["worker_seconds"], "analytic_top1": an["top1_mean"],
                      "analytic": {"params": an["params"], "logit_bias": an["logit_bias"], "lr": an["lr"]},
                      "analytic_worker_seconds": an["worker_seconds"],
                      "gap_top1": an["top1_mean"] - g["top1_mean"], "compute_ratio": an["cost_ratio"]})
    opt = summarize_runs(optuna["runs"])
    opt_by_loss = {}
    for loss in per_loss:
        opt_by_loss[loss] = summarize_runs([r for r in optuna["runs"] if r["loss"] == loss])
    grid_all = summarize_runs(grid["runs"])
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "loadavg_start": load0,
              "loadavg_end": os.getloadavg(), "setting": {"dataset": "synthetic", "classes": a.classes,
              "train_per_class": a.train_per_class, "test_per_class": a.test_per_class, "epochs": a.epochs,
              "seeds": 1, "noise": "none", "grid_file": os.path.relpath(grid_file, REPO), "analytic_lr": a.lr},
              "wall_seconds": walls, "total_wall_seconds": time.time() - t_all, "per_loss": table,
              "grid_total": grid_all, "optuna_total": opt, "optuna_by_loss": opt_by_loss,
              "analytic_calibration": {k: {"params": v.get("params"), "logit_bias": v.get("logit_bias"),
                                           "seconds": v.get("seconds")}
                                       for k, v in (analytic.get("calibration") or {}).items()},
              "compare_markdown_rows": comp["rows"], "gce_k_ref_10": k10}
    with open(os.path.join(a.out, "analytic_vs_grid.json"), "w") as f:
        json.dump(result, f, indent=2, default=str)

    def f1(x, nd=1):
        return "–" if x is None else f"{x:.{nd}f}"

    md = [f"# analytic vs grid ({result['date']})", "",
          f"synthetic K={a.classes}, {a.train_per_class}/{a.test_per_class} train/test per class, {a.epochs} epochs, "
          f"1 seed, no noise; grid file `{result['setting']['grid_file']}`; analytic lr {a.lr}. "
          f"Load average start/end: {load0[0]:.1f} / {os.getloadavg()[0]:.1f}.", "",
          "| loss | best grid top-1 | best grid config | grid trials | grid worker-s | analytic top-1 | analytic config "
          "| analytic worker-s | gap (pts) | compute ratio | Optuna best top-1 | Optuna trials | Optuna worker-s |",
          "|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        o = opt_by_loss.get(r["loss"], {})
        gb, an = r["grid_best"], r["analytic"]
        md.append(f"| {r['loss']} | {f1(r['grid_best_top1'])} | lr={gb['lr']:g}, ε={gb['logit_bias']:.2f}, "
                  f"{json.dumps(gb['params'])} | {r['grid_trials']} | {f1(r['grid_worker_seconds'], 0)} | "
                  f"{f1(r['analytic_top1'])} | lr={an['lr']:g}, ε={an['logit_bias']:.2f}, "
                  f"{json.dumps({k: round(v, 3) for k, v in an['params'].items()})} | "
                  f"{f1(r['analytic_worker_seconds'], 1)} | {r['gap_top1']:+.1f} | "
                  f"{f1(r['compute_ratio'], 3)} | {f1(o.get('best_top1'))} | {o.get('trials', 0)} | "
                  f"{f1(o.get('worker_seconds'), 0)} |")
    md += ["", f"Totals: grid {grid_all['trials']} trials, {grid_all['worker_seconds']:.0f} worker-s, "
           f"{grid_all['trial_epochs']} trial-epochs, best {f1(grid_all['best_top1'])}; Optuna+ASHA "
           f"{opt['trials']} trials ({opt['finished_all_epochs']} ran all epochs), {opt['worker_seconds']:.0f} worker-s, "
           f"{opt['trial_epochs']} trial-epochs, best {f1(opt['best_top1'])} ({json.dumps(opt['best_config'])}).",
           f"Wall seconds per CLI call: {json.dumps({k: round(v) for k, v in walls.items()})}."]
    g_gce = next((r for r in table if r["loss"] == "gce"), None)
    if k10 and g_gce:
        md += ["", f"GCE+ calibrated from K_ref = 10 (`--calibration-reference 10`): q = "
               f"{k10['params'].get('q', float('nan')):.3f}, top-1 {f1(k10['top1_mean'])} "
               f"({k10['top1_mean'] - g_gce['grid_best_top1']:+.1f} points vs the best grid point), "
               f"{f1(k10['worker_seconds'], 1)} worker-s (compute ratio {f1(k10['cost_ratio'], 3)})."]
    with open(os.path.join(a.out, "analytic_vs_grid.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
