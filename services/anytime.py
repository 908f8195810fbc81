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
``matched_at[method]``: the first budget at which the method's mean reaches analytic's mean (None if
never); ``matched_band``: the budgets at which its band's upper / lower edge first reach it.

Files, in the compare folder: ``anytime.json`` (top level ``axis``, settings and ``losses``; per loss the
schema ``{"axis", "methods": {m: {"budget", "top1_mean", "top1_lo", "top1_hi", ...}}, "analytic": {"budget",
"top1_mean", "top1_ci95"}, "matched_at": {m: budget | None}}``) and ``anytime.png``.

    .venv/bin/python -m services.anytime --storage-path S --grid G --analytic A [--name COMPARE_FOLDER]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from services import compare as cmp
from services import storage as st
from services.spec import split_hparams

SEARCH_SEEDS = 20
BAND = (2.5, 97.5)            # percentiles over search seeds
RESULT_FILE = "result.json"   # Tune's per-report log in every trial folder (one JSON object per epoch)


class AnytimeError(ValueError):
    """An experiment the replay cannot use (not a complete grid, no per-epoch results)."""


# ----------------------------------------------------------------------------- the tabular benchmark
@dataclass(frozen=True)
class Config:
    """One configuration of one loss's grid, with all its seeds."""

    index: int                   # position in compare's candidate order (its tie-break)
    point: dict                  # lr, logit_bias and the loss's own parameters
    score: float                 # selection metric: seed mean of the final epoch's value (compare's rule)
    top1: float                  # reported metric (test top-1): seed mean of the final epoch's value
    curve: tuple                 # per epoch (from 1): seed mean of the selection metric, None where not evaluated
    epoch_seconds: tuple         # per epoch: worker-seconds summed over the seeds (start-up in the first)


@dataclass
class Table:
    """One loss's complete grid: what a replay reads."""

    loss: str
    configs: list[Config]
    epochs: int
    seeds: int
    pick: int                    # compare's choice (index), the incumbent every replay must end with

    @property
    def budget(self) -> int:
        """Trial-epochs of the whole grid."""
        return len(self.configs) * self.seeds * self.epochs

    def dims(self) -> list[str]:
        """The hyperparameters that vary over the loss's configurations."""
        names = sorted({k for c in self.configs for k in c.point})
        return [k for k in names if len({c.point.get(k) for c in self.configs}) > 1]


def run_key(row: dict) -> tuple:
    """(compare's configuration key, seed) of a summary row or of a Tune result's flat ``config``."""
    return cmp.config_key(row), int(row.get("seed") or 0)


def _result_row(config: dict) -> dict:
    main, params = split_hparams(config)
    return {"loss": main["loss"], "params": params, "logit_bias": main.get("logit_bias", 0.0), "lr": main["lr"],
            "seed": main.get("seed", 0)}


def epoch_results(storage: st.Storage, name: str) -> dict[tuple, dict[int, dict]]:
    """{run key: {epoch: reported metrics}} from every trial folder's ``result.json`` of experiment ``name``.
    A resumed trial's epochs are spread over its folders and a retried one repeats some: merged by epoch
    (the later report wins); a line a killed driver cut short is skipped."""
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
    return dict(out)


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


# ----------------------------------------------------------------------------- searchers
class _Space:
    """The ``--search optuna`` space over one loss's grid (services.sweeps.OptunaSpace: log-uniform lr over
    the grid's span, each numeric parameter uniform over its span, others categorical) and the snap of a
    proposed point to the nearest configuration: distance in coordinates scaled to [0, 1] (lr in log)."""

    def __init__(self, table: Table):
        self.table = table
        self.names = table.dims()
        self.numeric = [n for n in self.names if all(isinstance(c.point.get(n), (int, float)) and
                                                     not isinstance(c.point.get(n), bool) for c in table.configs)]
        self.categorical = [n for n in self.names if n not in self.numeric]
        self.low, self.high = {}, {}
        for n in self.numeric:
            vals = [self._raw(n, c.point[n]) for c in table.configs]
            self.low[n], self.high[n] = min(vals), max(vals)
        self.coords = np.array([[self.scale(n, c.point[n]) for n in self.numeric] for c in table.configs]).reshape(
            len(table.configs), len(self.numeric))

    @staticmethod
    def _raw(name: str, v) -> float:
        return math.log(float(v)) if name == "lr" else float(v)

    def scale(self, name: str, v) -> float:
        return (self._raw(name, v) - self.low[name]) / (self.high[name] - self.low[name])

    def distributions(self) -> dict:
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        out = {}
        for n in self.names:
            vals = [c.point[n] for c in self.table.configs]
            if n in self.numeric:
                out[n] = FloatDistribution(float(min(vals)), float(max(vals)), log=(n == "lr"))
            else:
                out[n] = CategoricalDistribution(sorted(set(vals), key=repr))
        return out

    def nearest(self, proposal: dict, pool: list[int]) -> int:
        """The configuration of ``pool`` (sorted indices) nearest to ``proposal``; ties to the lowest index."""
        x = np.array([self.scale(n, proposal[n]) for n in self.numeric])
        d = np.sum((self.coords[pool] - x) ** 2, axis=1) if self.numeric else np.zeros(len(pool))
        for n in self.categorical:
            d = d + np.array([0.0 if self.table.configs[i].point[n] == proposal[n] else 1.0 for i in pool])
        return pool[int(np.argmin(d))]

    def params(self, index: int) -> dict:
        p = self.table.configs[index].point
        return {n: (float(p[n]) if n in self.numeric else p[n]) for n in self.names}


class OrderProposer:
    """The grid's configurations in a random permutation (seeded)."""

    def __init__(self, table: Table, seed: int):
        self.order = list(np.random.default_rng(seed).permutation(len(table.configs)))

    def propose(self, pool: list[int]) -> int:
        while self.order[0] not in pool:
            self.order.pop(0)
        return int(self.order.pop(0))

    def observe(self, index: int, value: float | None, intermediate: dict[int, float]) -> None:
        pass


class RandomProposer:
    """Random search over the ``--search optuna`` space (what Optuna's RandomSampler draws), snapped."""

    def __init__(self, table: Table, seed: int):
        self.space, self.rng = _Space(table), np.random.default_rng(seed)
        self.choices = {n: sorted({repr(c.point[n]): c.point[n] for c in table.configs}.items())
                        for n in self.space.categorical}

    def propose(self, pool: list[int]) -> int:
        point = {}
        for n in self.space.numeric:
            raw = self.rng.uniform(self.space.low[n], self.space.high[n])
            point[n] = math.exp(raw) if n == "lr" else raw
        for n in self.space.categorical:
            point[n] = self.choices[n][int(self.rng.integers(len(self.choices[n])))][1]
        return self.space.nearest(point, pool)

    def observe(self, index: int, value: float | None, intermediate: dict[int, float]) -> None:
        pass


class TPEProposer:
    """Optuna's ``TPESampler(seed=seed)``, the sampler ``--search optuna`` uses (Ray's OptunaSearch default),
    over the same space. Each asked point is snapped to a configuration; the asked trial is told FAIL
    (TPE ignores failed trials) and the evaluated configuration is added with its value (COMPLETE) or its
    rung values (PRUNED, as ``--search optuna`` tells an ASHA-stopped trial)."""

    def __init__(self, table: Table, seed: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna, self.space = optuna, _Space(table)
        self.dists = self.space.distributions()
        self.study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))

    def propose(self, pool: list[int]) -> int:
        if len(pool) == 1 or not self.dists:
            return pool[0]
        trial = self.study.ask(self.dists)
        self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        return self.space.nearest(trial.params, pool)

    def observe(self, index: int, value: float | None, intermediate: dict[int, float]) -> None:
        if not self.dists:
            return
        state = self.optuna.trial.TrialState
        self.study.add_trial(self.optuna.trial.create_trial(
            params=self.space.params(index), distributions=self.dists, value=value,
            state=state.COMPLETE if value is not None else state.PRUNED, intermediate_values=intermediate))


@dataclass(frozen=True)
class Method:
    label: str
    proposer: Callable[[Table, int], object]
    asha: bool


METHODS = {
    "grid_order": Method("grid, random order", OrderProposer, asha=False),
    "random": Method("random search", RandomProposer, asha=False),
    "asha": Method("random search + ASHA", RandomProposer, asha=True),
    "tpe": Method("TPE (Optuna)", TPEProposer, asha=False),
    "optuna": Method("TPE + ASHA (--search optuna)", TPEProposer, asha=True),
}


@dataclass(frozen=True)
class Asha:
    """Tune's ASHAScheduler settings; None: ``--search optuna``'s (services.sweeps: grace = epochs // 4,
    reduction factor 3)."""

    reduction_factor: float | None = None
    grace_period: int | None = None

    def resolved(self, epochs: int) -> tuple[float, int]:
        from services import sweeps

        eta = float(self.reduction_factor or sweeps.ASHA_REDUCTION)
        grace = int(self.grace_period or sweeps.asha_grace(epochs))
        return eta, grace

    def rungs(self, epochs: int) -> tuple[int, ...]:
        """Tune's ``_Bracket`` milestones r_k = grace · η^k for k < ⌊log(max_t / grace) / log η⌋ + 1, those
        before the last epoch (a trial at max_t is finished either way)."""
        eta, grace = self.resolved(epochs)
        n = int(math.log(epochs / grace) / math.log(eta) + 1)
        return tuple(r for r in sorted(int(grace * eta ** k) for k in range(n)) if r < epochs)


@dataclass
class Trace:
    """One search run: after every spend, the trial-epochs and worker-seconds spent so far and the
    incumbent (a configuration index; -1 before any configuration finished)."""

    epochs: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    incumbent: list = field(default_factory=list)
    reached: list = field(default_factory=list)   # (configuration, epochs it reached in the search), in order
    search_end: int = 0


class _Ledger:
    """Trains configurations epoch by epoch (reads their stored curves), charges the budget and keeps the
    incumbent: the finished configuration with the best score, ties to the lower index (compare.choose)."""

    def __init__(self, table: Table):
        self.table, self.trained = table, [0] * len(table.configs)
        self.spent, self.seconds, self.best = 0, 0.0, -1
        self.trace = Trace()

    def train(self, index: int, upto: int) -> None:
        c, start = self.table.configs[index], self.trained[index]
        self.spent += self.table.seeds * (upto - start)
        self.seconds += sum(c.epoch_seconds[start:upto])
        self.trained[index] = upto
        if upto == self.table.epochs:
            best = self.table.configs[self.best] if self.best >= 0 else None
            if best is None or c.score > best.score or (c.score == best.score and index < self.best):
                self.best = index
        self.trace.epochs.append(self.spent)
        self.trace.seconds.append(self.seconds)
        self.trace.incumbent.append(self.best)


def asha_cutoff(recorded: list[float], eta: float) -> float | None:
    """Tune's ``_Bracket.cutoff``: the (1 − 1/η) · 100th percentile of the rung's recorded values (numpy's
    linear interpolation), None while nothing is recorded."""
    return float(np.nanpercentile(recorded, (1 - 1 / eta) * 100)) if recorded else None


def replay(table: Table, method: str, seed: int, asha: Asha = Asha()) -> Trace:
    """One search run of ``method`` (a :data:`METHODS` key) with search seed ``seed`` on ``table``."""
    m = METHODS[method]
    proposer = m.proposer(table, seed)
    ledger = _Ledger(table)
    eta, _ = asha.resolved(table.epochs)
    rungs = asha.rungs(table.epochs) if m.asha else ()
    recorded: dict[int, list[float]] = {r: [] for r in rungs}
    stopped: dict[int, tuple[int, float]] = {}
    pool = list(range(len(table.configs)))
    while pool:
        index = proposer.propose(pool)
        pool.remove(index)
        curve, stop = table.configs[index].curve, None
        for r in rungs:
            ledger.train(index, r)
            value = curve[r - 1]
            if value is None:        # not evaluated at this epoch: Tune records nothing and continues
                continue
            cut = asha_cutoff(recorded[r], eta)
            recorded[r].append(value)
            if cut is not None and value < cut:
                stop = r
                break
        ledger.trace.reached.append((index, stop or table.epochs))
        if stop is None:
            ledger.train(index, table.epochs)
            proposer.observe(index, table.configs[index].score, {})
        else:
            stopped[index] = (stop, curve[stop - 1])
            proposer.observe(index, None, {e: curve[e - 1] for e in range(1, stop + 1) if curve[e - 1] is not None})
    ledger.trace.search_end = ledger.spent
    for index in sorted(stopped, key=lambda i: (-stopped[i][1], i)):   # the rest of the budget: resume them
        ledger.train(index, table.epochs)
    return ledger.trace


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
    analytic point, the grid's pick and ``matched_at``."""
    out = {"axis": "trial_epochs", "methods": {}, "matched_at": {}, "matched_band": {}, "matched_ratio": {}}
    a = None
    if analytic_row is not None and analytic_row.get("top1_mean") is not None:
        a = {"budget": int(analytic_row["trial_epochs"]), "top1_mean": analytic_row["top1_mean"],
             "top1_ci95": t_interval(analytic_row["top1_mean"], analytic_row.get("top1_sem"), int(analytic_row["seeds"])),
             "worker_seconds": analytic_row.get("worker_seconds"), "seeds": analytic_row.get("seeds")}
    out["analytic"] = a
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
    dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = payload["losses"]
    fig, axes = plt.subplots(len(losses), 2, figsize=(11, 3.9 * len(losses)), squeeze=False)
    for row, (loss, d) in zip(axes, losses.items()):
        for ax, axis in zip(row, ("budget", "seconds")):
            for i, (method, c) in enumerate(d["methods"].items()):
                cur = c if axis == "budget" else c["seconds"]
                ax.step(cur["budget"], cur["top1_mean"], where="post", color=f"C{i}", label=c["label"])
                ax.fill_between(cur["budget"], cur["top1_lo"], cur["top1_hi"], step="post", color=f"C{i}", alpha=0.12)
            ax.axhline(d["grid"]["top1_mean"], color="gray", linestyle="--", linewidth=1, label="full grid's pick")
            a = d["analytic"]
            x = None if a is None else (a["budget"] if axis == "budget" else a.get("worker_seconds"))
            if a is not None and x:
                ci = a["top1_ci95"]
                yerr = None if ci is None else [[a["top1_mean"] - ci[0]], [ci[1] - a["top1_mean"]]]
                ax.errorbar([x], [a["top1_mean"]], yerr=yerr, fmt="*", color="k", markersize=13, capsize=4,
                            label="analytic (95% CI)", zorder=5)
            ax.set_xscale("log")
            ax.set_xlabel("trial-epochs" if axis == "budget" else "worker-seconds")
            ax.set_ylabel(f"{loss}: test top-1 (%) of incumbent")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    sel = cmp.SELECTION_LABEL.get(payload.get("selection", "val"), "")
    fig.suptitle(f"anytime: incumbent chosen by {sel}; mean and 95% band over {payload['search_seeds']} search seeds",
                 fontsize=10)
    fig.tight_layout()
    return fig


def write(storage: st.Storage, name: str, payload: dict) -> dict:
    """``anytime.json`` and ``anytime.png`` into ``<storage>/<name>/``; returns their locations."""
    import matplotlib.pyplot as plt

    storage.write_json(payload, name, "anytime.json")
    fig = figure(payload)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "anytime.png")
        fig.savefig(path, dpi=110)
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
        payload = anytime(summary, epoch_results(storage, grid), rows, selection=selection, **options)
    except AnytimeError as exc:
        print(f"anytime: not written ({exc})", flush=True)
        return {}
    files = write(storage, name, payload)
    for loss, d in payload["losses"].items():
        a = d["analytic"]
        if a is not None:
            budget = max(a["budget"], 1)
            shown = ", ".join(f"{m} " + ("never" if b is None else f"{b:g} ({b / budget:.1f}x)")
                              for m, b in d["matched_at"].items())
            print(f"anytime {loss}: analytic {a['top1_mean']:.2f} at {a['budget']} trial-epochs; mean matched by "
                  f"{shown}", flush=True)
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
        payload = anytime(grid, epoch_results(storage, a.grid), rows, selection=a.selection, seeds=a.search_seeds,
                          methods=methods, asha=Asha(a.reduction_factor, a.grace_period))
    except (AnytimeError, cmp.CompareError, st.StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = a.name or f"compare-{a.grid}-vs-{a.analytic}"
    files = write(storage, name, payload)
    for loss, d in payload["losses"].items():
        print(f"{loss}: matched_at {json.dumps(d['matched_at'])} (band {json.dumps(d['matched_band'])}); "
              f"analytic {d['analytic'] and d['analytic']['budget']} trial-epochs")
    print("wrote " + ", ".join(files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
