"""The paper's many-class claims on one real image family: the glyph K-sweep (issue 29, item 2).

    .venv/bin/python benchmarks/glyphs_runs.py pilot && .venv/bin/python benchmarks/glyphs_runs.py ksweep
    .venv/bin/python benchmarks/glyphs_ksweep.py        # -> results/glyphs_ksweep.{json,md,png}

Trains nothing: reads ``results/glyphs/*.json`` (``glyphs_runs.py``) and writes one row per (loss, K, noise rate)
with the seeds it has, the pilot's learning-rate table, and the claims as paired gaps over seeds with the project's
verdicts (``services.compare.verdict``). A row with fewer seeds than planned is flagged ``complete: false``.
"""
from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import glyphs_runs as gr  # noqa: E402
from stats import finite, gap_verdict, mean_sem  # noqa: E402

RESULTS = os.path.join(HERE, "results")
# The claims, each a paired gap (first − second) at every K and noise rate.
CLAIMS = (("MAE*", "MAE", "the logit bias restores learning"), ("GCE+", "GCE", "calibrated q restores learning"),
          ("NF-MAE+", "NF-MAE", "calibrated α restores learning"), ("MAE*", "CE", "MAE* against CE"),
          ("GCE+", "CE", "GCE+ against CE"), ("NF-MAE+", "CE", "NF-MAE+ against CE"))


def _record(label: str, K: int, rate: float, seed: int) -> dict | None:
    lr = gr.pilot_pick(label, K)
    return None if lr is None else gr.fr.find_record(gr.run_config(label, K, lr, rate, seed), out=gr.OUT,
                                                     namer=gr.name_of)


def rows() -> list[dict]:
    out = []
    for K in gr.KS:
        for rate in gr.NOISE:
            for label in gr.LABELS:
                recs = {s: r for s in gr.SEEDS if (r := _record(label, K, rate, s)) is not None}
                if not recs:
                    continue
                top1 = {s: (r["history"][-1]["test_top1"] if r["status"] == "ok" else float("nan"))
                        for s, r in recs.items()}
                m, sem = mean_sem(list(top1.values()))
                cfg = next(iter(recs.values()))["config"]
                out.append({"loss": label, "K": K, "noise_rate": rate, "seeds": sorted(recs),
                            "top1_per_seed": [top1[s] for s in sorted(recs)], "top1_mean": m, "top1_sem": sem,
                            "chance": 100.0 / K,
                            "memorized_final": [r["history"][-1]["memorized"] for _, r in sorted(recs.items())
                                                if r["history"] and rate > 0] or None,
                            "epochs": cfg["epochs"], "lr": cfg["lr"],
                            "params": {**cfg["loss_params"], **({"logit_bias": cfg["logit_bias"]}
                                                               if cfg["logit_bias"] else {})},
                            "wall_s": [r["wall_s"] for _, r in sorted(recs.items())],
                            "complete": len(recs) == len(gr.SEEDS)})
    return out


def claims(table: list[dict]) -> list[dict]:
    by = {(r["loss"], r["K"], r["noise_rate"]): r for r in table}
    out = []
    for a, b, what in CLAIMS:
        for K in gr.KS:
            for rate in gr.NOISE:
                ra, rb = by.get((a, K, rate)), by.get((b, K, rate))
                if ra is None or rb is None:
                    continue
                va, vb = dict(zip(ra["seeds"], ra["top1_per_seed"])), dict(zip(rb["seeds"], rb["top1_per_seed"]))
                out.append({"claim": what, "a": a, "b": b, "K": K, "noise_rate": rate,
                            **gap_verdict(va, vb), "seeds": sorted(set(va) & set(vb))})
    return out


def pilot_table() -> list[dict]:
    out = []
    for K in gr.PILOT_KS:
        for label in gr.LABELS:
            for lr in gr.PILOT_LRS:
                r = gr.fr.find_record(gr.run_config(label, K, lr, 0.4, 0), out=gr.OUT, namer=gr.name_of)
                if r is not None:
                    last = r["history"][-1] if r["history"] else {}
                    out.append({"loss": label, "K": K, "lr": lr, "status": r["status"],
                                "val_top1": last.get("val_top1"), "test_top1": last.get("test_top1"),
                                "picked": gr.pilot_pick(label, K) == lr})
    return out


def table(res: dict) -> list[str]:
    """The K × loss table of test top-1 (the README's, between its glyphs_ksweep markers)."""
    by = {(r["loss"], r["K"], r["noise_rate"]): r for r in res["rows"]}
    lines = ["| K | noise | chance | " + " | ".join(gr.LABELS) + " |", "|" + "---|" * (3 + len(gr.LABELS))]
    for K in gr.KS:
        for rate in gr.NOISE:
            cells = []
            for label in gr.LABELS:
                r = by.get((label, K, rate))
                n = 0 if r is None else len(r["seeds"])
                sem = "" if r is None or r["top1_sem"] != r["top1_sem"] else f" ± {r['top1_sem']:.1f}"
                cells.append("–" if r is None else f"{r['top1_mean']:.1f}{sem}"
                             + ("" if r["complete"] else f" ({n} seed{'s' * (n > 1)})"))
            lines.append(f"| {K} | {rate:.0%} | {100 / K:.1f} | " + " | ".join(cells) + " |")
    return lines


def markdown(res: dict) -> str:
    lines = ["# Glyph K-sweep (printed Chinese characters, held-out typefaces)\n",
             f"Setup: {json.dumps(gr.SETUP)}; seeds {list(gr.SEEDS)}; test top-1 (%) at the last epoch, mean ± s.e.m.\n",
             *table(res)]
    lines += ["", "Learning rates (pilot pick, K = 10 uses K = 100's): " + "; ".join(
        f"{label}: " + ", ".join(f"K={K} {gr.pilot_pick(label, K)}" for K in gr.PILOT_KS) for label in gr.LABELS), "",
        "| claim | K | noise | gap (points) | 95 % interval | verdict |", "|---|---|---|---|---|---|"]
    for c in res["claims"]:
        ci = c["ci95"]
        lines.append(f"| {c['a']} − {c['b']} | {c['K']} | {c['noise_rate']:.0%} | {c['gap']:+.1f} | "
                     + (f"[{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci and None not in ci else "–") + f" | {c['verdict']} |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(gr.NOISE), figsize=(12, 4.2), sharey=True)
    for ax, rate in zip(axes, gr.NOISE):
        for label in gr.LABELS:
            pts = sorted((r["K"], r["top1_mean"], r["top1_sem"]) for r in res["rows"]
                         if r["loss"] == label and r["noise_rate"] == rate)
            if pts:
                k, m, s = zip(*pts)
                ax.errorbar(k, m, yerr=[0 if v != v else v for v in s], marker="o", capsize=3, label=label,
                            linestyle="--" if label in ("MAE", "GCE", "NF-MAE") else "-")
        ks = list(gr.KS)
        ax.plot(ks, [100 / k for k in ks], color="k", linewidth=0.8, linestyle=":", label="chance")
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("classes K (log)")
        ax.set_title(f"{rate:.0%} symmetric noise")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test top-1 (%) on held-out typefaces")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")
    fig.suptitle("Glyphs (held-out typefaces): MLP1024, 20 epochs, mean ± s.e.m. over seeds")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


README = os.path.join(os.path.dirname(HERE), "README.md")
MARKERS = ("<!-- glyphs_ksweep table", "<!-- end glyphs_ksweep table -->")


def update_readme(res: dict) -> None:
    """Put :func:`table` between the README's markers (the first marker line stays as written)."""
    text = open(README).read()
    start = text.index("\n", text.index(MARKERS[0])) + 1
    end = text.index(MARKERS[1])
    with open(README, "w") as f:
        f.write(text[:start] + "\n".join(table(res)) + "\n" + text[end:])


def main() -> int:
    table = rows()
    res = {"setup": gr.SETUP, "labels": list(gr.LABELS), "ks": list(gr.KS), "noise_rates": list(gr.NOISE),
           "seeds_planned": list(gr.SEEDS), "pilot": {"lrs": list(gr.PILOT_LRS), "ks": list(gr.PILOT_KS),
                                                      "rule": "best last-epoch noisy-validation top-1, 40 % noise, seed 0",
                                                      "runs": pilot_table()},
           "sigma": 1.0, "rows": table, "claims": claims(table)}
    with open(os.path.join(RESULTS, "glyphs_ksweep.json"), "w") as f:
        json.dump(finite(res), f, indent=1)
    with open(os.path.join(RESULTS, "glyphs_ksweep.md"), "w") as f:
        f.write(markdown(res))
    plot(res, os.path.join(RESULTS, "glyphs_ksweep.png"))
    update_readme(res)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
