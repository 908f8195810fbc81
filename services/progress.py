"""What a user sees while a sweep runs and when it ends: one progress line, the best configuration per loss,
one verdict line per loss, the interrupt hint, the start hint and ``robustloss ls``.

The progress line (:class:`Progress`, a Tune ``Callback`` in the driver)::

    grid  12/36 trials  96/288 trial-epochs  5:02 elapsed  ETA ~9 min (measured)  load 2.1

Trials and trial-epochs count the ones a resume kept. The ETA is the up-front estimate minus the time
spent until the first trial of this run ends, then the trial-epochs still to run at the rate this run
has finished them so far (so it follows the machine's load). On a terminal the line is rewritten in place
(``\\r``), otherwise printed every ``ROBUSTLOSS_PROGRESS_SECONDS`` (30 s). The load average (1 min) is
sampled while the phase runs; its mean goes into the phase's ``summary.json`` beside the worker-seconds.
"""
from __future__ import annotations

import os
import shlex
import sys
import time

EVERY_ENV = "ROBUSTLOSS_PROGRESS_SECONDS"
WIDTH = 120


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _short(path: str) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def cli_command() -> list[str]:
    """The command that started this CLI, as one can type it again: ``.venv/bin/python sweeps/run.py`` for
    a script, ``robustloss`` for the installed entry point (its path where it is not on PATH)."""
    import shutil

    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0.endswith(".py"):
        return [_short(sys.executable), _short(argv0)]
    base = os.path.basename(argv0)
    if base == "robustloss":
        found = shutil.which(base)
        return [base] if found and os.path.samefile(found, argv0) else [_short(argv0)]
    return ["robustloss"]


def interrupt_hint(name: str, where: list[str] = ()) -> str:
    """The command that continues experiment ``name`` after a Ctrl-C (``where``: its ``--storage-path``):
    the stored request is enough, no other flag or file is needed."""
    return shlex.join(cli_command() + ["--resume", "--name", name, *where])


def start_text() -> str:
    """What a bare ``robustloss`` prints: how to start (nothing is started)."""
    from pathlib import Path

    demo = Path(__file__).resolve().parent.parent / "sweeps" / "configs" / "demo.yaml"
    cmd = shlex.join(cli_command())
    config = shlex.quote(_short(str(demo)))
    return "\n".join([
        "robustloss: Ray Tune sweeps for noise-robust losses (grid search vs the paper's analytic mode). Nothing started.",
        "Start with the demo (synthetic data, grid + analytic + compare, minutes on a laptop):",
        f"  {cmd} --config {config} --dry-run     # what it would run, and an estimate",
        f"  {cmd} --config {config}               # run it",
        f"  {cmd} ls                                          # experiments in the storage, their state",
        f"  {cmd} --help                                      # every option",
    ])


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


class LoadMeter:
    """Mean 1-minute load average over a phase (sampled at most once a second)."""

    def __init__(self):
        self.samples: list[float] = []
        self.last = 0.0
        self.sample(force=True)

    def sample(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self.last >= 1.0:
            self.last = now
            v = _load()
            if v is not None:
                self.samples.append(v)

    def record(self) -> dict:
        self.sample(force=True)
        mean = sum(self.samples) / len(self.samples) if self.samples else None
        return {"mean": mean, "max": max(self.samples) if self.samples else None, "samples": len(self.samples),
                "cpus": os.cpu_count()}


class Line:
    """One progress line: in place on a terminal, else every ``every`` seconds."""

    def __init__(self, stream=None, every: float | None = None):
        self._stream = stream   # None: sys.stdout at each write (so the Tune callback holding it pickles)
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = float(os.environ.get(EVERY_ENV, every or 30.0))
        self.printed, self.width, self.last = 0.0, 0, ""

    @property
    def stream(self):
        return self._stream or sys.stdout

    def show(self, text: str, force: bool = False, changed_only: bool = False) -> None:
        now = time.time()
        text = text[:WIDTH - 1]
        if (not force and now - self.printed < (1.0 if self.tty else self.every)) or (changed_only and text == self.last):
            return
        self.printed, self.last = now, text
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0


# ----------------------------------------------------------------------------- the sweep's progress
_phase: dict = {"label": "sweep", "estimate": None, "quiet": False}
_current: list = []


def set_phase(label: str, estimate: float | None = None, quiet: bool = False) -> None:
    """Called by the mode before its sweep: the line's label and the up-front estimate (seconds)."""
    _phase.update(label=label, estimate=estimate, quiet=quiet)


def begin(done_rows: list[dict], todo: int, epochs: int) -> None:
    """Called by ``run_sweep`` before Tune starts: the kept rows and how many trials run now."""
    _current[:] = [] if _phase["quiet"] else [_make(done_rows, todo, epochs)]


def callbacks() -> list:
    """The progress callback of the sweep ``begin`` announced (empty with ``--quiet``)."""
    return list(_current)


def last_load() -> dict | None:
    """The load record of the last sweep (its ``summary.json``'s ``load_average``)."""
    return _current[0].load.record() if _current else None


def _make(done_rows, todo, epochs):
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self):
            self.label, self.estimate = _phase["label"], _phase["estimate"]
            self.kept = len(done_rows)
            self.kept_epochs = sum(int(r.get("epochs") or 0) for r in done_rows)
            self.total, self.epochs = self.kept + todo, epochs
            self.finished, self.epoch_of, self.first_end = 0, {}, None
            self.start = time.time()
            self.load, self.line = LoadMeter(), Line()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.epoch_of[trial.trial_id] = int(result.get("epoch") or result.get("training_iteration") or 0)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.finished += 1
            self.first_end = self.first_end or time.time()
            self.show(force=self.line.tty)

        on_trial_error = on_trial_complete

        def on_step_end(self, iteration, trials, **info):
            self.load.sample()
            self.show()

        def on_experiment_end(self, trials, **info):
            self.line.show(self.text(), force=True, changed_only=True)
            self.line.end()

        def text(self) -> str:
            now = time.time()
            ran = sum(self.epoch_of.values())
            done = self.kept_epochs + ran
            left = max(0, self.total * self.epochs - done)
            if self.first_end is not None and ran:
                eta = f"ETA ~{_clock(left * (now - self.start) / ran)} (measured)"
            elif self.estimate is not None:
                eta = f"ETA ~{_clock(max(0.0, self.estimate - (now - self.start)))} (estimate)"
            else:
                eta = "ETA after the first trial"
            load = self.load.samples[-1] if self.load.samples else None
            return (f"{self.label}  {self.kept + self.finished}/{self.total} trials  {done}/{self.total * self.epochs} "
                    f"trial-epochs  {_clock(now - self.start)} elapsed  {eta}"
                    + (f"  load {load:.1f}" if load is not None else ""))

        def show(self, force: bool = False):
            self.line.show(self.text(), force=force)

    return Progress()


# ----------------------------------------------------------------------------- the end of a run
def _pct(v) -> str:
    return "-" if v is None else f"{v:.1f} %"


def best_lines(summary: dict, selection: str = "val") -> list[str]:
    """Per loss, the configuration the selection picks (``services.compare.loss_rows``), one line each."""
    from services import compare as cmp

    try:
        rows, _ = cmp.loss_rows(summary, summary.get("mode") or "grid", selection)
    except (cmp.CompareError, KeyError, ValueError):
        return []
    out = []
    for loss, r in rows.items():
        if r["top1_mean"] is None:
            continue
        what = ", ".join(p for p in [cmp._fmt(r["params"]) if r["params"] else "",
                                     f"ε {r['logit_bias']:.3g}" if r["logit_bias"] else "", f"lr {r['lr']:.3g}"] if p)
        sem = f" ± {r['top1_sem']:.1f}" if r["top1_sem"] is not None else ""
        out.append(f"best {r['label']}: {what}: val {_pct(r['val_top1_mean'])}, test {r['top1_mean']:.1f}{sem} % "
                   f"({r['seeds']} seed(s), {r['candidates']} configuration(s))")
    return out


def compare_table(rows: list[dict], grid: str, analytic: str) -> str:
    """compare.md's tables in ≤ 120 columns for the terminal: the chosen configuration per loss and mode,
    top-1 (%), the gap in points with its 95 % interval, the verdict, trial-epochs, worker-seconds and load."""
    from services import compare as cmp

    sel = rows[0]["selection"] if rows else "val"
    lines = [f"compare: grid {grid} vs analytic {analytic}",
             f"  selection: {cmp.SELECTION_LABEL[sel]}; LR protocol: "
             + ", ".join(f"{r['mode']} {r['lr_protocol']}" for r in rows if r["loss"] == rows[0]["loss"]),
             f"{'loss':<7} {'mode':<8} {'configuration':<24} {'top-1 %':>13} {'gap, pts [95 % CI]':>24} {'verdict':<12} "
             f"{'trial-ep':>8} {'worker-s':>9} {'load':>5}"]
    for r in rows:
        conf = ", ".join(p for p in [cmp._fmt(r["params"]) if r["params"] else "",
                                     f"ε {r['logit_bias']:.3g}" if r["logit_bias"] else "",
                                     f"lr {r['lr']:.3g}" if r["lr"] is not None else ""] if p)
        top = "-" if r["top1_mean"] is None else f"{r['top1_mean']:.2f}" + (
            f" ± {r['top1_sem']:.2f}" if r["top1_sem"] is not None else "")
        ci = r.get("gap_ci95")
        gap = "" if r["gap"] is None else f"{r['gap']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci and None not in ci else "")
        load = r.get("load_average")
        lines.append(f"{(r.get('label') or r['loss'])[:7]:<7} {r['mode']:<8} {conf[:24]:<24} {top:>13} {gap:>24} "
                     f"{(r['verdict'] or '')[:12]:<12} {r['trial_epochs']:>8} {r['worker_seconds']:>9.1f} "
                     f"{'-' if load is None else f'{load:.1f}':>5}")
    return "\n".join(line[:WIDTH] for line in lines)


def verdict_lines(rows: list[dict]) -> list[str]:
    """One line per loss of a comparison: verdict, gap with its interval, trial-epoch ratio."""
    out = []
    grid = {r["loss"]: r for r in rows if r["mode"] == "grid"}
    for a in (r for r in rows if r["mode"] == "analytic"):
        g = grid.get(a["loss"], {})
        gap = "-" if a["gap"] is None else f"{a['gap']:+.2f} pts"
        ci = a.get("gap_ci95")
        ci = f" [{ci[0]:+.2f}, {ci[1]:+.2f}] (95 % CI)" if ci and None not in ci else " (no interval)"
        ratio = f"{a['trial_epochs']}/{g.get('trial_epochs', '-')} trial-epochs"
        if a.get("epoch_ratio") is not None:
            ratio += f" = {a['epoch_ratio']:.2f}"
        out.append(f"{a['label']} vs grid {g.get('label', a['loss'])}: {a['verdict'] or 'undetermined'}, "
                   f"gap {gap}{ci}, {ratio}")
    return out


# ----------------------------------------------------------------------------- robustloss ls
def experiment_rows(storage) -> list[dict]:
    """Every experiment in ``storage``: name, mode, trials finished/total, best result, state."""
    from services import storage as st

    out = []
    for name in st.experiments(storage):
        record = storage.read_json(name, st.EXPERIMENT_RECORD) if storage.exists(name, st.EXPERIMENT_RECORD) else {}
        request = record.get("request") or {}
        row = {"name": name, "mode": record.get("mode") or "?", "started": record.get("created") or record.get("started")}
        if not storage.exists(name, st.SUMMARY) and storage.exists(name, "compare.json"):   # a report
            rows = storage.read_json(name, "compare.json").get("rows", [])
            row.update(mode="compare", finished=None, total=None, state="report", best="; ".join(
                f"{r.get('label') or r['loss']} {r['verdict']}" for r in rows if r["mode"] == "analytic"))
        elif storage.exists(name, st.SUMMARY):
            summary = storage.read_json(name, st.SUMMARY)
            row["mode"] = summary.get("mode") or row["mode"]
            runs = [r for r in summary.get("runs", []) if r.get("role", "main") == "main"]
            row.update(finished=len(runs), total=len(runs), state="finished",
                       best=_best(runs, loss_labels(summary.get("calibration"))))
        else:
            from services.resume import unfinished_rows

            runs = [r for r in unfinished_rows(storage, name) if r.get("role", "main") == "main"]
            ended = [r for r in runs if r["status"] != "unfinished"]
            calibration = storage.read_json(name, st.CALIBRATION).get("losses") if storage.exists(name, st.CALIBRATION) else None
            row.update(finished=len(ended), total=planned_trials(request, row["mode"]), state="unfinished",
                       best=_best(ended, loss_labels(calibration)))
        out.append(row)
    return out


def loss_labels(calibration: dict | None) -> dict:
    """How an analytic experiment names its losses (MAE*, GCE+): the labels its calibration stored."""
    return {k: (c.get("label") or k).upper() for k, c in (calibration or {}).items()}


def planned_trials(request: dict, mode: str) -> int | None:
    """How many main trials a stored request runs (None where a searcher decides or it is unknown)."""
    import math

    seeds, lrs, losses = int(request.get("seeds") or 1), request.get("lrs") or [], request.get("losses") or []
    if mode == "train":
        return 1
    if mode == "grid" and request.get("search", "grid") != "grid":
        return request.get("num_samples")
    if mode == "grid":
        grids = request.get("grids") or {}
        return sum(math.prod(len(v) for v in (grids.get(loss) or {}).values()) for loss in losses) * len(lrs) * seeds
    if mode == "analytic":
        return len(losses) * len(lrs or [request.get("lr")]) * seeds
    return None


def _best(runs: list[dict], labels: dict | None = None) -> str:
    ok = [r for r in runs if r.get("status") == "ok"]
    key = "val_top1" if any(r.get("val_top1") is not None for r in ok) else "test_top1"
    ok = [r for r in ok if r.get(key) is not None]
    if not ok:
        return "-"
    r = max(ok, key=lambda r: r[key])
    params = ",".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted((r.get("params") or {}).items()))
    eps = f" ε {r['logit_bias']:.3g}" if r.get("logit_bias") else ""
    loss = (labels or {}).get(r["loss"], r["loss"].upper())
    return f"{key.split('_')[0]} {r[key]:.1f} %: {loss}{(' ' + params) if params else ''}{eps} lr {r['lr']:.3g}"


def print_experiments(storage) -> int:
    rows = experiment_rows(storage)
    print(f"experiments in {storage.display()}: {len(rows)}")
    if not rows:
        return 0
    width = max(12, min(40, max(len(r["name"]) for r in rows)))
    print(f"{'name':<{width}} {'mode':<8} {'state':<10} {'trials':>9}  best")
    for r in sorted(rows, key=lambda r: r.get("started") or 0):
        trials = "-" if r["finished"] is None else f"{r['finished']}/{r['total'] if r['total'] is not None else '?'}"
        line = f"{r['name'][:width]:<{width}} {r['mode']:<8} {r['state']:<10} {trials:>9}  {r['best']}"
        print(line[:WIDTH])
    return 0


def list_experiments(argv: list[str]) -> int:
    """``robustloss ls [--storage-path P]``: every experiment there, its mode, trials finished/total, best result."""
    import argparse

    from services import storage as st

    p = argparse.ArgumentParser(prog="robustloss ls", description=list_experiments.__doc__.split(": ", 1)[1])
    p.add_argument("--storage-path", help="default: $ROBUSTLOSS_STORAGE, else ~/robustloss_results")
    args = p.parse_args(argv)
    return print_experiments(st.resolve_storage(st.resolve_user_path(args.storage_path)))


def _top(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def print_runs(rows: list[dict], labels: dict | None = None) -> None:
    """The trials, sorted (pilots first, then loss, parameters, lr, seed), accuracies in %, ≤ 120 columns;
    ``labels``: how the analytic side names a loss (MAE*, GCE+)."""
    from services.compare import _fmt

    labels = labels or {}
    print(f"{'loss':<10} {'params':<24} {'ε':>6} {'lr':>8} {'seed':>4} {'val %':>7} {'test %':>7} {'ES test %':>9} "
          f"{'worker-s':>9} status")
    order = sorted(rows, key=lambda r: (r.get("role") != "pilot", r["loss"], sorted((r.get("params") or {}).items()),
                                        r["logit_bias"], r["lr"], r["seed"]))
    for r in order:
        line = (f"{labels.get(r['loss'], r['loss'].upper()):<10} {_fmt(r['params'])[:24]:<24} {r['logit_bias']:>6.2f} "
                f"{r['lr']:>8.4g} {r['seed']:>4} {_top(r.get('val_top1')):>7} {_top(r['test_top1']):>7} "
                f"{_top(r.get('test_top1_at_best')):>9} {r['compute_seconds']:>9.1f} {r['status']}"
                f"{' (pilot)' if r.get('role') == 'pilot' else ''}{(': ' + r['error']) if r.get('error') else ''}")
        print(line[:WIDTH])
