"""Analytic against tuning at K = 1000 on the glyphs (issue 29, item 3), from the product's stored experiments.

    S=benchmarks/results/glyphs_k1000-store
    .venv/bin/python sweeps/run.py --config sweeps/configs/glyphs1000.yaml --name glyphs1000 --storage-path $S
    for loss in mae gce; do   # one real Optuna TPE run per loss at 3x analytic's budget (12 x 20 = 240 trial-epochs)
      .venv/bin/python sweeps/run.py --config sweeps/configs/glyphs1000.yaml --mode grid --search optuna \\
          --scheduler none --num-samples 12 --seeds 1 --losses $loss --name glyphs1000-optuna-$loss --storage-path $S
    done
    .venv/bin/python benchmarks/glyphs_k1000.py --storage-path $S

Writes ``results/glyphs_k1000/``: ``grid-rows.json`` (every grid trial), the product's own report of the
comparison (``compare.{json,md,png}``, ``anytime.{json,png}``, copied from ``<name>-compare``), and
``optuna.{json,md}``: each real Optuna run's trials in the order they finished, its pick on the noisy validation
split, and the trial-epochs at which its incumbent first reached analytic's mean test top-1 minus the tolerance
``anytime.json`` states — beside the replay of TPE on the grid (``budget_to_match["tpe"]``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from services import api  # noqa: E402
from services import storage as st  # noqa: E402

OUT = os.path.join(HERE, "results", "glyphs_k1000")
REPORT_FILES = ("compare.json", "compare.md", "compare.png", "anytime.json", "anytime.png")
KEEP = ("loss", "logit_bias", "params", "lr", "seed", "status", "epochs", "val_top1", "test_top1", "memorized",
        "compute_seconds", "ended_at")


def optuna_record(rows: list[dict], analytic: dict, replay: dict | None) -> dict:
    """One real search: its finished trials in finishing order, the incumbent (best noisy-val top-1 so far) after
    each, and the trial-epochs at which that incumbent's test top-1 first reached ``analytic``'s mean minus its
    tolerance (None: never, within the run)."""
    done = [r for r in rows if r.get("status") == "ok"]
    done.sort(key=lambda r: (r.get("ended_at") is None, r.get("ended_at") or 0))
    target = analytic["top1_mean"] - analytic["tolerance"]
    spent, best, trace, matched_at = 0, None, [], None
    for r in done:
        spent += int(r["epochs"])
        if best is None or r["val_top1"] > best["val_top1"]:
            best = r
        trace.append({"trial_epochs": spent, "incumbent_test_top1": best["test_top1"]})
        if matched_at is None and best["test_top1"] >= target:
            matched_at = spent
    out = {"trials": [{k: r.get(k) for k in KEEP} for r in done], "trial_epochs": spent, "trace": trace,
           "pick": {k: best.get(k) for k in ("logit_bias", "params", "lr", "val_top1", "test_top1")} if best else None,
           "analytic_mean": analytic["top1_mean"], "tolerance": analytic["tolerance"],
           "analytic_budget": analytic["budget"], "budget_to_match": matched_at,
           "ratio_to_match": None if matched_at is None else round(matched_at / analytic["budget"], 3),
           "pick_minus_analytic": None if best is None else round(best["test_top1"] - analytic["top1_mean"], 2)}
    if replay is not None:
        out["replay_tpe"] = {k: replay.get(k) for k in ("median", "q25", "q75", "matched_seeds", "seeds")}
    return out


def optuna_markdown(records: dict) -> str:
    lines = ["# Real `--search optuna` runs (TPE, no scheduler, 1 seed per trial) at K = 1000, beside the replay", "",
             "| loss | trials (trial-epochs) | pick (noisy val) | its test top-1 | analytic's mean | pick − analytic "
             "| budget to match: real run | replay of TPE on the grid: median (IQR), seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for loss, r in records.items():
        p = r["pick"] or {}
        knob = (f"ε = {p.get('logit_bias', 0):.2f}" if loss == "mae"
                else ", ".join(f"{k} = {v:.3f}" for k, v in (p.get("params") or {}).items()))
        rep = r.get("replay_tpe") or {}
        rep_s = (f"{rep['median']:g} ({rep['q25']:g}–{rep['q75']:g}), {rep['matched_seeds']}/{rep['seeds']} match"
                 if rep.get("median") is not None else "—")
        match = "never" if r["budget_to_match"] is None else \
            f"{r['budget_to_match']} ({r['ratio_to_match']:g}× analytic's {r['analytic_budget']})"
        lines.append(f"| {loss.upper()} | {len(r['trials'])} ({r['trial_epochs']}) | {knob}, lr {p.get('lr', 0):.3g} | "
                     f"{p.get('test_top1', 0):.2f} | {r['analytic_mean']:.2f} | {r['pick_minus_analytic']:+.2f} | "
                     f"{match} | {rep_s} |")
    lines += ["", "Budget to match: trial-epochs until the incumbent (best noisy-validation top-1 so far, trials in "
              "finishing order) first reaches analytic's mean test top-1 minus analytic's s.e.m. (anytime.json's "
              "tolerance). A single real run is one draw of what the replay's 20 seeds spread."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage-path", required=True)
    ap.add_argument("--name", default="glyphs1000", help="the --mode all experiment (its -grid and -compare)")
    ap.add_argument("--optuna", default="glyphs1000-optuna-{loss}", help="the Optuna runs' names")
    a = ap.parse_args(argv)
    storage = st.resolve_storage(st.resolve_user_path(a.storage_path))
    os.makedirs(OUT, exist_ok=True)
    grid = api.load_summary(a.storage_path, f"{a.name}-grid")
    with open(os.path.join(OUT, "grid-rows.json"), "w") as f:
        json.dump([{k: r.get(k) for k in KEEP if k != "ended_at"} for r in grid["runs"]], f, indent=1)
    compare = f"{a.name}-compare"
    for fname in REPORT_FILES:
        if not storage.exists(compare, fname):
            raise SystemExit(f"{storage.display(compare, fname)} missing: finish the --mode all run first")
        shutil.copyfile(storage.path(compare, fname), os.path.join(OUT, fname))
    with open(os.path.join(OUT, "anytime.json")) as f:
        anytime = json.load(f)["losses"]
    records = {}
    for loss in anytime:
        name = a.optuna.format(loss=loss)
        if not storage.exists(name, st.SUMMARY):
            print(f"{name}: no summary yet (skipped)")
            continue
        rows = api.load_summary(a.storage_path, name)["runs"]
        records[loss] = dict(optuna_record(rows, anytime[loss]["analytic"],
                                           anytime[loss]["budget_to_match"].get("tpe")), experiment=name)
    with open(os.path.join(OUT, "optuna.json"), "w") as f:
        json.dump(records, f, indent=1)
    with open(os.path.join(OUT, "optuna.md"), "w") as f:
        f.write(optuna_markdown(records))
    print(open(os.path.join(OUT, "compare.md")).read())
    print(optuna_markdown(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
