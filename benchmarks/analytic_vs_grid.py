"""Analytic mode vs the baseline grid, on equal footing: noisy-validation selection, LR protocols, intervals.

    .venv/bin/python benchmarks/analytic_vs_grid.py                 # ~20 min on 2 cores
    .venv/bin/python benchmarks/analytic_vs_grid.py --smoke --out /tmp/x   # tiny, for CI

Through the Python API (``services.api``, one embedded Ray for the whole script), on two settings:

  demo   synthetic K = 200, 25 training examples per class, 8 epochs, clean labels (sweeps/configs/demo.yaml);
  noisy  synthetic-easy (σ = 1) K = 10, 200 per class, 40 % symmetric noise, long enough for CE-like
         memorisation (``--noisy-epochs``).

For each setting and each LR protocol (``searched``: both modes search the same LRs, the analytic side
pays for it; ``shared``: both train at one LR fixed in advance), it runs the grid (MAE's ε × LR × seeds,
GCE's q × LR × seeds), the analytic mode (Eq. 4 ε for MAE*, calibrated q for GCE+) and compare with
``selection="val"`` (configurations chosen on the noisy validation split; ``test_top1`` of the chosen one
reported) — plus the oracle selection on the searched runs, for reference. Writes
``analytic_vs_grid.{json,md}`` to ``--out``: per loss the gap analytic − grid with its 95 % Welch
interval and verdict, and the cost ratio in trial-epochs and worker-seconds (every start-up included).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

SETTINGS = {
    "demo": dict(dataset="synthetic", classes=200, dataset_args={"train_per_class": 25}, epochs=8,
                 grid={"mae": {"logit_bias": [0.0, 2.0, 4.0]}, "gce": {"q": [0.3, 0.5, 0.7]}},
                 lrs=[0.01, 0.03, 0.1], shared_lr=0.1),
    "noisy": dict(dataset="synthetic-easy", classes=10, dataset_args={"train_per_class": 200, "test_per_class": 100},
                  noise="symmetric", noise_rate=0.4, epochs=40,
                  grid={"mae": {"logit_bias": [0.0, 1.0, 2.0]}, "gce": {"q": [0.3, 0.5, 0.7, 0.9]}},
                  lrs=[0.01, 0.03, 0.1], shared_lr=0.03),
}
SMOKE = dict(classes=10, dataset_args={"train_per_class": 20, "test_per_class": 10}, epochs=2,
             grid={"mae": {"logit_bias": [0.0, 1.0]}, "gce": {"q": [0.5, 0.7]}}, lrs=[0.03, 0.1], shared_lr=0.1)


def write_grid(path: str, grid: dict, lrs: list[float]) -> str:
    import yaml

    with open(path, "w") as f:
        yaml.safe_dump({"lrs": lrs, "losses": grid}, f)
    return path


def run_setting(api, label: str, s: dict, seeds: int, store: str, tag: str) -> dict:
    common = dict(dataset=s["dataset"], classes=s["classes"], dataset_args=s["dataset_args"], epochs=s["epochs"],
                  losses=["mae", "gce"], seeds=seeds, storage_path=store, quiet=True,
                  noise=s.get("noise", "none"), noise_rate=s.get("noise_rate", 0.0))
    grid_file = write_grid(os.path.join(store, f"{label}-grid.yaml"), s["grid"], s["lrs"])
    out = {}
    for protocol in ("searched", "shared"):
        opts = dict(common, grid_file=grid_file, lr_protocol=protocol)
        if protocol == "shared":
            opts["lr"] = s["shared_lr"]
        names = {m: f"{tag}-{label}-{protocol}-{m}" for m in ("grid", "analytic")}
        walls = {}
        for mode, fn in (("grid", api.grid), ("analytic", api.analytic)):
            t0 = time.time()
            fn(**opts, name=names[mode])
            walls[mode] = time.time() - t0
            print(f"  {label}/{protocol}/{mode}: {walls[mode]:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
        cmp = api.compare(grid=names["grid"], analytic=names["analytic"], storage_path=store, selection="val",
                          name=f"{tag}-{label}-{protocol}-compare")
        out[protocol] = {"rows": cmp.rows, "walls": walls}
        if protocol == "searched":
            oracle = api.compare(grid=names["grid"], analytic=names["analytic"], storage_path=store, selection="test",
                                 name=f"{tag}-{label}-{protocol}-oracle")
            out["searched-oracle"] = {"rows": oracle.rows}
        grid_runs = api.load_runs(store, names["grid"])
        out[protocol]["ce_like_memorized"] = float(grid_runs["memorized"].max()) if "memorized" in grid_runs else None
    return out


def fmt_ci(ci) -> str:
    return "-" if not ci else f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"


def table(results: dict) -> str:
    lines = ["| setting | protocol | selection | loss | grid pick | grid top-1 | analytic pick | analytic top-1 | gap [95 % CI] | verdict | "
             "trial-epochs a/g | worker-s a/g | early-stopped gap [CI] |", "|" + "---|" * 13]
    for label, by_protocol in results.items():
        for protocol, res in by_protocol.items():
            rows = res["rows"]
            for a in (r for r in rows if r["mode"] == "analytic"):
                g = next(r for r in rows if r["mode"] == "grid" and r["loss"] == a["loss"])

                def pick(r):
                    p = ",".join(f"{k}={v:.3g}" for k, v in sorted((r["params"] or {}).items()))
                    return f"{p + ' ' if p else ''}ε={r['logit_bias']:.2f} lr={r['lr']:g}"

                def top(r):
                    return "-" if r["top1_mean"] is None else f"{r['top1_mean']:.2f} ± {r['top1_sem'] or 0:.2f}"

                es = "-" if a.get("es_gap") is None else f"{a['es_gap']:+.2f} {fmt_ci(a.get('es_gap_ci95'))}"
                lines.append(f"| {label} | {protocol.replace('-oracle', '')} | {a['selection']}{' (oracle)' if a['selection'] == 'test' else ''} "
                             f"| {a['loss']} | {pick(g)} | {top(g)} | {pick(a)} | {top(a)} | "
                             f"{a['gap']:+.2f} {fmt_ci(a['gap_ci95'])} | {a['verdict']} | "
                             f"{a['trial_epochs']}/{g['trial_epochs']} = {a['epoch_ratio']:.3f} | "
                             f"{a['worker_seconds']:.0f}/{g['worker_seconds']:.0f} = {a['cost_ratio']:.3f} | {es} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--settings", default="demo,noisy")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--noisy-epochs", type=int, default=None, help="epochs of the noisy setting")
    ap.add_argument("--smoke", action="store_true", help="tiny version (seconds of training), for CI")
    a = ap.parse_args()
    from services import api

    os.makedirs(a.out, exist_ok=True)
    store = os.path.join(a.out, "analytic-vs-grid-store")
    os.makedirs(store, exist_ok=True)
    tag = time.strftime("%Y%m%d-%H%M%S")
    results, t0 = {}, time.time()
    for label in a.settings.split(","):
        s = dict(SETTINGS[label])
        if a.noisy_epochs and label == "noisy":
            s["epochs"] = a.noisy_epochs
        if a.smoke:
            s.update(SMOKE)
        print(f"== {label}: {s}", flush=True)
        results[label] = run_setting(api, label, s, 2 if a.smoke else a.seeds, store, tag)
    md = table(results)
    meta = {"date": datetime.date.today().isoformat(), "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "load_end": os.getloadavg(), "wall_seconds": time.time() - t0, "seeds": 2 if a.smoke else a.seeds,
            "settings": {k: (dict(SETTINGS[k], **SMOKE) if a.smoke else SETTINGS[k]) for k in results}, "smoke": a.smoke}
    with open(os.path.join(a.out, "analytic_vs_grid.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1, default=str)
    with open(os.path.join(a.out, "analytic_vs_grid.md"), "w") as f:
        f.write(f"# Analytic vs grid ({meta['date']}, {meta['machine']}, {meta['seeds']} seeds, "
                f"{meta['wall_seconds'] / 60:.1f} min)\n\n" + md)
    print(md)


if __name__ == "__main__":
    main()
