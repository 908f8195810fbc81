"""σ of the initial logits (Appendix A.3) of the project's networks: the evidence for the README's
"MLP1024 on standardised synthetic input σ ≈ 0.2–0.3, ResNet-32 σ ≈ 2.6 (CIFAR-shaped), ResNet-34 and
WRN-101-2 σ ≈ 1.5" (section "The many-class effect, reproduced").

    .venv/bin/python benchmarks/initial_sigma.py                       # full run (~3 min of one core)
    .venv/bin/python benchmarks/initial_sigma.py --smoke --out /tmp/x  # seconds

Per row and seed s ∈ {0, 1, 2}: ``torch.manual_seed(s)`` then ``models.build_model(model, K, shape)`` (the
engine's initialisation: Kaiming-normal ResNets, Xavier-uniform MLP, zero biases, BN (1, 0)), and
``theory.initial_logit_stats(model, x)`` on one batch x, BatchNorm with the batch's statistics (what the
first training step sees); σ is its "std" (= ``theory.measure_sigma``), the population std of all N·K
logits. Inputs, as ``services.app.measured_sigma`` (``--sigma auto``) builds them:
  synthetic     ``datasets.build_dataset("synthetic", seed=s, classes=K)`` (default generator sizes, data
                seed = s as in the engine), a seeded random batch of its training features passed through
                ``datasets.normalize_batch`` (features already standardised by the generator: mean None);
  fashionmnist  the real Fashion-MNIST (``datasets.build_dataset("fashionmnist")``, found in
                /usr/share/datasets/fashion-mnist), a seeded random batch of training images through
                ``normalize_batch`` (mean 0.2860, std 0.3530); the row is skipped, with the reason, if absent;
  random        the datasets module has no image-shaped synthetic variant (synthetic data are feature
                vectors [N, 128]), so image-shaped rows get i.i.d. N(0, 1) tensors [N, C, H, W] (a
                standardised input without the spatial correlation of real images), from a generator
                seeded by s.
Rows: mlp1024 synthetic K = 10, 200, 1000; mlp1024 real Fashion-MNIST; resnet32 CIFAR-shaped 3×32×32
K = 10, 100 (and, extra, on real Fashion-MNIST: resnet32 is its ResNet setup); resnet34 and wrn101
(``torchvision wide_resnet101_2``, the WebVision network) at K = 1000 on 224×224-shaped input; extra:
resnet34 on CIFAR-100-shaped 3×32×32 at K = 100, the setting it trains in (presets: resnet34 is the
CIFAR-100 network; WebVision uses wrn101). Batch sizes are per row (column "batch"); the 224×224 rows
use small batches to keep the CPU cost low: wrn101 16, resnet34 8 (this CIFAR ResNet has no strided stem
or max-pool, ~2.5× wrn101's cost per 224×224 image). All in this one process, 1 torch thread.
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

from dynamic_bias import finite, machine, mean_sem, run_header  # noqa: E402  (same machine record and statistics)

SEEDS = [0, 1, 2]
# model, data, K, input shape (None: the dataset's), batch, README claim (a key of CLAIMS; None: no claim)
ROWS = [
    dict(model="mlp1024", data="synthetic", K=10, shape=None, batch=512, claim="0.2–0.3"),
    dict(model="mlp1024", data="synthetic", K=200, shape=None, batch=512, claim="0.2–0.3"),
    dict(model="mlp1024", data="synthetic", K=1000, shape=None, batch=512, claim="0.2–0.3"),
    dict(model="mlp1024", data="fashionmnist", K=10, shape=None, batch=512, claim=None),
    dict(model="resnet32", data="random", K=10, shape=(3, 32, 32), batch=128, claim="≈ 2.6"),
    dict(model="resnet32", data="random", K=100, shape=(3, 32, 32), batch=128, claim="≈ 2.6"),
    dict(model="resnet32", data="fashionmnist", K=10, shape=None, batch=128, claim=None, extra=True),
    dict(model="resnet34", data="random", K=100, shape=(3, 32, 32), batch=128, claim="≈ 1.5", extra=True),
    dict(model="resnet34", data="random", K=1000, shape=(3, 224, 224), batch=8, claim="≈ 1.5"),
    dict(model="wrn101", data="random", K=1000, shape=(3, 224, 224), batch=16, claim="≈ 1.5"),
]
SMOKE_ROWS = [dict(ROWS[0], batch=128, dataset_args={"train_per_class": 20, "test_per_class": 2})]
CLAIMS = {"0.2–0.3": (0.2, 0.3), "≈ 2.6": (2.6 * 0.9, 2.6 * 1.1), "≈ 1.5": (1.5 * 0.9, 1.5 * 1.1)}
CLAIM_RULE = "a range holds if the seed mean lies in it; \"≈ v\" holds within ±10 % of v"


def label(row: dict) -> str:
    shape = "x".join(map(str, row["shape"])) if row["shape"] else None
    data = {"synthetic": "synthetic (features 128)", "fashionmnist": "Fashion-MNIST (real, 1x28x28)",
            "random": f"random N(0,1) {shape}"}[row["data"]]
    return f"{row['model']} | {data} | K={row['K']}"


_FMNIST: dict = {}


def inputs(row: dict, seed: int):
    """(x [N, ...], input_shape, info) for a row and seed; raises DataRootError if the files are missing."""
    import torch

    from robustloss_core import datasets

    g = torch.Generator().manual_seed(seed)
    if row["data"] == "random":
        return torch.randn(row["batch"], *row["shape"], generator=g), tuple(row["shape"]), {}
    if row["data"] == "synthetic":
        bundle = datasets.build_dataset("synthetic", seed=seed, classes=row["K"], **row.get("dataset_args", {}))
        info = {"dataset_info": bundle.info}
    else:
        if "bundle" not in _FMNIST:
            _FMNIST["bundle"] = datasets.build_dataset("fashionmnist")
        bundle = _FMNIST["bundle"]
        info = {"dataset_info": bundle.info}
    t = bundle.tensors
    idx = torch.randperm(t.train_x.shape[0], generator=g)[:row["batch"]]
    return datasets.normalize_batch(t.train_x[idx], t.mean, t.std), tuple(bundle.input_shape), info


def run_row(row: dict, seeds) -> dict:
    import torch

    from robustloss_core import datasets, models, theory

    out = {"label": label(row), **{k: row[k] for k in ("model", "data", "K", "batch", "claim")},
           "extra": bool(row.get("extra")), "seeds": [], "skipped": None}
    t0 = time.time()
    for seed in seeds:
        try:
            x, shape, info = inputs(row, seed)
        except datasets.DataRootError as exc:
            out["skipped"] = f"data not found: {exc}"
            break
        torch.manual_seed(seed)
        model = models.build_model(row["model"], row["K"], shape)
        ts = time.time()
        st = theory.initial_logit_stats(model, x)
        out["seeds"].append({"seed": seed, "sigma": st["std"], "logit_mean": st["mean"], "num_logits": st["num_logits"],
                             "logits_shape": st["shape"], "input_mean": float(x.mean()), "input_std": float(x.std()),
                             "hist_counts": st["hist_counts"], "hist_edges": st["hist_edges"],
                             "forward_seconds": time.time() - ts, **info})
        out["input_shape"] = list(shape)
        del model
    sig = [s["sigma"] for s in out["seeds"]]
    m, se = mean_sem(sig)
    out["sigma"] = {"mean": m, "sem": se, "min": min(sig) if sig else math.nan, "max": max(sig) if sig else math.nan,
                    "values": sig}
    out["claim_holds"] = None
    if row["claim"] and sig:
        lo, hi = CLAIMS[row["claim"]]
        out["claim_holds"] = bool(lo <= m <= hi)
    out["seconds"] = time.time() - t0
    return out


def f3(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def markdown(result: dict) -> str:
    lines = ["| model | data | K | input | batch | σ mean ± s.e.m. | σ per seed (" + ", ".join(map(str, result["seeds"]))
             + ") | logit mean (seed 0) | README | holds | s |",
             "|---|---|---:|---|---:|---:|---|---:|---|---|---:|"]
    for r in result["rows"]:
        model = r["model"] + (" (extra)" if r["extra"] else "")
        data = {"synthetic": "synthetic", "fashionmnist": "Fashion-MNIST (real)", "random": "random N(0,1)"}[r["data"]]
        if r["skipped"]:
            lines.append(f"| {model} | {data} | {r['K']} | | {r['batch']} | skipped: {r['skipped']} | | | "
                         f"{r['claim'] or '–'} | – | |")
            continue
        s = r["sigma"]
        pm = f"{s['mean']:.3f}" + ("" if math.isnan(s["sem"]) else f" ± {s['sem']:.3f}")
        holds = "–" if r["claim_holds"] is None else ("yes" if r["claim_holds"] else "no")
        lines.append(f"| {model} | {data} | {r['K']} | {'x'.join(map(str, r['input_shape']))} | {r['batch']} | {pm} | "
                     f"{' / '.join(f3(v) for v in s['values'])} | {r['seeds'][0]['logit_mean']:+.3f} | "
                     f"{r['claim'] or '–'} | {holds} | {r['seconds']:.0f} |")
    lines += ["", f"README claim check: {CLAIM_RULE}. σ is the population std of all batch × K logits "
              "(`theory.initial_logit_stats(...)[\"std\"]` = `theory.measure_sigma`), BatchNorm with batch statistics; "
              "\"random N(0,1)\": the datasets module has no image-shaped synthetic variant, so image-shaped rows get "
              "i.i.d. standard-normal tensors (no spatial correlation); synthetic: default generator sizes "
              "(dim 128), data seed = model seed; (extra) rows are not in the brief: resnet32 is also Fashion-MNIST's "
              "ResNet, and resnet34 trains on CIFAR-100 (3x32x32, K = 100) - WebVision uses wrn101. mlp1024's last layer "
              "is Xavier-uniform, Var(w) = 2 / (512 + K), so its σ ≈ rms(penultimate activation) · √(1024 / (512 + K)) "
              "falls with K (1/√(512 + K)); the ResNets' Kaiming fan-in classifier does not depend on K."]
    return "\n".join(lines) + "\n"


def write(result: dict, out_dir: str) -> None:
    with open(os.path.join(out_dir, "initial_sigma.json"), "w") as f:
        json.dump(finite(result), f, indent=1)
    head = run_header(result, "Initial-logit σ of the models (Appendix A.3)",
                      f"{len(result['rows'])} rows × {len(result['seeds'])} seeds") + "\n"
    with open(os.path.join(out_dir, "initial_sigma.md"), "w") as f:
        f.write(head + markdown(result))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="mlp1024 on synthetic K = 10 only, tiny data, 1 seed (seconds)")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results; --smoke: a temp folder)")
    p.add_argument("--report-only", action="store_true", help="rewrite the table from the folder's initial_sigma.json")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    out_dir = a.out or (os.path.join(tempfile.gettempdir(), "robustloss-smoke") if a.smoke else os.path.join(HERE, "results"))
    os.makedirs(out_dir, exist_ok=True)
    if a.report_only:
        with open(os.path.join(out_dir, "initial_sigma.json")) as f:
            result = json.load(f)
        write(result, out_dir)
        print(markdown(result))
        return 0
    rows, seeds = (SMOKE_ROWS, [0]) if a.smoke else (ROWS, SEEDS)
    result = {"benchmark": "initial_sigma", "smoke": a.smoke, "command": " ".join([".venv/bin/python", *sys.argv]),
              "machine_start": machine(), "seeds": seeds, "claim_rule": CLAIM_RULE,
              "readme_claim": "MLP1024 on standardised synthetic input σ ≈ 0.2–0.3, ResNet-32 σ ≈ 2.6 (CIFAR-shaped), "
                              "ResNet-34 and WRN-101-2 σ ≈ 1.5",
              "rows": [], "wall_seconds": 0.0}
    t0 = time.time()
    for row in rows:
        r = run_row(row, seeds)
        result["rows"].append(r)
        result["wall_seconds"] = time.time() - t0
        write(result, out_dir)   # partial results survive an interrupted run
        what = f"skipped ({r['skipped']})" if r["skipped"] else (
            f"sigma {r['sigma']['mean']:.3f} (" + ", ".join(f"{v:.3f}" for v in r["sigma"]["values"]) + ")")
        print(f"[{len(result['rows'])}] {r['label']} batch {r['batch']}: {what} ({r['seconds']:.0f} s)", flush=True)
    result["machine_end"], result["wall_seconds"] = machine(), time.time() - t0
    write(result, out_dir)
    print(markdown(result))
    print(f"wrote {out_dir}/initial_sigma.json, .md ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
