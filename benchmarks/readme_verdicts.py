"""Issue 21: every comparison the READMEs state, recomputed from the results files with the project's one
verdict vocabulary (``stats.gap_verdict``: paired interval over shared seeds, else Welch; better | tie |
worse | undetermined; against the paper's direction: reproduced | contradicted | not significant).

    .venv/bin/python benchmarks/readme_verdicts.py            # seconds: reads benchmarks/results, writes
                                                              # results/readme_verdicts.{json,md}

Each claim names its results file, the two sides (per-seed test top-1), the gap a − b, its 95 % interval
and kind, the verdict and — where the paper states a direction — the README word. Files that hold only
means (analytic_vs_grid.json: Welch intervals, no per-seed values) are quoted as stored, marked so.
"""
from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from stats import finite, gap_verdict, paper_wording  # noqa: E402

RESULTS = os.path.join(HERE, "results")


def _load(name: str):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    if name.endswith(".jsonl"):
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    with open(path) as f:
        return json.load(f)


def _seeds(values: list) -> dict:
    """Per-seed dict from a list stored in seed order 0, 1, 2 (the scripts' SEEDS)."""
    return {str(i): v for i, v in enumerate(values) if v is not None}


def claim(text: str, source: str, a: dict, b: dict, direction: int | None) -> dict:
    g = gap_verdict(a, b)
    return {"claim": text, "source": f"benchmarks/results/{source}", "a_per_seed": a, "b_per_seed": b, **g,
            "paper_direction": direction, "word": None if direction is None else paper_wording(g["ci95"], direction)}


def noise_k10(out: list) -> None:
    d = _load("noise_k10.json")
    if not d:
        return
    s = d["summary"]
    for view in ("final", "early_stopping"):
        v = {lab: _seeds(s[f"{lab} @ 40%"][view]["values"]) for lab in ("CE", "MAE", "MAE*", "GCE", "NCE+MAE")
             if f"{lab} @ 40%" in s}
        tag = f"K = 10, 40 % noise, {view.replace('_', ' ')}"
        out.append(claim(f"{tag}: MAE* vs CE (paper: MAE* > CE)", "noise_k10.json", v["MAE*"], v["CE"], 1))
        out.append(claim(f"{tag}: MAE* vs MAE (paper: MAE* > MAE)", "noise_k10.json", v["MAE*"], v["MAE"], 1))
        out.append(claim(f"{tag}: MAE vs CE", "noise_k10.json", v["MAE"], v["CE"], None))


def many_classes(out: list) -> None:
    d = _load("many_classes_k1000.json")
    if not d:
        return
    s = d["summary"]
    for prot in ("shared", "searched"):
        v = {lab: _seeds(e[prot]["test_top1"]["values"]) for lab, e in s.items()}
        tag = f"K = 1000 clean, {prot} lr"
        out.append(claim(f"{tag}: GCE q=0.7 vs CE (paper: GCE fails at many classes)", "many_classes_k1000.json",
                         v["GCE q=0.7"], v["CE"], -1))
        out.append(claim(f"{tag}: MAE* vs CE", "many_classes_k1000.json", v["MAE*"], v["CE"], None))
        out.append(claim(f"{tag}: GCE+ (K_ref=10) vs GCE q=0.7 (paper: calibration fixes GCE)",
                         "many_classes_k1000.json", v["GCE+ (K_ref=10)"], v["GCE q=0.7"], 1))
        out.append(claim(f"{tag}: GCE+ (K_ref=10) vs CE", "many_classes_k1000.json", v["GCE+ (K_ref=10)"], v["CE"], None))
        out.append(claim(f"{tag}: GCE+ (K_ref=10) vs GCE+ (K_ref=100) (the default reference)",
                         "many_classes_k1000.json", v["GCE+ (K_ref=10)"], v["GCE+ (K_ref=100)"], None))


def paper_claims(out: list) -> None:
    rows = _load("paper_claims.jsonl")
    if not rows:
        return
    for k in (10, 100, 1000):
        for nr in (0.0, 0.4):
            v = {lab: {str(r["seed"]): r["test_top1"] for r in rows if r["label"] == lab and r["K"] == k
                       and r["noise_rate"] == nr and r["test_top1"] is not None} for lab in ("ce", "mae*", "mae")}
            if v["ce"] and v["mae*"]:
                out.append(claim(f"paper_claims (oracle LR), K = {k}, {nr:.0%} noise: MAE* vs CE (paper: MAE* > CE)",
                                 "paper_claims.jsonl", v["mae*"], v["ce"], 1))


def calibration_rule(out: list) -> None:
    d = _load("calibration_rule.json")
    if not d or "summary" not in d:
        return
    s = d["summary"]
    ce = {k: v for k, v in (s["CE"].get("test_top1_per_seed") or _seeds(s["CE"]["test_top1"]["values"])).items()
          if v is not None}
    for lab, e in s.items():
        if lab != "CE":
            a = e.get("test_top1_per_seed") or _seeds(e["test_top1"]["values"])
            out.append(claim(f"K = 1000 clean, lr on validation: {lab} (lr {e['lr']:g}) vs CE (lr {s['CE']['lr']:g})",
                             "calibration_rule.json", {k: v for k, v in a.items() if v is not None}, ce, None))


def analytic_vs_grid(out: list) -> None:
    d = _load("analytic_vs_grid.json")
    if not d:
        return
    for setting, by_proto in d["results"].items():
        for proto, res in by_proto.items():
            for r in res.get("rows", []):
                if r["mode"] == "analytic" and r.get("selection") == "val":
                    out.append({"claim": f"§0 {setting}, {proto} lr, val selection: {r['loss']} analytic vs grid",
                                "source": "benchmarks/results/analytic_vs_grid.json", "gap": r["gap"], "ci95": r["gap_ci95"],
                                "interval": "welch (stored; no per-seed values: rerun for the paired interval)",
                                "verdict": r["verdict"], "paper_direction": None, "word": None})


def dynamic_bias(out: list) -> None:
    d = _load("dynamic_bias.json")
    if not d:
        return
    v: dict = {}
    for r in d["runs"]:
        if r.get("test_top1") is not None:
            v.setdefault(r["setting"], {}).setdefault(r["row"], {})[str(r["seed"])] = r["test_top1"]
    for setting, rows in v.items():
        for other in ("MAE* constant", "MAE* weaning"):
            if "MAE* dynamic" in rows and other in rows:
                out.append(claim(f"dynamic bias, {setting}: MAE* dynamic vs {other}", "dynamic_bias.json",
                                 rows["MAE* dynamic"], rows[other], None))


def fashionmnist(out: list) -> None:
    """The real Fashion-MNIST claims (fashionmnist_mlp1024.py already computed them: quoted as stored)."""
    d = _load("fashionmnist_mlp1024.json")
    if not d:
        return
    for c in d.get("claims", []):
        out.append({"claim": f"real Fashion-MNIST, MLP1024: {c['claim']} (paper {c['paper_gap']:+.2f})",
                    "source": "benchmarks/results/fashionmnist_mlp1024.json", "gap": c["gap"], "ci95": c["ci95"],
                    "interval": c["interval"], "verdict": c["verdict"],
                    "paper_direction": c["paper_direction"], "word": c["wording"]})
    for r in d.get("compare", []):
        if r.get("mode") == "analytic":
            out.append({"claim": f"real Fashion-MNIST 40 %, compare: {r['loss']} analytic vs grid",
                        "source": "benchmarks/results/fashionmnist_mlp1024.json", "gap": r.get("gap"),
                        "ci95": r.get("gap_ci95"), "interval": r.get("interval"), "verdict": r.get("verdict"),
                        "paper_direction": None, "word": None})


def main() -> int:
    out: list = []
    for part in (fashionmnist, noise_k10, many_classes, paper_claims, calibration_rule, dynamic_bias, analytic_vs_grid):
        part(out)
    with open(os.path.join(RESULTS, "readme_verdicts.json"), "w") as f:
        json.dump(finite({"claims": out}), f, indent=1)
    lines = ["# README verdicts (benchmarks/readme_verdicts.py)", "",
             "a − b, 95 % interval (paired over shared seeds, else Welch), verdict, and the README word where the "
             "paper states a direction.", "", "| claim | gap [95 % CI] | interval | verdict | word | source |",
             "|---|---|---|---|---|---|"]
    for c in out:
        ci = "" if c["ci95"] is None else f" [{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}]"
        gap = "–" if c["gap"] is None else f"{c['gap']:+.1f}{ci}"
        lines.append(f"| {c['claim']} | {gap} | {c['interval']} | {c['verdict']} | {c['word'] or '–'} | {c['source']} |")
    with open(os.path.join(RESULTS, "readme_verdicts.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
