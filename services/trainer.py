"""Ray layer around ``robustloss_core.engine.train``: Ray Train workers and Tune trials.

Every trial is a ``services.spec.TrialSpec``: Tune passes its flat hyperparameters as the trial's
``config`` (``{"loss": "gce", "lr": 0.1, "seed": 0, "logit_bias": 0.0, "q": 0.7}``) and the fixed
settings as ``fixed`` (``tune.with_parameters``); ``run_trial`` rebuilds the spec from the two (its key,
checkpoints and accounting) and trains ``TrainConfig(**fixed.train, **config)`` (``TrialSpec.train_config``).

Two ways a trial runs (``run_trial`` picks per spec):

* ``num_workers == 1``: the engine runs *inside the Tune function*: a Ray Train run's fixed start-up
  (controller, worker group, process group) is many times a Tune function trial's (benchmarks/README.md
  §3), and for the single-process trials that make up most sweeps (MLPs, ResNet-32 on one GPU or a GPU
  fraction) it would dominate while DDP buys nothing.
* ``num_workers > 1``: the Tune function is a *driver* that builds a ``TorchTrainer`` (DDP over
  ``num_workers`` Ray Train workers, gloo on CPU, NCCL on GPU) and forwards every epoch's metrics
  to Tune with ``TuneReportCallback``.

Either way each epoch reports the engine's metrics plus the compute accounting
(``trial_seconds`` wall time since the trial first started, start-up included and accumulated over
restarts; ``worker_seconds`` = trial_seconds × workers; ``gpu_seconds`` = trial_seconds × GPUs) and,
where the checkpoint policy says so (``Resources.checkpoint_due``: the last epoch, every N epochs, every
M seconds, ASHA rungs), a checkpoint (``services.checkpoint``: the full engine state and the TrialSpec),
so a retried or resumed trial continues from its newest checkpoint and a checkpoint says which trial it
belongs to.

Many short trials: grid and analytic sweeps reuse the trial actors (services.sweeps), so one worker runs trial
after trial; imports, torch's lazy start-up (the first optimiser imports torch._dynamo) and
the dataset (``datasets.build_dataset(cache=True)``) are paid once per worker, not per trial.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time

from robustloss_core import engine
from robustloss_core.config import TrainConfig
from services import checkpoint as ckpt
from services import timeline
from services.cluster import VERBOSE_ENV
from services.spec import Fixed, TrialSpec


class InjectedFault(RuntimeError):
    """Raised once by ``fault_injection`` to exercise retry-from-checkpoint."""


def accounting(spec: TrialSpec, elapsed: float) -> dict:
    """Compute a trial has used after ``elapsed`` wall seconds (start-up and earlier restarts included)."""
    return {"trial_seconds": elapsed, "worker_seconds": elapsed * spec.num_workers,
            "gpu_seconds": elapsed * spec.resources.gpus}


def _epoch_reporter(spec: TrialSpec, report, make_checkpoint, *, is_rank0: bool, started: float, prior: float,
                    entered: float, trial_name: str | None = None):
    """``on_epoch`` callback: add compute accounting, save the state when the checkpoint policy says so
    (``Resources.checkpoint_due``), report, export the trial's metrics (``services.metrics``: Prometheus
    gauges on the node's metrics port), maybe inject a fault.

    Timing fields of every row: ``setup_seconds`` (from entering the trial function to its first epoch:
    data, noise, model), ``report_seconds`` (time spent so far saving checkpoints and handing results to
    Tune), ``checkpoints`` (how many this run saved), ``worker_peak_rss_mb`` (the worker process's peak)."""
    import ray

    from services import metrics as trial_metrics

    fault = spec.fault_injection
    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    last_epoch = int(spec.train_config()["epochs"])
    clock = {"last_checkpoint": entered, "setup": None, "report": 0.0, "checkpoints": 0}

    def on_epoch(metrics: dict, get_state) -> None:
        now = time.time()
        elapsed = prior + now - started
        if clock["setup"] is None:
            clock["setup"] = max(0.0, now - entered - float(metrics.get("epoch_time") or 0.0))
        row = dict(metrics)
        row.pop("history", None)
        row.update(accounting(spec, elapsed), resumed_seconds=prior, node_id=node_id, setup_seconds=clock["setup"],
                   report_seconds=clock["report"], worker_peak_rss_mb=timeline.peak_rss_mb())
        if is_rank0:
            trial_metrics.export_epoch(row, experiment=spec.fixed.experiment, trial=trial_name or spec.key,
                                       loss=spec.loss, lr=spec.hparams["lr"])
        due = spec.resources.checkpoint_due(int(metrics["epoch"]), last_epoch, now - clock["last_checkpoint"])
        state = get_state() if (is_rank0 and due) else None
        # a folder for the checkpoint only when one is saved: no file-system work in epochs without one
        with (tempfile.TemporaryDirectory() if state is not None else contextlib.nullcontext()) as d:
            checkpoint = None
            if state is not None:
                state["robustloss_elapsed"] = elapsed
                ckpt.write(d, spec, state=state)
                checkpoint = make_checkpoint(d)
                clock["checkpoints"] += 1
                clock["last_checkpoint"] = now
            row["checkpoints"] = clock["checkpoints"]
            report(row, checkpoint=checkpoint)
        clock["report"] += time.time() - now
        if fault and metrics["epoch"] == fault["epoch"] and not os.path.exists(fault["marker"]):
            with open(fault["marker"], "w") as f:
                f.write(str(os.getpid()))
            raise InjectedFault(f"injected failure after epoch {fault['epoch']}")

    return on_epoch


def _record_nonfinite(exc: Exception, spec: TrialSpec, report, make_checkpoint, last_metrics: dict) -> None:
    """Store a non-finite-loss marker as the latest checkpoint so retries fail at once, not retrain."""
    with tempfile.TemporaryDirectory() as d:
        ckpt.write(d, spec, nonfinite=str(exc))
        report({**last_metrics, "error": str(exc)}, checkpoint=make_checkpoint(d))


def _run_engine(spec: TrialSpec, *, report, make_checkpoint, checkpoint, is_rank0: bool, device: str | None = None,
                started: float | None = None, trial_name: str | None = None):
    """Run the engine with reporting; shared by the Tune function and the Ray Train worker loop."""
    import logging

    entered = time.time()
    import torch

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no "Checkpoint successfully created" per epoch
    # one intra-op thread per reserved CPU: oversubscribed threads slow small models down many-fold
    torch.set_num_threads(max(1, int(spec.resources.cpus_per_worker)))
    cfg = TrainConfig.from_dict(spec.train_config())   # TrainConfig(**fixed.train, **config): what the trial trains
    if device is not None:
        cfg.device = device
    resume = ckpt.restore(checkpoint)
    prior = float(resume.get("robustloss_elapsed", 0.0)) if resume else 0.0
    started = started if (resume is None and started) else time.time()
    on_epoch = _epoch_reporter(spec, report, make_checkpoint, is_rank0=is_rank0, started=started, prior=prior,
                               entered=entered, trial_name=trial_name)
    last = {}

    def tracking(metrics, get_state):
        last.clear()
        last.update({k: v for k, v in metrics.items() if k != "history"})
        on_epoch(metrics, get_state)

    try:
        return engine.train(cfg, on_epoch=tracking, resume_state=resume)
    except engine.NonFiniteLossError as exc:
        if is_rank0:
            _record_nonfinite(exc, spec, report, make_checkpoint, last)
        raise


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker loop (``TorchTrainer(train_loop_per_worker=...)``); ``config`` holds the
    spec's JSON form under ``"spec"`` and the driver's start time under ``"started"``.

    Ray Train has already set up the torch.distributed process group; the engine sees it, shards the
    data by rank and wraps the model in DDP. Rank 0 saves the checkpoint; every rank reports.
    """
    import ray.train
    import ray.train.torch

    spec = dataclasses.replace(TrialSpec.from_dict(config["spec"]), fault_injection=config.get("fault_injection"))
    device = str(ray.train.torch.get_device()) if spec.resources.use_gpu else "cpu"
    rank0 = ray.train.get_context().get_world_rank() == 0
    tracking = config.get("tracking") or {}
    logger = None
    if rank0 and tracking.get("folder"):   # --mode train: rank 0 logs every epoch itself (services.tracking)
        from services.tracking import EpochLogger

        logger = EpochLogger(tracking["folder"], tracking["name"], spec.hparams, tracking.get("kinds", ()))

    def report(row, checkpoint=None):
        if logger is not None:
            logger.log(row)
        ray.train.report(row, checkpoint=checkpoint)

    final = None
    try:
        final = _run_engine(
            spec,
            report=report,
            make_checkpoint=ray.train.Checkpoint.from_directory,
            checkpoint=ray.train.get_checkpoint(),
            is_rank0=rank0,
            device=device,
            started=config.get("started"),
            trial_name=config.get("trial_name"),
        )
    finally:
        if logger is not None:
            logger.close(final)


def build_torch_trainer(spec: TrialSpec, *, storage, folder: str, name: str, callbacks=(), started: float | None = None,
                        tracking: dict | None = None, trial_name: str | None = None):
    """A ``TorchTrainer`` for one spec, its run folder at ``<storage>/<folder>/<name>``.

    Ray Train V2 resumes a run whose folder already holds checkpoints, which is how a retried Tune
    trial or a restarted ``--mode train`` continues from its last epoch."""
    import ray.train
    from ray.train.torch import TorchTrainer

    res = spec.resources
    per_worker = {"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if res.use_gpu else {})}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": spec.to_dict(), "fault_injection": spec.fault_injection, "started": started,
                           "tracking": tracking, "trial_name": trial_name or name},
        scaling_config=ray.train.ScalingConfig(num_workers=res.num_workers, use_gpu=res.use_gpu,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage.path(folder),
            storage_filesystem=storage.fs,
            failure_config=ray.train.FailureConfig(max_failures=res.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=list(callbacks),
            # Ray Train's per-epoch "Reporting training result" lines only with --verbose
            logging_config=ray.train.LoggingConfig(log_level="INFO" if os.environ.get(VERBOSE_ENV) == "1" else "WARNING"),
        ),
    )


def run_trial(config: dict, fixed: Fixed, storage=None) -> None:
    """Tune function trainable: ``config`` is the trial's flat hyperparameters, ``fixed`` the rest; it trains
    ``TrainConfig(**fixed.train, **config)`` (``_run_engine``)."""
    from ray import tune

    spec = TrialSpec.from_hparams(fixed, config)
    # the trial's folder name (loss, varied parameters, ε, lr, seed, trial id): how metrics and logs name it
    trial_name = os.path.basename(tune.get_context().get_trial_dir().rstrip("/")) or tune.get_context().get_trial_name()
    if spec.num_workers == 1:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None and spec.resume_from:  # resumed after a driver kill (services/salvage.py)
            checkpoint = tune.Checkpoint(spec.resume_from, filesystem=storage.fs if storage else None)
        _run_engine(
            spec,
            report=tune.report,
            make_checkpoint=tune.Checkpoint.from_directory,
            checkpoint=checkpoint,
            is_rank0=True,
            device="cuda" if spec.resources.use_gpu else "cpu",
            trial_name=trial_name,
        )
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    # the run (its folder, and its Name in the dashboard's Train runs) is named by the hyperparameters and
    # the spec key, both fixed by the spec: a resumed sweep's new trial finds the old run's checkpoints
    trainer = build_torch_trainer(spec, storage=storage, folder=f"{fixed.experiment}/train", name=spec.run_name,
                                  callbacks=[TuneReportCallback()], started=time.time(), trial_name=trial_name)
    trainer.fit()
