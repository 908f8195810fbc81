"""Analytic against the tuned grid at K = 1000 on the glyphs (issue 29, item 3), from the product's stored trials.

    .venv/bin/python sweeps/run.py --config sweeps/configs/glyphs1000.yaml --name glyphs1000 --storage-path S
    .venv/bin/python benchmarks/glyphs_k1000.py --storage-path S [--grid glyphs1000-grid] [--analytic glyphs1000-analytic]

Writes ``results/glyphs_k1000/``: ``grid-rows.json`` (every stored grid trial with its status, finished or not),
``compare.json`` / ``compare.md`` (``services.compare.compare`` on the losses whose grid part is complete: every
configuration × seed of the grid file finished), so a comparison that is still running reports what it has.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from services import api, compare as cmp, resume  # noqa: E402
from services import storage as st  # noqa: E402

OUT = os.path.join(HERE, "results", "glyphs_k1000")
GRID_SIZE = {"mae": 5 * 2 * 2, "gce": 5 * 2 * 2}   # glyphs1000-grid.yaml: 5 values x 2 lrs x 2 seeds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage-path", required=True)
    ap.add_argument("--grid", default="glyphs1000-grid")
    ap.add_argument("--analytic", default="glyphs1000-analytic")
    a = ap.parse_args(argv)
    storage = st.resolve_storage(st.resolve_user_path(a.storage_path))
    grid_rows = resume.unfinished_rows(storage, a.grid) if not storage.exists(a.grid, st.SUMMARY) else \
        api.load_summary(a.storage_path, a.grid)["runs"]
    os.makedirs(OUT, exist_ok=True)
    keep = ("loss", "logit_bias", "params", "lr", "seed", "status", "epochs", "val_top1", "test_top1", "memorized",
            "compute_seconds")
    with open(os.path.join(OUT, "grid-rows.json"), "w") as f:
        json.dump([{k: r.get(k) for k in keep} for r in grid_rows], f, indent=1)
    done = {loss for loss, n in GRID_SIZE.items()
            if sum(r["loss"] == loss and r["status"] == "ok" for r in grid_rows) == n}
    analytic = api.load_summary(a.storage_path, a.analytic)
    grid = {"experiment": a.grid, "num_classes": analytic.get("num_classes"), "lr_protocol": analytic.get("lr_protocol"),
            "runs": [r for r in grid_rows if r["loss"] in done and r["status"] == "ok"]}
    rows = cmp.compare(grid, {**analytic, "runs": [r for r in analytic["runs"] if r["loss"] in done]})
    with open(os.path.join(OUT, "compare.json"), "w") as f:
        json.dump({"grid": a.grid, "analytic": a.analytic, "complete_losses": sorted(done), "rows": rows}, f, indent=1)
    with open(os.path.join(OUT, "compare.md"), "w") as f:
        f.write(cmp.title(rows, a.grid, a.analytic) + "\n\n" + cmp.to_markdown(rows)
                + f"\nLosses whose grid part is complete: {', '.join(sorted(done)) or 'none'}.\n")
    cmp.plot(rows, os.path.join(OUT, "compare.png"), num_classes=grid["num_classes"])
    for r in rows:
        print({k: r.get(k) for k in ("loss", "mode", "label", "lr", "logit_bias", "params", "top1_mean", "gap",
                                     "gap_ci95", "verdict", "trial_epochs", "epoch_ratio")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
