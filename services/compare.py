"""Analytic vs grid: accuracy and compute, read back from the experiments' ``summary.json``.

Per loss and mode (one row each):
  * ``params``/``logit_bias``/``lr`` — the analytic values, or the best grid configuration (highest
    mean test top-1 over seeds among configurations whose every seed finished);
  * ``top1_mean ± top1_sem``, ``top5_mean ± top5_sem`` over the seeds of that configuration
    (s.e.m. = sample std / √n, 0 for one seed);
  * ``trials`` — every trial the mode spent on this loss (the whole grid, not just the best);
  * ``worker_seconds``/``gpu_seconds`` — compute of all those trials, start-up included; analytic
    rows add the calibration time (one process);
  * ``trial_epochs`` — epochs trained over all those trials; ``wall_seconds`` — the experiment's wall time;
  * ratios analytic/grid of top-1 and of worker-seconds on the analytic row.
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict

from services import storage as st

COLUMNS = ["loss", "mode", "params", "logit_bias", "lr", "seeds", "top1_mean", "top1_sem", "top5_mean", "top5_sem",
           "trials", "worker_seconds", "gpu_seconds", "trial_epochs", "wall_seconds", "top1_ratio", "cost_ratio"]


class CompareError(ValueError):
    """Missing or unusable experiment for compare."""


def mean_sem(values: list[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def _config_key(run: dict) -> tuple:
    return (run["loss"], tuple(sorted((run.get("params") or {}).items())), float(run.get("logit_bias") or 0.0), float(run["lr"]))


def best_config(runs: list[dict]) -> tuple[tuple, list[dict]] | None:
    """The configuration with the highest mean test top-1 over its seeds (ok runs only)."""
    groups = defaultdict(list)
    for run in runs:
        if run.get("status") == "ok" and run.get("test_top1") is not None:
            groups[_config_key(run)].append(run)
    if not groups:
        return None
    key = max(groups, key=lambda k: (mean_sem([r["test_top1"] for r in groups[k]])[0], len(groups[k])))
    return key, groups[key]


def loss_rows(summary: dict, mode: str) -> dict[str, dict]:
    by_loss = defaultdict(list)
    for run in summary["runs"]:
        by_loss[run["loss"]].append(run)
    calibration = summary.get("calibration") or {}
    rows = {}
    for loss, runs in by_loss.items():
        best = best_config(runs)
        chosen = best[1] if best else []
        top1 = mean_sem([r["test_top1"] for r in chosen])
        top5 = mean_sem([r["test_top5"] for r in chosen])
        extra = float(calibration.get(loss, {}).get("seconds", 0.0))
        ref = chosen[0] if chosen else runs[0]
        rows[loss] = {
            "loss": loss, "mode": mode, "params": ref.get("params") or {}, "logit_bias": ref.get("logit_bias"),
            "lr": ref.get("lr"), "seeds": len(chosen),
            "top1_mean": top1[0], "top1_sem": top1[1], "top5_mean": top5[0], "top5_sem": top5[1],
            "trials": len(runs),
            "worker_seconds": sum(float(r.get("compute_seconds") or 0.0) for r in runs) + extra,
            "gpu_seconds": sum(float(r.get("gpu_seconds") or 0.0) for r in runs),
            "trial_epochs": sum(int(r.get("epochs") or 0) for r in runs),
            "wall_seconds": float(summary.get("wall_seconds", 0.0)),
            "top1_ratio": None, "cost_ratio": None,
        }
    return rows


def load_summary(storage: st.Storage, name: str) -> dict:
    if not storage.exists(name):
        raise CompareError(f"experiment {name!r} not found at {storage.display(name)}")
    if not storage.exists(name, st.SUMMARY):
        raise CompareError(f"experiment {name!r} has no {st.SUMMARY} (unfinished?): finish it with --resume --name {name}")
    return storage.read_json(name, st.SUMMARY)


def compare(grid: dict, analytic: dict) -> list[dict]:
    """Rows for every loss present in both experiments (grid row, then analytic row with ratios)."""
    g, a = loss_rows(grid, "grid"), loss_rows(analytic, "analytic")
    common = [loss for loss in a if loss in g]
    if not common:
        raise CompareError(f"no loss in common: grid has {sorted(g)}, analytic has {sorted(a)}")
    rows = []
    for loss in common:
        gr, ar = g[loss], a[loss]
        if gr["top1_mean"] and not math.isnan(gr["top1_mean"]):
            ar["top1_ratio"] = ar["top1_mean"] / gr["top1_mean"]
        if gr["worker_seconds"]:
            ar["cost_ratio"] = ar["worker_seconds"] / gr["worker_seconds"]
        rows += [gr, ar]
    return rows


def _fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{nd}f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2e}"
    if isinstance(v, dict):
        return ",".join(f"{k}={_fmt(x, 3)}" for k, x in sorted(v.items())) or "-"
    return str(v)


def to_markdown(rows: list[dict]) -> str:
    head = ["loss", "mode", "params", "ε", "lr", "top-1 (%)", "top-5 (%)", "trials", "worker-s", "GPU-s", "trial-epochs", "top-1 ratio", "cost ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["loss"], r["mode"], _fmt(r["params"]), _fmt(r["logit_bias"]), _fmt(r["lr"], 4),
            f"{_fmt(r['top1_mean'])} ± {_fmt(r['top1_sem'])}", f"{_fmt(r['top5_mean'])} ± {_fmt(r['top5_sem'])}",
            str(r["trials"]), _fmt(r["worker_seconds"], 1), _fmt(r["gpu_seconds"], 1), str(r["trial_epochs"]),
            _fmt(r["top1_ratio"], 3), _fmt(r["cost_ratio"], 3),
        ]) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (_fmt(r[k], 6) if k == "params" else r[k]) for k in COLUMNS})
    return buf.getvalue()


def plot(rows: list[dict], path: str) -> str:
    """Accuracy against compute, one marker per loss and mode, error bars = s.e.m."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = {"grid": "o", "analytic": "*"}
    losses = sorted({r["loss"] for r in rows})
    colors = {loss: f"C{i}" for i, loss in enumerate(losses)}
    for r in rows:
        ax.errorbar(max(r["worker_seconds"], 1e-3), r["top1_mean"], yerr=r["top1_sem"], fmt=markers[r["mode"]],
                    color=colors[r["loss"]], markersize=10 if r["mode"] == "analytic" else 7, capsize=3,
                    label=f"{r['loss']} ({r['mode']})")
    ax.set_xscale("log")
    ax.set_xlabel("compute (worker-seconds, start-up included)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("analytic (★) vs grid search (●)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(storage: st.Storage, name: str, rows: list[dict], *, grid: str, analytic: str) -> dict:
    """CSV, Markdown and PNG into ``<storage>/<name>/``; returns their locations."""
    import tempfile, os

    md = f"# compare: grid `{grid}` vs analytic `{analytic}`\n\n" + to_markdown(rows)
    storage.write_bytes(md.encode(), name, "compare.md")
    storage.write_bytes(to_csv(rows).encode(), name, "compare.csv")
    storage.write_json({"grid": grid, "analytic": analytic, "rows": rows}, name, "compare.json")
    with tempfile.TemporaryDirectory() as d:
        png = plot(rows, os.path.join(d, "compare.png"))
        storage.upload_file(png, name, "compare.png")
    return {k: storage.display(name, f"compare.{k}") for k in ("md", "csv", "png", "json")}
