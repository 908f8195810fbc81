"""Per-search-seed anytime figures for the real Fashion-MNIST comparison, from its stored summaries.

    .venv/bin/python benchmarks/fmnist40_anytime_seeds.py     # -> results/fmnist40/anytime_seeds.json

The comparison's raw store (per-epoch curves) was not kept, so the ASHA searchers cannot be replayed again. The
full-fidelity searchers (grid order, random search, TPE) use only each configuration's final noisy-validation
score and test top-1, which ``grid-summary.json`` holds: their replay is rebuilt from it, checked against the
stored ``anytime.json`` (the same mean curves and mean-crossing budgets, or the script stops), and given the
per-seed statistics of ``services.anytime_stats`` (budget to match analytic's mean minus its s.e.m., median and
IQR over 20 search seeds, the fraction that ever match, regret at analytic's own budget).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from services import anytime as at  # noqa: E402
from services import anytime_stats as ss  # noqa: E402
from services import compare as cmp  # noqa: E402

RESULTS = os.path.join(HERE, "results", "fmnist40")
METHODS = ("grid_order", "random", "tpe")


def _table(loss: str, runs: list[dict]) -> at.Table:
    groups = cmp.configurations(runs)
    epochs = runs[0]["epochs"]
    configs = []
    for i, grp in enumerate(groups.values()):
        score, top1 = (float(np.mean([r[k] for r in grp])) for k in ("val_top1", "test_top1"))
        point = {"lr": grp[0]["lr"], "logit_bias": grp[0].get("logit_bias") or 0.0, **(grp[0].get("params") or {})}
        configs.append(at.Config(index=i, point=point, score=score, top1=top1, curve=(score,) * epochs,
                                 epoch_seconds=(1.0,) * epochs))
    chosen = cmp.choose(groups, "val_top1")
    pick = next(i for i, grp in enumerate(groups.values()) if grp is chosen)
    return at.Table(loss=loss, configs=configs, epochs=epochs, seeds=len(next(iter(groups.values()))), pick=pick)


def main() -> int:
    load = lambda f: json.load(open(os.path.join(RESULTS, f)))   # noqa: E731
    grid, analytic, stored = load("grid-summary.json"), load("analytic-summary.json"), load("anytime.json")
    rows = {(r["loss"], r["mode"]): r for r in cmp.compare(grid, analytic, selection="val")}
    out = {"source": "grid-summary.json, analytic-summary.json (benchmarks/results/fmnist40)", "methods": METHODS,
           "losses": {}}
    for loss in sorted({r["loss"] for r in grid["runs"]}):
        runs = [r for r in grid["runs"] if r["loss"] == loss and r.get("role", "main") == "main"]
        d = at.loss_curves(_table(loss, runs), rows[(loss, "grid")], rows[(loss, "analytic")], methods=list(METHODS))
        for m in METHODS:
            old = stored["losses"][loss]
            if d["methods"][m]["budget"] != old["methods"][m]["budget"] or not np.allclose(
                    d["methods"][m]["top1_mean"], old["methods"][m]["top1_mean"]) or d["matched_at"][m] != old["matched_at"][m]:
                raise SystemExit(f"{loss} {m}: the rebuilt replay differs from the stored anytime.json")
        out["losses"][loss] = {"analytic": d["analytic"], "budget_to_match": d["budget_to_match"],
                               "regret_at_analytic_budget": d["regret_at_analytic_budget"],
                               "matched_at_mean_curve": d["matched_at"], "statements": ss.statements(loss, d)}
        print("\n".join(ss.statements(loss, d)))
    with open(os.path.join(RESULTS, "anytime_seeds.json"), "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
