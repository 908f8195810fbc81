"""Issues 12 and 21: NCE+AGCE+ and NCE+MAE+ at K = 1000 under the admissibility rule, beside CE, every
recipe over the same LR grid.

    .venv/bin/python benchmarks/calibration_rule.py                       # full run (~15 min of one core)
    .venv/bin/python benchmarks/calibration_rule.py --smoke --out /tmp/x  # seconds

Recipes: ``theory.default_calibration(loss, K, dataset="synthetic", reference_classes=K_ref)`` for
loss in (nce_agce, nce_mae) and K_ref = 100 and 10 (σ = 1), each judged by the rule's four criteria
(z* match, peak, Eq. 3 progress-coordinate band, term shares: ``criteria``). The admissible ones are
trained; a rejected one is recorded with its criteria and not trained (``--mode analytic`` trains its
fallback). CE is the reference; every trained recipe's gap to CE gets the paired interval over the
shared seeds and the project's verdict (``stats.gap_verdict``). Runs already in the output JSON with
the same recipe, parameters, lr and seed are reused (training is deterministic on CPU).

The previous default (K_ref = 100, a solved with α, β, q = 10, 0.1, 3: a = 18.19) is not
trained again: its peak_ratio is recomputed here (``theory.calibrate(..., free="a")``) and its top-1 is
quoted from benchmarks/README.md (results/calibration_reference.md: 0.3 ± 0.0 % vs CE 11.7 ± 0.2 %, on
25 / 10 examples per class, 8 epochs, lr 0.03, 3 seeds).

Data and training as dynamic_bias.py (a): "synthetic" (σ_data 2), K = 1000, 20 / 5 train / test examples
per class, no noise, MLP1024, SGD momentum 0.9, no weight decay, LR × 0.95 per epoch, batch 128,
``EPOCHS`` epochs; 10 % of the training set is the engine's validation hold-out. LR: per recipe, the value
of ``LRS`` with the higher final val_top1 on seed 0 (ties: the smaller; a diverged run is never chosen),
then seeds 1, 2 at that LR. All runs in this one process (1 torch thread).
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

from dynamic_bias import finite, machine, mean_sem, pm  # noqa: E402  (same machine record and statistics)
from stats import gap_verdict, run_header  # noqa: E402

SIZE = dict(classes=1000, train_per_class=20, test_per_class=5, epochs=8)
SMOKE = dict(classes=200, train_per_class=2, test_per_class=1, epochs=1)
LRS = [0.03, 0.1, 0.3]      # the grid of many_classes_k1000.py (§7), for every recipe alike
SEEDS = [0, 1, 2]
PREVIOUS = {"recipe": "NCE+AGCE+ K_ref=100, a solved (previous default)", "quoted_top1": 0.3, "quoted_sem": 0.0,
            "quoted_ce": 11.7, "source": "benchmarks/README.md §1 (results/calibration_reference.md): synthetic, "
                                       "K = 1000, 25 / 10 per class, 8 epochs, lr 0.03, 3 seeds"}


NAMES = {"nce_agce": "NCE+AGCE+", "nce_mae": "NCE+MAE+"}


def recipes(k: int) -> tuple[dict, dict]:
    """(trained, rejected): label -> {loss, params, logit_bias, calibration (to_dict or None)}; CE and
    the admissible calibrations are trained, the rejected ones only judged."""
    from robustloss_core import theory

    out, rejected = {"CE": {"loss": "ce", "params": {}, "logit_bias": 0.0, "calibration": None}}, {}
    for loss, name in NAMES.items():
        for k_ref in (100, 10):
            cal = theory.default_calibration(loss, k, dataset="synthetic", reference_classes=k_ref).to_dict()
            first = next((c for c in cal["candidates"] if c.get("params")), {})
            spec = {"loss": loss, "params": dict(cal["params"] if not cal["rejected"] else first.get("params") or {}),
                    "logit_bias": 0.0, "calibration": cal}
            (rejected if cal["rejected"] else out)[f"{name} K_ref={k_ref}"] = spec
    return out, rejected


def previous_recipe(k: int) -> dict:
    """The previous default (a solved, alpha, beta, q = 10, 0.1, 3 from K_ref = 100) judged by the rule."""
    from robustloss_core import theory

    ref = {"alpha": 10.0, "beta": 0.1, "a": 1.8, "q": 3.0}
    return theory.calibrate("nce_agce", k, reference_classes=100, reference_params=ref, free="a").to_dict()


def config(spec: dict, lr: float, seed: int, size: dict) -> dict:
    return {"dataset": "synthetic", "dataset_args": {k: size[k] for k in ("classes", "train_per_class", "test_per_class")},
            "model": "mlp1024", "loss": spec["loss"], "loss_params": dict(spec["params"]),
            "logit_bias": spec["logit_bias"], "lr": lr, "batch_size": 128, "epochs": size["epochs"], "seed": seed,
            "device": "cpu", "val_fraction": 0.1}


def run_one(label: str, spec: dict, lr: float, seed: int, size: dict) -> dict:
    from robustloss_core import engine

    t0 = time.time()
    row = {"recipe": label, "lr": lr, "seed": seed}
    try:
        out = engine.train(config(spec, lr, seed, size))
    except engine.NonFiniteLossError as exc:
        return {**row, "diverged": str(exc), "val_top1": None, "test_top1": None, "test_top1_at_best": None,
                "seconds": time.time() - t0}
    return {**row, "diverged": None, **{k: out[k] for k in ("val_top1", "test_top1", "test_top1_at_best", "best_epoch",
                                                             "train_acc_clean")},
            "curve_test_top1": [m["test_top1"] for m in out["history"]], "seconds": time.time() - t0}


def fmt_params(p: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in p.items()) or "–"


def criteria_cells(cal: dict) -> str:
    """peak_ratio | band [min, max] | term-share shift | rejected, from a calibration's criteria."""
    if not cal:
        return "– | – | – | –"
    band = cal.get("band_ratio")
    shift = cal.get("share_shift")
    return (f"{cal['peak_ratio']:.3g} | " + ("–" if band is None else f"[{band[0]:.3g}, {band[1]:.3g}]") + " | "
            + ("–" if shift is None else f"{shift:.2f}") + f" | {'yes' if cal['rejected'] else 'no'}")


def markdown(result: dict) -> str:
    s = result["setup"]
    ce = result["summary"].get("CE", {}).get("test_top1", {}).get("mean", math.nan)
    lines = [f"\n### The admissibility rule at work: synthetic, K = {s['classes']}, {s['train_per_class']} / "
             f"{s['test_per_class']} per class, no noise, MLP1024, {s['epochs']} epochs, seeds "
             f"{', '.join(map(str, s['seeds']))} (lr by seed 0's final val_top1 from {s['lrs']}, every recipe)\n",
             "| recipe | params | peak_ratio | band ratio | term-share shift | rejected | lr | final test top-1 "
             "| test top-1 at best val | × CE | gap to CE [95 % CI] | verdict |", "|---|---|---:|---|---:|---|---:|---:|---:|---:|---|---|"]
    for label, e in result["summary"].items():
        cal = e["calibration"] or {}
        par = fmt_params(e["params"]) + (f", ε={e['logit_bias']:.3g}" if e["logit_bias"] else "")
        ratio = e["test_top1"]["mean"] / ce if ce else math.nan
        g = e.get("gap_vs_ce") or {}
        gap = "–" if g.get("gap") is None or label == "CE" else f"{g['gap']:+.2f}" + (
            "" if g["ci95"] is None else f" [{g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}] {g['interval']}")
        edge = " (top of the grid)" if e["lr"] == max(s["lrs"]) else ""
        lines.append(f"| {label} | {par} | {criteria_cells(cal)} | {e['lr']:g}{edge} | {pm(e['test_top1'])} | "
                     f"{pm(e['test_top1_at_best'])} | {'–' if math.isnan(ratio) else f'{ratio:.2f}'} | {gap} | "
                     f"{'–' if label == 'CE' else g.get('verdict', '–')} |")
    for label, spec in result.get("rejected", {}).items():
        lines.append(f"| {label} | {fmt_params(spec['params'])} | {criteria_cells(spec['calibration'])} | "
                     f"not trained | – | – | – | – | – |")
    p = result["previous"]
    cal = p["calibration"]
    lines.append(f"| {p['recipe']} | {fmt_params(cal['params'])} | {criteria_cells(cal)} | 0.03 | "
                 f"{p['quoted_top1']:.1f} ± {p['quoted_sem']:.1f} (quoted) | – | "
                 f"{p['quoted_top1'] / p['quoted_ce']:.2f} (vs CE {p['quoted_ce']}) | – | – |")
    lines.append(f"\nquoted row: {p['source']}; its rule verdict: {cal.get('reason') or '–'}")
    for label, e in [*result["summary"].items(), *result.get("rejected", {}).items()]:
        cal = e["calibration"] or {}
        if cal.get("term_shares"):
            lines.append(f"\n{label}: term shares of <delta_y>(0) {fmt_params(cal['term_shares'])} against the "
                         f"reference's {fmt_params(cal['reference_term_shares'])}")
        if cal.get("reason") or cal.get("warnings"):
            lines.append(f"\n{label}: {cal.get('reason') or ''} {' '.join(cal.get('warnings') or [])}".rstrip())
    lines.append(f"\nseed-0 val_top1 by lr: " + "; ".join(
        f"{lab}: " + ", ".join(f"{lr:g} → {v:.2f}" if v is not None else f"{lr:g} → diverged"
                               for lr, v in e["val_top1_seed0_by_lr"].items()) for lab, e in result["summary"].items()))
    lines.append(f"\nchance {100 / s['classes']:.2f} %")
    return "\n".join(lines) + "\n"


def write(result: dict, out_dir: str) -> None:
    with open(os.path.join(out_dir, "calibration_rule.json"), "w") as f:
        json.dump(finite(result), f, indent=1)
    head = run_header(result, "NCE+AGCE+ under the calibration rule", f"{len(result['runs'])} runs")
    with open(os.path.join(out_dir, "calibration_rule.md"), "w") as f:
        f.write(head + (markdown(result) if "summary" in result else ""))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="K = 200, tiny data, 1 epoch, 2 seeds (seconds)")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results; --smoke: a temp folder)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    out_dir = a.out or (os.path.join(tempfile.gettempdir(), "robustloss-smoke") if a.smoke else os.path.join(HERE, "results"))
    os.makedirs(out_dir, exist_ok=True)
    size, seeds = (SMOKE, [0, 1]) if a.smoke else (SIZE, SEEDS)
    t0 = time.time()
    specs, rejected = recipes(size["classes"])
    json_path = os.path.join(out_dir, "calibration_rule.json")
    stored = {}
    if os.path.exists(json_path):   # reuse finished runs of the same recipe, parameters, lr and seed
        with open(json_path) as f:
            old = json.load(f)
        def key(sp):
            return json.dumps(finite([sp["loss"], sp["params"], sp["logit_bias"]]), sort_keys=True)

        same = {lab for lab, sp in old.get("recipes", {}).items() if lab in specs and key(sp) == key(specs[lab])}
        stored = {(r["recipe"], r["lr"], r["seed"]): r for r in old.get("runs", []) if r["recipe"] in same}
        print(f"reusing {len(stored)} stored runs of {sorted(same)}", flush=True)
    result = {"benchmark": "calibration_rule", "smoke": a.smoke, "command": " ".join([".venv/bin/python", *sys.argv]),
              "machine_start": machine(), "setup": {**size, "dataset": "synthetic", "lrs": LRS, "seeds": seeds,
                                                    "batch_size": 128, "lr_schedule": "exponential 0.95 (preset)"},
              "recipes": specs, "rejected": rejected, "previous": {**PREVIOUS, "calibration": previous_recipe(size["classes"])},
              "runs": [], "wall_seconds": 0.0}
    for label, spec in specs.items():
        cal = spec["calibration"]
        print(f"{label}: params {fmt_params(spec['params'])}, logit_bias {spec['logit_bias']:.3g}" + (
            f", peak_ratio {cal['peak_ratio']}, shape_mismatch {cal['shape_mismatch']}, rejected {cal['rejected']}"
            f" ({cal['reason']})" if cal else ""), flush=True)
    done = {}

    def run(label, lr, seed):
        reused = (label, lr, seed) in stored
        r = stored[(label, lr, seed)] if reused else run_one(label, specs[label], lr, seed, size)
        done[(label, lr, seed)] = r
        result["runs"].append(r)
        result["wall_seconds"] = time.time() - t0
        write(result, out_dir)
        what = f"DIVERGED ({r['diverged']})" if r["diverged"] else (
            f"val {r['val_top1']:.2f} test {r['test_top1']:.2f} at-best {r['test_top1_at_best']:.2f}")
        print(f"[{len(done)}] {label} lr {lr:g} seed {seed}: {what} ({r['seconds']:.0f} s{', reused' if reused else ''})",
              flush=True)

    for label in specs:
        for lr in LRS:
            run(label, lr, seeds[0])
    summary = {}
    for label, spec in specs.items():
        by_lr = {lr: done[(label, lr, seeds[0])]["val_top1"] for lr in LRS}
        lr = max(sorted(by_lr), key=lambda v: -math.inf if by_lr[v] is None else by_lr[v])
        for seed in seeds[1:]:
            run(label, lr, seed)
        rows = [done[(label, lr, s)] for s in seeds]
        summary[label] = {"loss": spec["loss"], "params": spec["params"], "logit_bias": spec["logit_bias"],
                          "calibration": spec["calibration"], "lr": lr, "val_top1_seed0_by_lr": by_lr,
                          "diverged_seeds": sum(1 for r in rows if r["diverged"])}
        for key in ("test_top1", "test_top1_at_best"):
            m, se = mean_sem([r[key] for r in rows])
            summary[label][key] = {"mean": m, "sem": se, "values": [r[key] for r in rows]}
        summary[label]["test_top1_per_seed"] = {str(s): done[(label, lr, s)]["test_top1"] for s in seeds}
        result["summary"] = summary
        write(result, out_dir)
    ce_seeds = summary["CE"]["test_top1_per_seed"]
    for label, e in summary.items():
        vals = {s: v for s, v in e["test_top1_per_seed"].items() if v is not None}
        e["gap_vs_ce"] = gap_verdict(vals, {s: v for s, v in ce_seeds.items() if v is not None})
    result["machine_end"], result["wall_seconds"] = machine(), time.time() - t0
    write(result, out_dir)
    print(markdown(result))
    print(f"wrote {out_dir}/calibration_rule.json, .md ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
