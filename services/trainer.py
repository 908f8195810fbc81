"""Ray layer around ``robustloss_core.engine.train``: Ray Train workers and Tune trials.

A *trial spec* is a plain JSON-able dict, the unit every sweep is made of::

    {"train": TrainConfig dict,            # what robustloss_core.engine.train runs
     "num_workers": 1, "use_gpu": False,   # Ray resources of one run
     "gpus_per_worker": 0.0, "cpus_per_worker": 1,
     "max_failures": 2,                    # retries from the last checkpoint
     "label": {"loss": ..., "params": {...}, "logit_bias": ..., "lr": ..., "seed": ...},
     "fault_injection": None,              # {"epoch": k, "marker": path}: fail once after epoch k (tests)
     "resume_from": None}                  # optional: a checkpoint to start from (services/salvage.py)

Two ways a trial runs (``run_trial`` picks per spec):

* ``num_workers == 1``: the engine runs *inside the Tune function*. A Ray Train run costs ~23 s of
  fixed start-up (controller, worker group, process group) on top of its epochs, while a Tune
  function trial costs ~2.5 s; for the single-process trials that make up most sweeps (MLPs,
  ResNet-32 on one GPU or a GPU fraction) that start-up would dominate, and DDP buys nothing.
* ``num_workers > 1``: the Tune function is a *driver* that builds a ``TorchTrainer`` (DDP over
  ``num_workers`` Ray Train workers, gloo on CPU, NCCL on GPU) and forwards every epoch's metrics
  to Tune with ``TuneReportCallback``.

Either way each epoch reports the engine's metrics plus the compute accounting
(``trial_seconds`` wall time since the trial first started, start-up included and accumulated over
restarts; ``worker_seconds`` = trial_seconds × workers; ``gpu_seconds`` = trial_seconds × GPUs) with
a checkpoint of the full engine state, so a retried or resumed trial continues from its last epoch.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from robustloss_core import engine
from robustloss_core.config import TrainConfig

STATE_FILE = "state.pt"
NONFINITE_FILE = "nonfinite.json"
SPEC_FILE = "spec.json"   # the trial spec, in every checkpoint: a checkpoint says which trial it belongs to


class InjectedFault(RuntimeError):
    """Raised once by ``fault_injection`` to exercise retry-from-checkpoint."""


def trial_gpus(spec: dict) -> float:
    return spec["num_workers"] * spec.get("gpus_per_worker", 0.0) if spec.get("use_gpu") else 0.0


def accounting(spec: dict, elapsed: float) -> dict:
    """Compute a trial has used after ``elapsed`` wall seconds (start-up and earlier restarts included)."""
    return {"trial_seconds": elapsed, "worker_seconds": elapsed * spec["num_workers"],
            "gpu_seconds": elapsed * trial_gpus(spec)}


def _restore(checkpoint) -> dict | None:
    """Engine state saved in a Ray checkpoint; re-raises a recorded non-finite loss at once."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        marker = os.path.join(d, NONFINITE_FILE)
        if os.path.exists(marker):
            with open(marker) as f:
                raise engine.NonFiniteLossError(json.load(f)["reason"])
        return engine.load_checkpoint(os.path.join(d, STATE_FILE))


def _write_spec(spec: dict, folder: str) -> None:
    """Put the trial spec beside a checkpoint's state. The trial writes its checkpoints to the storage
    itself, once, while Tune's driver re-copies ``params.json`` at every snapshot, so a killed driver can
    leave ``params.json`` cut short but not this copy (services/salvage.py reads it then)."""
    with open(os.path.join(folder, SPEC_FILE), "w") as f:
        json.dump({k: v for k, v in spec.items() if not k.startswith("_")}, f)


def _epoch_reporter(spec: dict, report, make_checkpoint, *, is_rank0: bool, started: float, prior: float):
    """``on_epoch`` callback: add compute accounting, save the state, report, maybe inject a fault."""
    import ray

    fault = spec.get("fault_injection") or None
    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None

    def on_epoch(metrics: dict, get_state) -> None:
        elapsed = prior + time.time() - started
        row = dict(metrics)
        row.pop("history", None)
        row.update(accounting(spec, elapsed), node_id=node_id)
        state = get_state() if is_rank0 else None
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if state is not None:
                state["robustloss_elapsed"] = elapsed
                engine.save_checkpoint(state, os.path.join(d, STATE_FILE))
                _write_spec(spec, d)
                checkpoint = make_checkpoint(d)
            report(row, checkpoint=checkpoint)
        if fault and metrics["epoch"] == fault["epoch"] and not os.path.exists(fault["marker"]):
            with open(fault["marker"], "w") as f:
                f.write(str(os.getpid()))
            raise InjectedFault(f"injected failure after epoch {fault['epoch']}")

    return on_epoch


def _record_nonfinite(exc: Exception, spec: dict, report, make_checkpoint, last_metrics: dict) -> None:
    """Store a non-finite-loss marker as the latest checkpoint so retries fail at once, not retrain."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, NONFINITE_FILE), "w") as f:
            json.dump({"reason": str(exc)}, f)
        _write_spec(spec, d)
        report({**last_metrics, "error": str(exc)}, checkpoint=make_checkpoint(d))


def _run_engine(spec: dict, *, report, make_checkpoint, checkpoint, is_rank0: bool, device: str | None = None):
    """Run the engine with reporting; shared by the Tune function and the Ray Train worker loop."""
    import logging

    import torch

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no "Checkpoint successfully created" per epoch
    # one intra-op thread per reserved CPU: oversubscribed threads slow small models down many-fold
    torch.set_num_threads(max(1, int(spec.get("cpus_per_worker", 1))))
    config = dict(spec["train"])
    if device is not None:
        config["device"] = device
    resume = _restore(checkpoint)
    prior = float(resume.get("robustloss_elapsed", 0.0)) if resume else 0.0
    started = spec.get("_driver_started") if (resume is None and spec.get("_driver_started")) else time.time()
    on_epoch = _epoch_reporter(spec, report, make_checkpoint, is_rank0=is_rank0, started=started, prior=prior)
    last = {}

    def tracking(metrics, get_state):
        last.clear()
        last.update({k: v for k, v in metrics.items() if k != "history"})
        on_epoch(metrics, get_state)

    try:
        return engine.train(TrainConfig.from_dict(config), on_epoch=tracking, resume_state=resume)
    except engine.NonFiniteLossError as exc:
        if is_rank0:
            _record_nonfinite(exc, spec, report, make_checkpoint, last)
        raise


def train_loop_per_worker(spec: dict) -> None:
    """Ray Train worker loop (``TorchTrainer(train_loop_per_worker=...)``).

    Ray Train has already set up the torch.distributed process group; the engine sees it, shards the
    data by rank and wraps the model in DDP. Rank 0 saves the checkpoint; every rank reports.
    """
    import ray.train
    import ray.train.torch

    device = str(ray.train.torch.get_device()) if spec.get("use_gpu") else "cpu"
    _run_engine(
        spec,
        report=ray.train.report,
        make_checkpoint=ray.train.Checkpoint.from_directory,
        checkpoint=ray.train.get_checkpoint(),
        is_rank0=ray.train.get_context().get_world_rank() == 0,
        device=device,
    )


def build_torch_trainer(spec: dict, *, storage, folder: str, name: str, callbacks=()):
    """A ``TorchTrainer`` for one spec, its run folder at ``<storage>/<folder>/<name>``.

    Ray Train V2 resumes a run whose folder already holds checkpoints, which is how a retried Tune
    trial or a restarted ``--mode train`` continues from its last epoch."""
    import ray.train
    from ray.train.torch import TorchTrainer

    resources = {"CPU": spec.get("cpus_per_worker", 1)}
    if spec.get("use_gpu"):
        resources["GPU"] = spec.get("gpus_per_worker", 1.0)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=spec,
        scaling_config=ray.train.ScalingConfig(
            num_workers=spec["num_workers"], use_gpu=bool(spec.get("use_gpu")), resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage.path(folder),
            storage_filesystem=storage.fs,
            failure_config=ray.train.FailureConfig(max_failures=spec.get("max_failures", 2)),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=list(callbacks),
        ),
    )


def run_trial(config: dict, spec: dict | None = None, storage=None, experiment: str | None = None) -> None:
    """Tune function trainable: ``config["trial"]`` is a trial spec (or sampled keys over ``spec``)."""
    from ray import tune

    spec = resolve_trial_spec(config, spec)
    if spec["num_workers"] == 1:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None and spec.get("resume_from"):  # a salvaged trial (services/salvage.py)
            checkpoint = tune.Checkpoint(spec["resume_from"], filesystem=storage.fs if storage else None)
        _run_engine(
            spec,
            report=tune.report,
            make_checkpoint=tune.Checkpoint.from_directory,
            checkpoint=checkpoint,
            is_rank0=True,
            device="cuda" if spec.get("use_gpu") else "cpu",
        )
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    spec = {**spec, "_driver_started": time.time()}
    trainer = build_torch_trainer(
        spec, storage=storage, folder=f"{experiment}/train", name=trial_id, callbacks=[TuneReportCallback()]
    )
    trainer.fit()


def resolve_trial_spec(config: dict, base: dict | None) -> dict:
    """Grid trials carry a full spec in ``config["trial"]``; searcher trials carry sampled keys
    (``loss``, ``lr``, ``logit_bias`` and loss parameters) applied over ``base``."""
    if "trial" in config:
        return config["trial"]
    spec = json.loads(json.dumps(base))
    train = spec["train"]
    params = {k: v for k, v in config.items() if k not in ("loss", "lr", "logit_bias", "seed")}
    train["loss"] = config.get("loss", train["loss"])
    train["lr"] = config.get("lr", train.get("lr"))
    train["logit_bias"] = config.get("logit_bias", train.get("logit_bias", 0.0))
    train["seed"] = config.get("seed", train.get("seed", 0))
    train["loss_params"] = params
    spec["label"] = {
        "loss": train["loss"], "params": params, "logit_bias": train["logit_bias"],
        "lr": train["lr"], "seed": train["seed"],
    }
    return spec
