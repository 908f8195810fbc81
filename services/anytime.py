"""Anytime curves: analytic mode against the searchers a practitioner would run instead, at equal compute.

A finished grid holds every configuration's per-epoch noisy-validation and test curves (Tune's
``result.json`` in each trial folder), so a searcher can be *replayed* on it as a tabular benchmark, the
method of HPOBench / LCBench / Syne Tune's simulator: no training, every replay repeated over many search
seeds. Per loss (as compare's rows are), on that loss's grid:

  * ``grid_order`` — the grid's configurations in a random order;
  * ``random``     — random search: each draw uniform over the ``--search optuna`` space (log-uniform lr,
    uniform loss parameters over the grid's span), snapped to the nearest configuration not drawn yet;
  * ``asha``       — random search with Tune's ASHA (rungs r_k = grace · η^k; a trial reaching a rung stops
    when its value is below the (1 − 1/η) quantile of the values recorded there so far);
  * ``tpe``        — Optuna's TPE sampler with ``--search optuna``'s settings, each proposal snapped to the
    nearest configuration not evaluated yet (the study is told the configuration actually evaluated);
  * ``optuna``     — TPE + ASHA together: the replay of ``--search optuna`` itself (stopped trials PRUNED).

A *configuration* is compare's: hyperparameters with all their seeds. Evaluating one for e epochs costs
seeds × e trial-epochs; its score is compare's selection metric (``selection="val"``: the seed mean of the
final-epoch noisy-validation top-1), its rung values the seed mean of that metric at the rung's epoch.
The *incumbent* after every spend is the fully trained configuration with the best score so far (ties go
to the one compare would pick: the earlier in compare's candidate order), and the curve shows its test
top-1 (the reported metric): at each budget b the mean over search seeds and a 95 % band (the 2.5th and
97.5th percentiles of the search seeds' values: where a single search run lands). Budget: cumulative
trial-epochs (``budget``), and worker-seconds from the stored per-epoch times (``seconds``).

Replays run one trial at a time (ASHA's decisions in the order trials reach their rungs). Once every
configuration has been drawn, the ASHA searchers resume their stopped trials (best last rung value first)
until the whole grid is trained, so that every method ends at the grid's budget with the grid's own pick;
``search_end`` is the mean budget at which the searcher's own schedule ended.

Analytic mode is a point: its trial-epochs (LR search and pilots included, compare's ``trial_epochs``),
its selected configuration's test top-1 with a 95 % t interval (mean ± t_{0.975, n−1} · s.e.m.).

What one search run needs (``services.anytime_stats``, per method, from each search seed's own incumbent):
``budget_to_match[method]`` — per seed the first budget at which its incumbent reaches analytic's mean minus
a tolerance (analytic's s.e.m., else 0.5 points: ``analytic.tolerance`` / ``tolerance_rule``), with
``median``, ``q25``, ``q75`` (never-matching seeds counted as +infinity: None = "never"), ``matched`` (the
fraction of seeds that ever match), ``per_seed`` and ``ratio_median`` (÷ analytic's budget); and
``regret_at_analytic_budget[method]`` — analytic's mean minus the incumbent's test top-1 once the seed has
spent analytic's budget, ``mean`` and 95 % band ``lo``, ``hi`` over seeds (``no_incumbent``: seeds with no
finished configuration by then, left out). These are what the terminal, compare.md and the figure report.

Kept for compatibility, the *mean-curve crossing*: ``matched_at[method]``, the first budget at which the mean
over search seeds reaches analytic's mean (None if never) — when analytic's configuration is the grid's best,
that is when the *slowest* seeds find it, not what a typical search needs; ``matched_band``: the budgets at
which the band's upper / lower edge first reach it; ``matched_ratio``: ``matched_at`` ÷ analytic's budget.

Files, in the compare folder: ``anytime.json`` (top level ``axis``, settings and ``losses``; per loss the
schema ``{"axis", "methods": {m: {"budget", "top1_mean", "top1_lo", "top1_hi", ...}}, "analytic": {"budget",
"top1_mean", "top1_ci95", "tolerance", "tolerance_rule"}, "budget_to_match": {m: {...}},
"regret_at_analytic_budget": {m: {...}}, "matched_at": {m: budget | None}, ...}``; floats to 4 decimals) and
``anytime.png``; compare.md gains an "anytime" section.

    .venv/bin/python -m services.anytime --storage-path S --grid G --analytic A [--name COMPARE_FOLDER]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections import defaultdict

import numpy as np

from services import anytime_stats as seedstats
from services import compare as cmp
from services import storage as st
from services.replay import METHODS, Asha, Config, Table, TPEProposer, Trace, _Space, replay  # noqa: F401 (re-exported)
from services.spec import split_hparams

SEARCH_SEEDS = 20
BAND = (2.5, 97.5)            # percentiles over search seeds
RESULT_FILE = "result.json"   # Tune's per-report log in every trial folder (one JSON object per epoch)


class AnytimeError(ValueError):
    """An experiment the replay cannot use (not a complete grid, no per-epoch results)."""


def run_key(row: dict) -> tuple:
    """(compare's configuration key, seed) of a summary row or of a Tune result's flat ``config``."""
    return cmp.config_key(row), int(row.get("seed") or 0)


def _result_row(config: dict) -> dict:
    main, params = split_hparams(config)
    return {"loss": main["loss"], "params": params, "logit_bias": main.get("logit_bias", 0.0), "lr": main["lr"],
            "seed": main.get("seed", 0)}


def epoch_results(storage: st.Storage, name: str, summary: dict | None = None) -> dict[tuple, dict[int, dict]]:
    """{run key: {epoch: reported metrics}} from every trial folder's ``result.json`` of experiment ``name``.
    A resumed trial's epochs are spread over its folders and a retried one repeats some: merged by epoch
    (the later report wins); a line a killed driver cut short is skipped. Epochs missing from every
    ``result.json`` come from the trials' checkpoints — read only when ``summary`` (the experiment's) has a
    finished trial with fewer reported epochs than it ran, or when no summary is given."""
    from pyarrow import fs as pafs

    out: dict[tuple, dict[int, dict]] = defaultdict(dict)
    try:
        entries = storage.fs.get_file_info(pafs.FileSelector(storage.path(name)))
    except (FileNotFoundError, OSError):
        return {}
    for e in sorted(entries, key=lambda e: e.mtime_ns or 0):
        if e.type != pafs.FileType.Directory or not storage.exists(name, e.base_name, RESULT_FILE):
            continue
        with storage.fs.open_input_stream(storage.path(name, e.base_name, RESULT_FILE)) as f:
            text = f.read().decode(errors="replace")
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            config = rec.get("config") or {}
            if "loss" in config and "lr" in config and rec.get("epoch") is not None:
                out[run_key(_result_row(config))][int(rec["epoch"])] = rec
    if summary is None or any(r.get("status") == "ok" and len(out.get(run_key(r), ())) < int(r["epochs"])
                              for r in summary["runs"]):   # read checkpoints only when an epoch is missing
        _fill_from_checkpoints(storage, name, out)
    return dict(out)


def _fill_from_checkpoints(storage: st.Storage, name: str, out: dict) -> None:
    """Epochs a trial finished but whose report never reached ``result.json`` (a driver killed between the
    worker's report and Tune's logging; ``--resume`` keeps such a trial from its checkpoint and never reruns it),
    taken from the furthest checkpoint's engine history. Compute is known at the checkpoint's own epoch (its
    elapsed time); an earlier filled epoch gets the same pro rata by epoch."""
    from services import salvage

    for hit in salvage.scan(storage, name).values():
        content, spec = hit["content"], hit["content"]["spec"]
        if "state" not in content or spec.get("role", "main") != "main":
            continue
        state = content["state"]
        have = out[run_key(_result_row(spec["hparams"]))]
        last = int(state["epoch"])
        workers = float(spec.get("resources", {}).get("num_workers") or 1)
        elapsed = float(state.get("robustloss_elapsed") or 0.0)
        for m in state.get("history") or []:
            e = int(m["epoch"])
            if e <= last and e not in have:
                t = elapsed * e / last
                have[e] = {**m, "trial_seconds": t, "worker_seconds": t * workers, "from_checkpoint": True}


def _mean(values: list) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


def _cumulative_seconds(row: dict, history: dict[int, dict], epochs: int) -> list[float]:
    """Worker-seconds spent by the end of each epoch: the reported elapsed worker-seconds plus the driver's
    start-up the summary row adds (so the last equals the row's ``compute_seconds``)."""
    workers = float(row.get("num_workers") or 1)
    startup = float(row.get("startup_seconds") or 0.0) * workers
    out = []
    for e in range(1, epochs + 1):
        m = history[e]
        ws = m.get("worker_seconds")
        out.append(startup + float(ws if ws is not None else float(m.get("trial_seconds") or 0.0) * workers))
    return out


def build_tables(summary: dict, histories: dict[tuple, dict[int, dict]], selection: str = "val") -> dict[str, Table]:
    """Per loss, the grid's configurations as a :class:`Table`. Raises AnytimeError, naming the reason,
    unless the grid is complete: a grid search whose every main trial finished ok with every seed, each
    with its per-epoch results."""
    if (summary.get("search") or "grid") != "grid":
        raise AnytimeError(f"experiment {summary.get('experiment')!r} is a --search {summary['search']} run, not a grid")
    pick_metric, report_metric = cmp.SELECTIONS[selection][""]
    by_loss = defaultdict(list)
    for run in summary["runs"]:
        if run.get("role", "main") == "main":
            by_loss[run["loss"]].append(run)
    tables = {}
    for loss, runs in by_loss.items():
        bad = [r for r in runs if r.get("status") != "ok"]
        if bad:
            raise AnytimeError(f"grid {summary.get('experiment')!r} is not complete: {len(bad)} {loss} trial(s) "
                               f"{bad[0].get('status')} (finish it with --resume)")
        groups = cmp.configurations(runs)
        if sum(len(g) for g in groups.values()) != len(runs):
            raise AnytimeError(f"grid {summary.get('experiment')!r} is not complete: some {loss} configurations "
                               "lack a seed")
        epochs = {int(r.get("epochs") or 0) for r in runs}
        if len(epochs) != 1:
            raise AnytimeError(f"grid {summary.get('experiment')!r}: {loss} trials ran {sorted(epochs)} epochs, "
                               "not one number")
        n_epochs = epochs.pop()
        configs = []
        for index, (key, group) in enumerate(groups.items()):
            curves, seconds = [], []
            for r in group:
                h = histories.get(run_key(r), {})
                missing = [e for e in range(1, n_epochs + 1) if e not in h]
                if missing:
                    raise AnytimeError(f"grid {summary.get('experiment')!r}: no per-epoch results ({RESULT_FILE}) for "
                                       f"{loss} {cmp._fmt(r.get('params'))} lr={r['lr']:g} seed {r.get('seed')} "
                                       f"epoch {missing[0]}")
                curves.append([h[e].get(pick_metric) for e in range(1, n_epochs + 1)])
                cum = _cumulative_seconds(r, h, n_epochs)
                seconds.append(np.diff([0.0] + cum))
            score = _mean([r.get(pick_metric) for r in group])
            top1 = _mean([r.get(report_metric) for r in group])
            if score is None or top1 is None:
                raise AnytimeError(f"grid {summary.get('experiment')!r}: {loss} trials without {pick_metric}")
            curve = tuple(_mean([c[e] for c in curves]) for e in range(n_epochs))
            ref = group[0]
            point = {"lr": float(ref["lr"]), "logit_bias": float(ref.get("logit_bias") or 0.0), **(ref.get("params") or {})}
            configs.append(Config(index=index, point=point, score=score, top1=top1, curve=curve,
                                  epoch_seconds=tuple(float(s) for s in np.sum(seconds, axis=0))))
        chosen = cmp.choose(groups, pick_metric)
        pick = next(i for i, g in enumerate(groups.values()) if g is chosen)
        tables[loss] = Table(loss=loss, configs=configs, epochs=n_epochs, seeds=len(next(iter(groups.values()))),
                             pick=pick)
    return tables


# ----------------------------------------------------------------------------- curves
def band(traces: list[Trace], table: Table, axis: str = "epochs") -> dict:
    """Incumbent test top-1 over search seeds at every budget where some run spent (``axis`` "epochs":
    trial-epochs, "seconds": worker-seconds), from the first budget at which every run has an incumbent:
    mean, 2.5th / 97.5th percentiles, and the mean incumbent score."""
    xs = np.unique(np.concatenate([np.asarray(getattr(t, axis), dtype=float) for t in traces]))
    top1 = np.array([c.top1 for c in table.configs] + [np.nan])
    score = np.array([c.score for c in table.configs] + [np.nan])
    inc = []
    for t in traces:
        pos = np.searchsorted(np.asarray(getattr(t, axis), dtype=float), xs, side="right") - 1
        held = np.asarray(t.incumbent)[np.clip(pos, 0, None)]
        inc.append(np.where(pos < 0, -1, held))
    inc = np.array(inc)
    keep = np.all(inc >= 0, axis=0)
    inc, xs = inc[:, keep], xs[keep]
    vals = top1[inc]
    lo, hi = np.percentile(vals, BAND, axis=0) if vals.size else (np.array([]), np.array([]))
    as_int = axis == "epochs"
    return {"budget": [int(x) if as_int else float(x) for x in xs], "top1_mean": vals.mean(axis=0).tolist(),
            "top1_lo": lo.tolist(), "top1_hi": hi.tolist(), "val_mean": score[inc].mean(axis=0).tolist()}


def first_reaching(budget: list, values: list, target: float) -> float | None:
    """The first budget whose value is at least ``target`` (None if none)."""
    return next((b for b, v in zip(budget, values) if v >= target - 1e-9), None)


def t_interval(mean: float | None, sem: float | None, n: int) -> list[float] | None:
    """mean ± t_{0.975, n−1} · s.e.m.; None without an s.e.m."""
    if mean is None or sem is None or n < 2:
        return None
    from scipy import stats

    half = float(stats.t.ppf(0.975, n - 1)) * sem
    return [mean - half, mean + half]


def loss_curves(table: Table, grid_row: dict, analytic_row: dict | None, *, seeds: int = SEARCH_SEEDS,
                methods: list[str] | None = None, asha: Asha = Asha()) -> dict:
    """One loss's part of ``anytime.json``: every method's curves (trial-epochs and worker-seconds), the
    analytic point with its tolerance, the grid's pick, the per-seed ``budget_to_match`` and
    ``regret_at_analytic_budget``, and the mean-curve crossing ``matched_at`` (compatibility)."""
    out = {"axis": "trial_epochs", "methods": {}, "matched_at": {}, "matched_band": {}, "matched_ratio": {},
           "budget_to_match": {}, "regret_at_analytic_budget": {}}
    a = None
    if analytic_row is not None and analytic_row.get("top1_mean") is not None:
        tol, rule = seedstats.tolerance(analytic_row)
        a = {"budget": int(analytic_row["trial_epochs"]), "top1_mean": analytic_row["top1_mean"],
             "top1_ci95": t_interval(analytic_row["top1_mean"], analytic_row.get("top1_sem"), int(analytic_row["seeds"])),
             "worker_seconds": analytic_row.get("worker_seconds"), "seeds": analytic_row.get("seeds"),
             "tolerance": tol, "tolerance_rule": rule}
    out["analytic"] = a
    top1 = [c.top1 for c in table.configs]
    pick = table.configs[table.pick]
    out["grid"] = {"budget": table.budget, "top1_mean": pick.top1, "score": pick.score, "point": pick.point,
                   "trial_epochs": grid_row.get("trial_epochs"), "worker_seconds": grid_row.get("worker_seconds"),
                   "configurations": len(table.configs), "seeds": table.seeds, "epochs": table.epochs}
    for method in methods or list(METHODS):
        traces = [replay(table, method, s, asha) for s in range(seeds)]
        curve = band(traces, table, "epochs")
        curve["label"] = METHODS[method].label
        curve["search_end"] = float(np.mean([t.search_end for t in traces]))
        curve["seconds"] = {k: v for k, v in band(traces, table, "seconds").items() if k != "val_mean"}
        out["methods"][method] = curve
        out["budget_to_match"][method], out["regret_at_analytic_budget"][method] = seedstats.per_seed_stats(
            traces, top1, a)
        if a is not None:
            at = first_reaching(curve["budget"], curve["top1_mean"], a["top1_mean"])
            out["matched_at"][method] = at
            out["matched_band"][method] = [first_reaching(curve["budget"], curve[k], a["top1_mean"])
                                           for k in ("top1_hi", "top1_lo")]
            out["matched_ratio"][method] = None if at is None or not a["budget"] else at / a["budget"]
        else:
            out["matched_at"][method] = out["matched_ratio"][method] = None
            out["matched_band"][method] = [None, None]
    return out


def anytime(grid_summary: dict, histories: dict, rows: list[dict], *, selection: str = "val",
            seeds: int = SEARCH_SEEDS, methods: list[str] | None = None, asha: Asha = Asha()) -> dict:
    """The whole ``anytime.json`` payload: per loss of compare's ``rows`` present in the grid."""
    tables = build_tables(grid_summary, histories, selection)
    by = {(r["loss"], r["mode"]): r for r in rows}
    losses = {}
    for loss, table in tables.items():
        if (loss, "grid") in by:
            losses[loss] = loss_curves(table, by[(loss, "grid")], by.get((loss, "analytic")), seeds=seeds,
                                       methods=methods, asha=asha)
    if not losses:
        raise AnytimeError("no loss of the grid is in compare's rows")
    epochs = next(iter(tables.values())).epochs
    eta, grace = asha.resolved(epochs)
    return {"axis": "trial_epochs", "second_axis": "worker_seconds", "selection": selection, "search_seeds": seeds,
            "band_percentiles": list(BAND), "experiment": grid_summary.get("experiment"),
            "asha": {"reduction_factor": eta, "grace_period": grace, "rungs": list(asha.rungs(epochs))},
            "losses": losses}


# ----------------------------------------------------------------------------- figure and files
def figure(payload: dict):
    """Per loss (rows): incumbent test top-1 against trial-epochs and against worker-seconds (log axes),
    each method's mean with its 95 % band, analytic as a point with its interval, the full grid's pick as a
    dashed line; on the trial-epochs panel the match level (analytic's mean − tolerance, dotted) with each
    method's median budget to match (marker) and interquartile range (bar) over search seeds, and "k/n seeds
    match" in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = payload["losses"]
    fig, axes = plt.subplots(len(losses), 2, figsize=(11, 3.9 * len(losses)), squeeze=False)
    for row, (loss, d) in zip(axes, losses.items()):
        for ax, axis in zip(row, ("budget", "seconds")):
            for i, (method, c) in enumerate(d["methods"].items()):
                cur = c if axis == "budget" else c["seconds"]
                b = (d.get("budget_to_match") or {}).get(method)
                label = c["label"] + ("" if b is None else f" ({b['matched_seeds']}/{b['seeds']} seeds match)")
                ax.step(cur["budget"], cur["top1_mean"], where="post", color=f"C{i}", label=label)
                ax.fill_between(cur["budget"], cur["top1_lo"], cur["top1_hi"], step="post", color=f"C{i}", alpha=0.12)
            ax.axhline(d["grid"]["top1_mean"], color="gray", linestyle="--", linewidth=1, label="full grid's pick")
            a = d["analytic"]
            x = None if a is None else (a["budget"] if axis == "budget" else a.get("worker_seconds"))
            if a is not None and x:
                ci = a["top1_ci95"]
                yerr = None if ci is None else [[a["top1_mean"] - ci[0]], [ci[1] - a["top1_mean"]]]
                ax.errorbar([x], [a["top1_mean"]], yerr=yerr, fmt="*", color="k", markersize=13, capsize=4,
                            label="analytic (95% CI)", zorder=5)
            if a is not None and axis == "budget":
                seedstats.draw_matches(ax, d)
            ax.set_xscale("log")
            ax.set_xlabel("trial-epochs" if axis == "budget" else "worker-seconds")
            ax.set_ylabel(f"{loss}: test top-1 (%) of incumbent")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    sel = cmp.SELECTION_LABEL.get(payload.get("selection", "val"), "")
    fig.suptitle(f"anytime: incumbent chosen by {sel}; mean and 95% band over {payload['search_seeds']} search seeds\n"
                 "on the match level (analytic − tolerance): median budget to match per search seed, bar = IQR",
                 fontsize=9)
    fig.tight_layout()
    return fig


def _rounded(value, digits: int = 4):
    """``value`` with every float rounded to ``digits`` decimals (with flat number lists: keeps anytime.json
    small)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


def write(storage: st.Storage, name: str, payload: dict) -> dict:
    """``anytime.json`` and ``anytime.png`` into ``<storage>/<name>/``; returns their locations."""
    import matplotlib.pyplot as plt

    text = json.dumps(_rounded(payload), indent=1, sort_keys=True,
                      default=lambda o: o.item() if hasattr(o, "item") else o.tolist())   # numpy scalars, arrays
    text = re.sub(r"\[\s*([^\[\]{}\"]*?)\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)  # flat lists
    storage.write_bytes((text + "\n").encode(), name, "anytime.json")
    fig = figure(payload)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "anytime.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        storage.upload_file(path, name, "anytime.png")
    return {"anytime_json": storage.display(name, "anytime.json"), "anytime_png": storage.display(name, "anytime.png")}


def write_compare_report(storage: st.Storage, name: str, rows: list[dict], *, grid: str, analytic: str,
                         selection: str | None = None) -> dict:
    """What ``compare`` writes: its report (``compare.write_report``) and, when ``grid`` is a complete grid in
    ``storage``, the anytime files beside it. Returns every file's location."""
    files = cmp.write_report(storage, name, rows, grid=grid, analytic=analytic, selection=selection)
    selection = selection or (rows[0]["selection"] if rows else "val")
    return {**files, **write_when_complete(storage, name, rows, grid=grid, selection=selection)}


def write_when_complete(storage: st.Storage, name: str, rows: list[dict], *, grid: str, selection: str = "val",
                        **options) -> dict:
    """compare's last step: the anytime files when ``grid`` is a complete grid in ``storage``, else a one-line
    note saying why not (nothing when there is no such experiment) and no files."""
    if not storage.exists(grid, st.SUMMARY):
        return {}
    summary = storage.read_json(grid, st.SUMMARY)
    try:
        payload = anytime(summary, epoch_results(storage, grid, summary), rows, selection=selection, **options)
    except AnytimeError as exc:
        print(f"anytime: not written ({exc})", flush=True)
        return {}
    files = write(storage, name, payload)
    lines = seedstats.report_lines(_rounded(payload))   # the numbers as anytime.json holds them
    if lines:
        print("\n".join(lines), flush=True)
        seedstats.append_to_compare_md(storage, name, lines)
    return files


# ----------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """Replay on stored experiments and write the anytime files (no training, no Ray)."""
    p = argparse.ArgumentParser(prog="python -m services.anytime", description=main.__doc__)
    p.add_argument("--storage-path", help="the experiments' storage (default: $ROBUSTLOSS_STORAGE, else ~/robustloss_results)")
    p.add_argument("--grid", required=True, help="the grid experiment's name")
    p.add_argument("--analytic", required=True, help="the analytic experiment's name")
    p.add_argument("--name", help="folder for the files (default: compare-<grid>-vs-<analytic>, compare's)")
    p.add_argument("--selection", choices=list(cmp.SELECTIONS), default="val")
    p.add_argument("--search-seeds", type=int, default=SEARCH_SEEDS)
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--reduction-factor", type=float, help="ASHA's η (default: --search optuna's, 3)")
    p.add_argument("--grace-period", type=int, help="ASHA's first rung in epochs (default: --search optuna's, epochs // 4)")
    a = p.parse_args(argv)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    problems = [f"--methods {m!r} is not one of {', '.join(METHODS)}" for m in methods if m not in METHODS]
    if a.search_seeds < 1:
        problems.append(f"--search-seeds {a.search_seeds} must be >= 1")
    if a.reduction_factor is not None and a.reduction_factor <= 1:
        problems.append(f"--reduction-factor {a.reduction_factor:g} must be > 1")
    if a.grace_period is not None and a.grace_period < 1:
        problems.append(f"--grace-period {a.grace_period} must be >= 1")
    try:
        if problems:
            raise AnytimeError(problems[0])
        storage = st.resolve_storage(st.resolve_user_path(a.storage_path))
        grid, analytic = cmp.load_summary(storage, a.grid), cmp.load_summary(storage, a.analytic)
        rows = cmp.compare(grid, analytic, selection=a.selection)
        payload = anytime(grid, epoch_results(storage, a.grid, grid), rows, selection=a.selection, seeds=a.search_seeds,
                          methods=methods, asha=Asha(a.reduction_factor, a.grace_period))
    except (AnytimeError, cmp.CompareError, st.StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = a.name or f"compare-{a.grid}-vs-{a.analytic}"
    files = write(storage, name, payload)
    lines = seedstats.report_lines(_rounded(payload))
    print("\n".join(lines or [f"{loss}: no analytic point" for loss in payload["losses"]]))
    print("wrote " + ", ".join(files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
