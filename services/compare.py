"""Analytic vs grid: accuracy with uncertainty and compute, read back from the experiments' ``summary.json``.

A *configuration* is (loss, params, logit_bias, lr); its seeds are the trials that differ only in ``seed``.
Per loss and mode (one row each):
  * selection — among configurations whose every seed finished ok (``role`` "pilot" trials are never
    candidates), the one with the highest mean over seeds of the selection metric: ``selection="val"``
    the final-epoch noisy-validation top-1 ``val_top1``; ``selection="test"`` the test top-1 itself (the
    paper's protocol, an *oracle*: labelled so wherever printed). The same rule picks the analytic
    configuration when the analytic experiment searched several learning rates;
  * ``top1_mean ± top1_sem``, ``top5_mean ± top5_sem`` — test accuracy of the chosen configuration only,
    over its seeds (s.e.m. = sample s.d. / √n, None for one seed);
  * early stopping (``es_*``) — chosen by the highest mean ``val_top1_best`` (oracle: ``test_top1_at_best``),
    reporting the mean ``test_top1_at_best``;
  * ``top1_per_seed`` — ``{seed: test top-1}`` of the chosen configuration (``es_top1_per_seed`` for the
    early-stopping view), so any interval can be recomputed from the results file;
  * ``gap`` = analytic − grid ``top1_mean`` with a 95 % interval ``gap_ci95`` and a ``verdict``
    (better / worse / tie / undetermined, ``verdict``), on the analytic row; the same for the ``es_`` view.
    ``interval`` (on both rows of the loss) names it: "paired" (same seeds on both sides: the paired-t
    interval of the per-seed differences, matched by seed: the design shares data, noise, split,
    initialisation and batch order per seed) or "welch" (the seeds differ);
  * cost — every trial the mode spent on the loss (whole grid or LR search, pilots and failures included):
    ``trials``, ``trial_epochs``, ``worker_seconds`` (+ calibration time for analytic), ``gpu_seconds``;
    ratios analytic/grid ``cost_ratio`` (worker-seconds) and ``epoch_ratio`` (trial-epochs) on the analytic row.
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict

from services import storage as st
from services.request import RequestError

# selection -> view -> (metric that chooses the configuration, metric reported for it)
SELECTIONS = {
    "val": {"": ("val_top1", "test_top1"), "es_": ("val_top1_best", "test_top1_at_best")},
    "test": {"": ("test_top1", "test_top1"), "es_": ("test_top1_at_best", "test_top1_at_best")},
}
SELECTION_LABEL = {"val": "validation (noisy labels)", "test": "oracle (test accuracy)"}

COLUMNS = ["loss", "mode", "selection", "lr_protocol", "num_classes", "params", "logit_bias", "lr", "seeds", "candidates",
           "top1_mean", "top1_sem", "top5_mean", "top5_sem", "val_top1_mean", "val_top1_clean_mean", "memorized_mean",
           "top1_per_seed", "gap", "gap_ci95", "verdict", "interval", "es_params", "es_logit_bias", "es_lr", "es_seeds",
           "es_top1_mean", "es_top1_sem", "es_top1_per_seed", "es_best_epoch_mean", "es_gap", "es_gap_ci95", "es_verdict",
           "es_interval", "trials", "pilot_trials", "trial_epochs",
           "worker_seconds", "calibration_seconds", "gpu_seconds", "wall_seconds", "cost_ratio", "epoch_ratio",
           "label", "load_average"]


class CompareError(RequestError):
    """Missing or unusable experiment for compare."""


# ----------------------------------------------------------------------------- statistics
def mean_sem(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean, s.e.m. = s / √n with the sample s.d. s (n − 1); None for n < 2."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n == 1:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def _t_half(se: float, df: float, level: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df)) * se


def paired_ci(a: list[float], b: list[float], level: float = 0.95) -> tuple[float | None, list[float] | None]:
    """mean(a − b) and the paired-t interval of the per-seed differences d_i = a_i − b_i (``a``, ``b``
    matched by position): d̄ ± t_{(1+level)/2, n−1} · s_d / √n (scipy's ``ttest_rel(a, b)``). Every
    difference 0: [0, 0]; all equal but not 0 (no spread to estimate), or fewer than 2 pairs: None."""
    if len(a) != len(b):
        raise ValueError(f"paired_ci needs as many values on each side, got {len(a)} and {len(b)}")
    gap, se = mean_sem([x - y for x, y in zip(a, b)])
    if gap is None or se is None:
        return gap, None
    if se == 0.0:
        return gap, ([0.0, 0.0] if gap == 0.0 else None)
    half = _t_half(se, len(a) - 1, level)
    return gap, [gap - half, gap + half]


def welch_ci(a: list[float], b: list[float], level: float = 0.95) -> tuple[float | None, list[float] | None]:
    """mean(a) − mean(b) and its Welch interval: ± t_{(1+level)/2, ν} · √(s_a²/n_a + s_b²/n_b), with the
    Welch–Satterthwaite ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1))
    (scipy's ``ttest_ind(a, b, equal_var=False)``). Interval None when either side has fewer than 2
    values, or both sides are constant at different values (no spread to estimate; scipy gives a
    zero-width interval or NaN there);
    [0, 0] when both are constant at the same value."""
    (ma, sa), (mb, sb) = mean_sem(a), mean_sem(b)
    if ma is None or mb is None:
        return None, None
    gap = ma - mb
    if sa is None or sb is None:
        return gap, None
    se2 = sa ** 2 + sb ** 2
    if se2 == 0.0:
        return gap, ([0.0, 0.0] if gap == 0.0 else None)
    df = se2 ** 2 / (sa ** 4 / (len(a) - 1) + sb ** 4 / (len(b) - 1))
    half = _t_half(math.sqrt(se2), df, level)
    return gap, [gap - half, gap + half]


def gap_interval(a: dict, b: dict, level: float = 0.95) -> tuple[float | None, list[float] | None, str | None]:
    """(gap, interval, kind) of a − b from per-seed values ``{seed: value}``: the paired interval
    (``paired_ci``, matched by seed) when both sides have the same seeds, else Welch (``welch_ci``);
    kind "paired" | "welch" (None when a side is empty)."""
    if not a or not b:
        return None, None, None
    if set(a) == set(b):
        seeds = sorted(a, key=str)
        return (*paired_ci([a[s] for s in seeds], [b[s] for s in seeds], level), "paired")
    return (*welch_ci(list(a.values()), list(b.values()), level), "welch")


VERDICTS = ("better", "tie", "worse", "undetermined")


def verdict(ci: list[float] | None) -> str:
    """The project's one verdict rule for a 95 % interval of a gap (new − old): better if it lies
    above 0, worse if below, tie if it covers 0, undetermined without one (None, or a NaN end)."""
    if ci is None or any(v is None or math.isnan(v) for v in ci):
        return "undetermined"
    return "better" if ci[0] > 0 else "worse" if ci[1] < 0 else "tie"


PAPER_WORDS = ("reproduced", "contradicted", "not significant")


def paper_wording(ci: list[float] | None, paper_direction: int) -> str:
    """README wording of a gap's interval against the paper's claimed direction (+1: the paper says the
    first side is better, −1: worse): "reproduced" when the interval excludes 0 in that direction,
    "contradicted" when it excludes 0 the other way, "not significant" otherwise (no interval included)."""
    if paper_direction not in (1, -1):
        raise ValueError(f"paper_direction={paper_direction!r} is invalid: use +1 or -1")
    v = verdict(ci)
    if v in ("tie", "undetermined"):
        return "not significant"
    return "reproduced" if (v == "better") == (paper_direction == 1) else "contradicted"


# ----------------------------------------------------------------------------- selection
def config_key(run: dict) -> tuple:
    return (run["loss"], tuple(sorted((run.get("params") or {}).items())), float(run.get("logit_bias") or 0.0), float(run["lr"]))


def configurations(runs: list[dict]) -> dict[tuple, list[dict]]:
    """Candidate configurations: main-role runs grouped by configuration, kept only where every expected
    seed (those any main run of the loss used) has exactly one ok run."""
    main = [r for r in runs if r.get("role", "main") == "main"]
    seeds = sorted({r.get("seed") for r in main}, key=str)
    groups = defaultdict(list)
    for run in main:
        groups[config_key(run)].append(run)
    return {k: g for k, g in groups.items()
            if all(r.get("status") == "ok" for r in g) and sorted((r.get("seed") for r in g), key=str) == seeds}


def _values(runs: list[dict], key: str) -> list[float] | None:
    vals = [r.get(key) for r in runs]
    return None if not vals or any(v is None for v in vals) else [float(v) for v in vals]


def choose(groups: dict[tuple, list[dict]], metric: str) -> list[dict] | None:
    """The seeds of the configuration with the highest mean ``metric`` (configurations lacking it on any
    seed are out); ties go to the first configuration met."""
    scored = [(mean_sem(v)[0], g) for g in groups.values() if (v := _values(g, metric)) is not None]
    return max(scored, key=lambda s: s[0])[1] if scored else None


def _mean(runs: list[dict] | None, key: str) -> float | None:
    vals = _values(runs or [], key)
    return None if vals is None else mean_sem(vals)[0]


def check_val_metrics(summary: dict, mode: str) -> None:
    """Selection "val" needs ``val_top1`` on every finished main run."""
    for run in summary["runs"]:
        if run.get("role", "main") == "main" and run.get("status") == "ok" and run.get("val_top1") is None:
            raise CompareError(f"experiment {summary.get('experiment') or mode!r} ({mode}) has no val_top1 for loss "
                               f"{run['loss']!r}: rerun it with --val-fraction > 0, or use --selection test (oracle)")


def loss_rows(summary: dict, mode: str, selection: str = "val") -> tuple[dict[str, dict], dict[str, dict]]:
    """Per loss: the report row and the per-seed values its gaps need (``{"": {seed: v}, "es_": {seed: v}}``)."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection {selection!r} is not one of {', '.join(SELECTIONS)}")
    if selection == "val":
        check_val_metrics(summary, mode)
    by_loss = defaultdict(list)
    for run in summary["runs"]:
        by_loss[run["loss"]].append(run)
    calibration = summary.get("calibration") or {}
    rows, values = {}, {}
    for loss, runs in by_loss.items():
        groups = configurations(runs)
        calib = float((calibration.get(loss) or {}).get("seconds") or 0.0)
        row = {"loss": loss, "label": label(loss, mode, calibration), "mode": mode, "selection": selection, "lr_protocol": summary.get("lr_protocol") or "unknown",
               "num_classes": summary.get("num_classes"), "candidates": len(groups)}
        values[loss] = {}
        for prefix, (pick, report) in SELECTIONS[selection].items():
            chosen = choose(groups, pick)
            ref = chosen[0] if chosen else {}
            top1 = _values(chosen or [], report) or []
            per_seed = {str(r.get("seed")): v for r, v in zip(chosen or [], top1)}
            values[loss][prefix] = per_seed
            mean, sem = mean_sem(top1)
            row.update({f"{prefix}params": ref.get("params") if chosen else None, f"{prefix}logit_bias": ref.get("logit_bias"),
                        f"{prefix}lr": ref.get("lr"), f"{prefix}seeds": len(chosen or []),
                        f"{prefix}top1_mean": mean, f"{prefix}top1_sem": sem, f"{prefix}top1_per_seed": per_seed})
            if prefix == "":
                row["top5_mean"], row["top5_sem"] = mean_sem(_values(chosen or [], "test_top5") or [])
                for key in ("val_top1", "val_top1_clean", "memorized"):
                    row[f"{key}_mean"] = _mean(chosen, key)
            else:
                row["es_best_epoch_mean"] = _mean(chosen, "best_epoch")
            row.update({f"{prefix}gap": None, f"{prefix}gap_ci95": None, f"{prefix}verdict": None,
                        f"{prefix}interval": None})
        row.update({
            "trials": len(runs), "pilot_trials": sum(r.get("role") == "pilot" for r in runs),
            "trial_epochs": sum(int(r.get("epochs") or 0) for r in runs),
            "worker_seconds": sum(float(r.get("compute_seconds") or 0.0) for r in runs) + calib,
            "calibration_seconds": calib, "gpu_seconds": sum(float(r.get("gpu_seconds") or 0.0) for r in runs),
            "wall_seconds": float(summary.get("wall_seconds") or 0.0), "cost_ratio": None, "epoch_ratio": None,
            "load_average": (summary.get("load_average") or {}).get("mean"),
        })
        rows[loss] = {k: row[k] for k in COLUMNS}
    return rows, values


def label(loss: str, mode: str, calibration: dict) -> str:
    """How a report names a loss: the analytic side by its computed form (MAE*: Eq. 4's bias, GCE+: calibrated
    parameters, or a rejected calibration's fallback label), the grid side in capitals (MAE)."""
    own = (calibration.get(loss) or {}).get("label") if mode == "analytic" else None
    return (own or loss).upper()


def load_summary(storage: st.Storage, name: str) -> dict:
    if not storage.exists(name):
        raise CompareError(f"experiment {name!r} not found at {storage.display(name)}")
    if not storage.exists(name, st.SUMMARY):
        raise CompareError(f"experiment {name!r} has no {st.SUMMARY} (unfinished?): finish it with --resume --name {name}")
    return storage.read_json(name, st.SUMMARY)


def compare(grid_summary: dict, analytic_summary: dict, *, selection: str = "val") -> list[dict]:
    """Rows for every loss present in both experiments: grid row, then analytic row with gaps, intervals
    (paired on shared seeds, else Welch: ``gap_interval``), verdicts and ratios."""
    (g, gv), (a, av) = loss_rows(grid_summary, "grid", selection), loss_rows(analytic_summary, "analytic", selection)
    common = [loss for loss in a if loss in g]
    if not common:
        raise CompareError(f"no loss in common: grid has {sorted(g)}, analytic has {sorted(a)}")
    rows = []
    for loss in common:
        gr, ar = g[loss], a[loss]
        for prefix in SELECTIONS[selection]:
            gap, ci, kind = gap_interval(av[loss][prefix], gv[loss][prefix])
            ar.update({f"{prefix}gap": gap, f"{prefix}gap_ci95": ci, f"{prefix}verdict": verdict(ci)})
            gr[f"{prefix}interval"] = ar[f"{prefix}interval"] = kind
        ar["cost_ratio"] = ar["worker_seconds"] / gr["worker_seconds"] if gr["worker_seconds"] else None
        ar["epoch_ratio"] = ar["trial_epochs"] / gr["trial_epochs"] if gr["trial_epochs"] else None
        rows += [gr, ar]
    return rows


# ----------------------------------------------------------------------------- report
def _fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{nd}f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2e}"
    if isinstance(v, dict):
        return ",".join(f"{k}={_fmt(x, max(nd, 3))}" for k, x in sorted(v.items())) or "-"
    return str(v)


def _pm(mean, sem) -> str:
    return "-" if mean is None else f"{mean:.2f}" + ("" if sem is None else f" ± {sem:.2f}")


def _gap(gap, ci, kind=None) -> str:
    return "-" if gap is None else f"{gap:+.2f}" + ("" if ci is None else f" [{ci[0]:+.2f}, {ci[1]:+.2f}]") + (
        f" {kind}" if kind else "")


def _es_cell(r: dict) -> str:
    """ES top-1, followed by the ES configuration where it is not the main one."""
    cell = _pm(r["es_top1_mean"], r["es_top1_sem"])
    same = (r["es_params"], r["es_logit_bias"], r["es_lr"]) == (r["params"], r["logit_bias"], r["lr"])
    return cell if same or r["es_top1_mean"] is None else f"{cell} ({point_label({k: r['es_' + k] for k in ('params', 'logit_bias', 'lr')})})"


def title(rows: list[dict], grid: str = "grid", analytic: str = "analytic") -> str:
    sel = rows[0]["selection"] if rows else "val"
    proto = {r["mode"]: r["lr_protocol"] for r in rows}
    return (f"compare: grid `{grid}` vs analytic `{analytic}`; selection: {SELECTION_LABEL[sel]}; "
            f"LR protocol: grid {proto.get('grid', 'unknown')}, analytic {proto.get('analytic', 'unknown')}")


def to_markdown(rows: list[dict]) -> str:
    """Accuracy table (chosen configuration, mean ± s.e.m., gap [95 % CI, paired or Welch], verdict;
    early-stopping view) and cost table."""
    oracle = "oracle " if rows and rows[0]["selection"] == "test" else ""
    head = ["loss", "mode", "params", "ε", "lr", "seeds", f"{oracle}top-1 (%)", f"{oracle}top-5 (%)", "val top-1 (%)",
            "gap [95% CI]", "verdict", f"ES {oracle}top-1 (%)", "ES best epoch", "ES gap [95% CI]", "ES verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r.get("label") or r["loss"], r["mode"], _fmt(r["params"]), _fmt(r["logit_bias"]), _fmt(r["lr"], 4), str(r["seeds"]),
            _pm(r["top1_mean"], r["top1_sem"]), _pm(r["top5_mean"], r["top5_sem"]), _pm(r["val_top1_mean"], None),
            _gap(r["gap"], r["gap_ci95"], r["interval"] if r["mode"] == "analytic" else None), r["verdict"] or "-",
            _es_cell(r), _fmt(r["es_best_epoch_mean"], 1),
            _gap(r["es_gap"], r["es_gap_ci95"], r["es_interval"] if r["mode"] == "analytic" else None),
            r["es_verdict"] or "-",
        ]) + " |")
    head = ["loss", "mode", "trials", "pilots", "trial-epochs", "epoch ratio", "worker-s", "load avg", "GPU-s",
            "cost ratio"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r.get("label") or r["loss"], r["mode"], str(r["trials"]), str(r["pilot_trials"]), str(r["trial_epochs"]),
            _fmt(r["epoch_ratio"], 3), _fmt(r["worker_seconds"], 1), _fmt(r.get("load_average"), 1),
            _fmt(r["gpu_seconds"], 1), _fmt(r["cost_ratio"], 3),
        ]) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    """One line per row; params as k=v, each interval as ``<key>_low``/``<key>_high`` columns."""
    fields = [c for k in COLUMNS for c in ((f"{k}_low", f"{k}_high") if k.endswith("ci95") else (k,))]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        out = {}
        for k in COLUMNS:
            if k.endswith("ci95"):
                out[f"{k}_low"], out[f"{k}_high"] = r[k] if r[k] else (None, None)
            else:
                out[k] = _fmt(r[k], 6) if k.endswith(("params", "per_seed")) else r[k]
        writer.writerow(out)
    return buf.getvalue()


def point_label(r: dict) -> str:
    """A plot annotation: parameters and ε to 3 significant digits, then lr."""
    parts = [f"{k}={v:.3g}" for k, v in sorted((r["params"] or {}).items())]
    if r["logit_bias"]:
        parts.append(f"ε={r['logit_bias']:.3g}")
    return ", ".join(parts + [f"lr={r['lr']:.3g}"])


def figure(rows: list[dict], *, num_classes: int | None = None):
    """Test top-1 of the chosen configurations against trial-epochs (load-independent), error bars = s.e.m., one colour per
    loss, ● grid / ★ analytic, each point annotated; dashed chance line at 100/K when K (``num_classes``,
    else the rows' own from the summaries) is known. Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_classes = num_classes or next((r["num_classes"] for r in rows if r.get("num_classes")), None)
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    markers = {"grid": "o", "analytic": "*"}
    colors = {loss: f"C{i}" for i, loss in enumerate(sorted({r["loss"] for r in rows}))}
    for r in rows:
        if r["top1_mean"] is None:
            continue
        x = max(r["trial_epochs"], 1)
        ax.errorbar(x, r["top1_mean"], yerr=r["top1_sem"] or 0.0, fmt=markers[r["mode"]], color=colors[r["loss"]],
                    markersize=11 if r["mode"] == "analytic" else 7, capsize=3,
                    label=f"{r.get('label') or r['loss']} ({r['mode']})")
        ax.annotate(point_label(r), (x, r["top1_mean"]), textcoords="offset points", xytext=(5, 4), fontsize=6,
                    color=colors[r["loss"]])
    if num_classes:
        ax.axhline(100.0 / num_classes, color="gray", linestyle="--", linewidth=1, label=f"chance (100/{num_classes})")
    sel = rows[0]["selection"] if rows else "val"
    ax.set_xscale("log")
    ax.margins(x=0.15)  # room for the right-most annotation
    ax.set_xlabel("compute (trial-epochs, all trials of the mode; worker-seconds and load: compare.md)")
    ax.set_ylabel("test top-1 (%) of the chosen configuration")
    ax.set_title(f"analytic (★) vs grid (●), selection: {SELECTION_LABEL[sel]}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot(rows: list[dict], path: str, *, num_classes: int | None = None) -> str:
    """:func:`figure` saved as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = figure(rows, num_classes=num_classes)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(storage: st.Storage, name: str, rows: list[dict], *, grid: str, analytic: str,
                 selection: str | None = None) -> dict:
    """compare.md/.csv/.json/.png into ``<storage>/<name>/``; returns their locations. ``selection``
    defaults to the rows' own (a different one is an error: the rows were chosen under theirs)."""
    import os
    import tempfile

    selection = selection or (rows[0]["selection"] if rows else "val")
    if selection not in SELECTIONS:
        raise ValueError(f"selection {selection!r} is not one of {', '.join(SELECTIONS)}")
    if any(r["selection"] != selection for r in rows):
        raise ValueError(f"selection {selection!r} differs from the rows' {rows[0]['selection']!r}")
    md = f"# {title(rows, grid, analytic)}\n\n" + to_markdown(rows)
    storage.write_bytes(md.encode(), name, "compare.md")
    storage.write_bytes(to_csv(rows).encode(), name, "compare.csv")
    storage.write_json({"grid": grid, "analytic": analytic, "selection": selection, "rows": rows}, name, "compare.json")
    with tempfile.TemporaryDirectory() as d:
        png = plot(rows, os.path.join(d, "compare.png"))
        storage.upload_file(png, name, "compare.png")
    return {k: storage.display(name, f"compare.{k}") for k in ("md", "csv", "png", "json")}
