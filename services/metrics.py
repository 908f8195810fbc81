"""Per-trial metrics for the Ray dashboard, Grafana or any Prometheus scrape of a node's metrics port.

One Gauge per metric (``ray.util.metrics``), tagged with the experiment, the trial, its loss and its
learning rate, so each trial is one time series: ``robustloss_test_top1{experiment, trial, loss, lr}``
(exported, as every Ray metric, with Ray's prefix: ``ray_robustloss_test_top1``).
Ray exports them from the node the trial runs on (``ray start --metrics-export-port``, scraped at
``http://<node>:<port>/metrics``; ``deploy/README.md`` shows the Prometheus/Grafana setup).
"""
from __future__ import annotations

import math

PREFIX = "robustloss_"
# Ray exports a metric NAME as ray_NAME (NAMESPACE in ray/_private/telemetry/open_telemetry_metric_recorder.py):
# Prometheus and Grafana see ray_robustloss_test_top1
RAY_NAMESPACE = "ray"
TAG_KEYS = ("experiment", "trial", "loss", "lr")
# engine metric -> what its gauge shows (the gauge is PREFIX + key)
GAUGES = {
    "test_top1": "top-1 accuracy (%) on the clean test set after the trial's latest epoch",
    "val_top1": "top-1 accuracy (%) on the noisy validation split after the trial's latest epoch",
    "epoch": "epochs the trial has finished",
    "train_loss": "mean training loss of the trial's latest epoch",
}

_gauges: dict = {}  # per process: Ray registers each metric once per worker


def _gauge(key: str):
    if key not in _gauges:
        from ray.util.metrics import Gauge

        _gauges[key] = Gauge(PREFIX + key, description=GAUGES[key], tag_keys=TAG_KEYS)
    return _gauges[key]


def exported_name(key: str) -> str:
    """The name a scrape of the metrics port shows for the gauge of engine metric ``key``."""
    return f"{RAY_NAMESPACE}_{PREFIX}{key}"


def tags(*, experiment: str, trial: str, loss: str, lr: float) -> dict[str, str]:
    """The tag values of one trial (Ray tags are strings; ``lr`` in ``%g`` form, e.g. ``0.01``)."""
    return {"experiment": str(experiment), "trial": str(trial), "loss": str(loss), "lr": f"{float(lr):g}"}


def export_epoch(metrics: dict, *, experiment: str, trial: str, loss: str, lr: float) -> dict[str, float]:
    """Set the trial's gauges from one epoch's ``metrics`` (the engine's row); call it from the trial's
    per-epoch callback inside the Ray worker. Missing, None and non-finite values are skipped (a gauge
    keeps its last value). Returns what was set, by gauge name; nothing outside a Ray process."""
    import ray

    if not ray.is_initialized():
        return {}
    t = tags(experiment=experiment, trial=trial, loss=loss, lr=lr)
    sent = {}
    for key in GAUGES:
        value = metrics.get(key)
        if value is None or not math.isfinite(float(value)):
            continue
        _gauge(key).set(float(value), tags=t)
        sent[PREFIX + key] = float(value)
    return sent
