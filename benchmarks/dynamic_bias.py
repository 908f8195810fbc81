"""Issue 12: MAE with the Eq. 4 logit bias under three bias schedules, constant, weaning and dynamic.

    .venv/bin/python benchmarks/dynamic_bias.py                       # full run (~15 min of one core)
    .venv/bin/python benchmarks/dynamic_bias.py --smoke --out /tmp/x  # seconds

Rows: MAE with ε = theory.logit_bias(K) (Eq. 4, c = 0.25, σ = 1) and
  constant  every epoch ε (no schedule; the paper's "*" rows),
  weaning   the ladder {"kind": "weaning", "steps": 6, "hold": h}: linspace(ε, ε/6, 6), h epochs each; the
            paper's h = 11 (App. A.2, 66 of 200 epochs) would never leave ε in a 10-epoch run, so h is scaled
            to the run, h = ceil(epochs / 6), and the whole ladder fits in one run,
  dynamic   {"kind": "dynamic", "c": 0.25}: epoch 1 uses ε, every later epoch the ε ≥ 0 that puts the
            previous epoch's mean training p_y with the bias at c (engine.next_dynamic_bias);
and CE at the same settings as the reference row.

Settings (MLP1024, SGD momentum 0.9, no weight decay, LR × 0.95 per epoch = the synthetic preset):
  (a) "synthetic" (σ_data 2), K = 1000, 20 / 5 train / test examples per class, no noise, lr 0.1, batch 128,
      10 epochs (nearest-prototype oracle 27.8 %);
  (b) "synthetic-easy" (σ_data 1), K = 10, 200 / 100 per class, 40 % symmetric noise, lr 0.03, batch 32,
      40 epochs (CE memorises: its final ``memorized`` is reported).
10 % of the training set is the engine's noisy validation hold-out; seeds 0, 1, 2 fix data, noise, split,
initialisation and batch order. All runs in this one process (1 torch thread), one after the other.

Reported per row: final test top-1 and test top-1 at the best noisy-validation epoch (mean ± s.e.m. over
seeds); |mean_py_biased − c| averaged over epochs ≥ 2 (all of them, and only those trained with ε > 0,
where the dynamic rule can hold c; once the network alone has mean p_y ≥ c it clamps ε at 0); ε of the
last epoch (mean over seeds); final ``memorized``.
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
from stats import finite, machine, run_header  # noqa: E402,F401  (shared by the benchmark scripts)
from stats import mean_sem as _mean_sem  # noqa: E402


def mean_sem(xs) -> tuple[float, float]:
    """Over the finished runs only (None and non-finite values skipped)."""
    return _mean_sem(xs, skip_missing=True)

C = 0.25
SEEDS = [0, 1, 2]
SETTINGS = {
    "K=1000 clean": dict(dataset="synthetic", classes=1000, train_per_class=20, test_per_class=5, noise_rate=0.0,
                         lr=0.1, batch_size=128, epochs=10),
    "K=10 40% noise": dict(dataset="synthetic-easy", classes=10, train_per_class=200, test_per_class=100,
                           noise_rate=0.4, lr=0.03, batch_size=32, epochs=40),
}
SMOKE = {
    "K=1000 clean": dict(SETTINGS["K=1000 clean"], classes=50, train_per_class=4, test_per_class=2, epochs=2),
    "K=10 40% noise": dict(SETTINGS["K=10 40% noise"], train_per_class=20, test_per_class=5, epochs=3),
}
ROWS = ("CE", "MAE* constant", "MAE* weaning", "MAE* dynamic")


def schedule(row: str, epochs: int) -> dict | None:
    return {"MAE* weaning": {"kind": "weaning", "steps": 6, "hold": math.ceil(epochs / 6)},
            "MAE* dynamic": {"kind": "dynamic", "c": C}}.get(row)


def config(s: dict, row: str, seed: int) -> dict:
    from robustloss_core import theory

    mae = row != "CE"
    return {"dataset": s["dataset"], "dataset_args": {k: s[k] for k in ("classes", "train_per_class", "test_per_class")},
            "noise": "symmetric" if s["noise_rate"] else "none", "noise_rate": s["noise_rate"], "model": "mlp1024",
            "loss": "mae" if mae else "ce", "logit_bias": theory.logit_bias(s["classes"], c=C) if mae else 0.0,
            "logit_bias_schedule": schedule(row, s["epochs"]), "lr": s["lr"], "batch_size": s["batch_size"],
            "epochs": s["epochs"], "seed": seed, "device": "cpu", "val_fraction": 0.1}






def run_one(setting: str, s: dict, row: str, seed: int) -> dict:
    from robustloss_core import engine

    cfg, t0 = config(s, row, seed), time.time()
    try:
        out = engine.train(cfg)
    except engine.NonFiniteLossError as exc:
        return {"setting": setting, "row": row, "seed": seed, "config": cfg, "diverged": str(exc),
                "seconds": time.time() - t0}
    h = out["history"]
    curve = {k: [m[k] for m in h] for k in ("logit_bias", "mean_py_biased", "test_top1", "val_top1", "memorized")}
    later = [m for m in h if m["epoch"] >= 2]
    biased = [m for m in later if m["logit_bias"] > 0]
    return {"setting": setting, "row": row, "seed": seed, "config": cfg, "diverged": None,
            **{k: out[k] for k in ("test_top1", "test_top1_at_best", "best_epoch", "val_top1", "memorized")},
            "py_dev_all": mean_sem([abs(m["mean_py_biased"] - C) for m in later])[0],
            "py_dev_biased": mean_sem([abs(m["mean_py_biased"] - C) for m in biased])[0],
            "epochs_biased": len(biased), "epochs_after_first": len(later), "eps_last": h[-1]["logit_bias"],
            "py_last": h[-1]["mean_py_biased"], "curves": curve, "seconds": time.time() - t0}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for r in runs:
        out.setdefault(r["setting"], {}).setdefault(r["row"], []).append(r)
    summary = {}
    for setting, rows in out.items():
        for row, rs in rows.items():
            ok = [r for r in rs if not r["diverged"]]
            e = {"seeds": [r["seed"] for r in rs], "diverged_seeds": len(rs) - len(ok),
                 "logit_bias_initial": rs[0]["config"]["logit_bias"], "schedule": rs[0]["config"]["logit_bias_schedule"]}
            for k in ("test_top1", "test_top1_at_best", "py_dev_all", "py_dev_biased", "eps_last", "memorized",
                      "py_last"):
                m, se = mean_sem([r[k] for r in ok])
                e[k] = {"mean": m, "sem": se, "values": [r[k] for r in ok]}
            e["epochs_biased"] = [r["epochs_biased"] for r in ok]
            summary[f"{setting} | {row}"] = e
    return summary


def pm(d, digits=2) -> str:
    if math.isnan(d["mean"]):
        return "–"
    return f"{d['mean']:.{digits}f} ± {d['sem']:.{digits}f}" if not math.isnan(d["sem"]) else f"{d['mean']:.{digits}f}"


def markdown(result: dict) -> str:
    lines = []
    for setting, s in result["settings"].items():
        noise = f"{s['noise_rate']:.0%} symmetric noise" if s["noise_rate"] else "no noise"
        lines += [f"\n### {setting}: {s['dataset']}, K = {s['classes']}, {s['train_per_class']} / {s['test_per_class']} "
                  f"per class, {noise}, MLP1024, lr {s['lr']:g}, batch {s['batch_size']}, {s['epochs']} epochs, "
                  f"seeds {', '.join(map(str, result['seeds']))}\n",
                  "| row | ε (epoch 1) | schedule | final test top-1 | test top-1 at best val | "
                  "mean \\|p_y − c\\|, epochs ≥ 2 (all / with ε > 0: n) | ε last epoch | final memorized |",
                  "|---|---:|---|---:|---:|---:|---:|---:|"]
        for row in ROWS:
            e = result["summary"].get(f"{setting} | {row}")
            if e is None:
                lines.append(f"| {row} | not run | | | | | | |")
                continue
            sch = e["schedule"]
            sch = "–" if sch is None else ("dynamic c=%g" % sch["c"] if sch["kind"] == "dynamic"
                                           else f"weaning 6 × {sch['hold']}")
            f3 = lambda d: "–" if math.isnan(d["mean"]) else f"{d['mean']:.3f}"
            dev = "–" if row == "CE" else (f"{f3(e['py_dev_all'])} / {f3(e['py_dev_biased'])}: "
                                          f"{'/'.join(map(str, e['epochs_biased']))}")
            lines.append(f"| {row} | {e['logit_bias_initial']:.3f} | {sch} | {pm(e['test_top1'])} | "
                         f"{pm(e['test_top1_at_best'])} | {dev} | {e['eps_last']['mean']:.3f} | "
                         f"{e['memorized']['mean']:.3f} |")
        dyn = [r for r in result["runs"] if r["setting"] == setting and r["row"] == "MAE* dynamic" and not r["diverged"]]
        if dyn:
            c = dyn[0]["curves"]
            lines.append(f"\ndynamic, seed {dyn[0]['seed']}, per epoch: ε " + " ".join(f"{x:.2f}" for x in c["logit_bias"])
                         + "; mean p_y with the bias " + " ".join(f"{x:.3f}" for x in c["mean_py_biased"]))
    return "\n".join(lines) + "\n"


def write(result: dict, out_dir: str) -> None:
    with open(os.path.join(out_dir, "dynamic_bias.json"), "w") as f:
        json.dump(finite(result), f, indent=1)
    head = run_header(result, "MAE* bias schedules (issue 12)", f"{len(result['runs'])} runs")
    with open(os.path.join(out_dir, "dynamic_bias.md"), "w") as f:
        f.write(head + markdown(result))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="K = 50 / 10, tiny data, 2-3 epochs, 1 seed (seconds)")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results; --smoke: a temp folder)")
    p.add_argument("--report-only", action="store_true", help="rewrite the tables from the folder's dynamic_bias.json")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    out_dir = a.out or (os.path.join(tempfile.gettempdir(), "robustloss-smoke") if a.smoke else os.path.join(HERE, "results"))
    os.makedirs(out_dir, exist_ok=True)
    if a.report_only:
        with open(os.path.join(out_dir, "dynamic_bias.json")) as f:
            result = json.load(f)
        result["summary"] = summarise(result["runs"])
        write(result, out_dir)
        print(markdown(result))
        return 0
    settings, seeds = (SMOKE, [0]) if a.smoke else (SETTINGS, SEEDS)
    result = {"benchmark": "dynamic_bias", "smoke": a.smoke, "command": " ".join([".venv/bin/python", *sys.argv]),
              "machine_start": machine(), "c": C, "seeds": seeds, "settings": settings, "rows": list(ROWS),
              "runs": [], "wall_seconds": 0.0}
    t0 = time.time()
    for setting, s in settings.items():
        for seed in seeds:
            for row in ROWS:
                r = run_one(setting, s, row, seed)
                result["runs"].append(r)
                result["summary"], result["wall_seconds"] = summarise(result["runs"]), time.time() - t0
                write(result, out_dir)   # partial results survive an interrupted run
                what = f"DIVERGED ({r['diverged']})" if r["diverged"] else (
                    f"test {r['test_top1']:.2f} at-best {r['test_top1_at_best']:.2f} eps_last {r['eps_last']:.3f} "
                    f"|p_y-c| {r['py_dev_all']:.3f} mem {r['memorized']:.3f}")
                print(f"[{len(result['runs'])}] {setting} {row} seed {seed}: {what} ({r['seconds']:.0f} s)", flush=True)
    result["machine_end"], result["wall_seconds"] = machine(), time.time() - t0
    write(result, out_dir)
    print(markdown(result))
    print(f"wrote {out_dir}/dynamic_bias.json, .md ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
