"""Summary rows: one per trial, the format of ``summary.json`` / ``summary.csv`` and ``--json-out``.

A row holds the trial's hyperparameters (``loss``, ``params`` = the loss's own, ``logit_bias``, ``lr``,
``seed``), its last reported metrics (final-epoch test/validation accuracy, the early-stopping fields
``best_epoch`` / ``val_top1_best`` / ``test_top1_at_best``, ``memorized``), its compute and its status.
``services.compare`` and ``services.api.load_runs`` read these rows.
"""
from __future__ import annotations

import csv
import io

from services.spec import TrialSpec, split_hparams

ROW_METRICS = ("test_top1", "test_top5", "val_top1", "val_top1_clean", "memorized", "best_epoch", "val_top1_best",
               "test_top1_at_best", "train_acc_noisy", "train_acc_clean")


TIMING_METRICS = ("setup_seconds", "report_seconds", "checkpoints", "worker_peak_rss_mb")


def run_row(spec: TrialSpec, metrics: dict | None, error, span: tuple[float, float] | None = None) -> dict:
    """One ``summary.json`` row: the trial's hyperparameters, its last reported metrics, its status.

    Compute: ``trial_seconds`` is the trial's wall time — inside its function, accumulated over restarts
    and resumes (the metrics' own ``trial_seconds``) — plus, given ``span`` (the driver's (start, end)
    clock times of the trial in this run, ``started_at``/``ended_at`` in Unix seconds), this run's
    start-up and teardown outside the function (actor start, imports; data set-up before the first step
    is inside). ``compute_seconds`` = trial_seconds × workers (worker-seconds), ``gpu_seconds`` =
    trial_seconds × GPUs. ``TIMING_METRICS`` say where a trial's time went (services.trainer)."""
    m = metrics or {}
    trial_seconds = float(m.get("trial_seconds", 0.0) or 0.0)
    startup = 0.0
    if span is not None:
        startup = max(0.0, span[1] - span[0] - (trial_seconds - float(m.get("resumed_seconds", 0.0) or 0.0)))
    trial_seconds += startup
    epochs_total = spec.train_config().get("epochs")
    epoch = int(m.get("epoch", 0) or 0)
    if error is not None:
        status = "error"
    elif epochs_total and epoch < epochs_total:
        status = "stopped"  # ASHA ended it early
    else:
        status = "ok"
    message = None
    if error is not None:
        message = str(error).strip().splitlines()[-1][:500] if str(error).strip() else type(error).__name__
    main, params = split_hparams(spec.hparams)
    return {
        "loss": spec.loss, "params": params, "logit_bias": main["logit_bias"], "lr": main["lr"], "seed": main["seed"],
        **{k: m.get(k) for k in ROW_METRICS},
        "compute_seconds": trial_seconds * spec.num_workers, "gpu_seconds": trial_seconds * spec.resources.gpus,
        "trial_seconds": trial_seconds, "startup_seconds": startup, "epochs": epoch,
        "num_workers": spec.num_workers, "gpus": spec.resources.gpus, "role": spec.role, "key": spec.key,
        "status": status, "error": message, "trial_id": m.get("trial_id"), "node_id": m.get("node_id"),
        **{k: m.get(k) for k in TIMING_METRICS},
        "started_at": span[0] if span else None, "ended_at": span[1] if span else None,
    }


SUMMARY_COLUMNS = ["loss", "lr", "seed", "logit_bias", "status", *ROW_METRICS, "epochs", "compute_seconds",
                   "gpu_seconds", "trial_seconds", "startup_seconds", "num_workers", "gpus", "role", "key", "error"]


def flat_rows(rows: list[dict]) -> list[dict]:
    """Rows with the loss parameters as their own columns (``q``, ``alpha``…) instead of a ``params`` dict."""
    out = []
    for r in rows:
        flat = {k: v for k, v in r.items() if k != "params"}
        flat.update(r.get("params") or {})
        out.append(flat)
    return out


def to_csv(rows: list[dict]) -> str:
    flat = flat_rows(rows)
    params = sorted({k for r in rows for k in (r.get("params") or {})})
    cols = SUMMARY_COLUMNS[:4] + params + [c for c in SUMMARY_COLUMNS[4:]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


