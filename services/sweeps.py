"""Ray Tune sweeps: the baseline grid (or Optuna TPE + ASHA) and the paper's analytic mode.

Every sweep is a list of *trial specs* (see ``services.trainer``) run by one ``tune.Tuner`` whose
experiment folder is ``<storage>/<name>/``. The folder is the single source of truth: Tune's state
and checkpoints, plus ``robustloss.json`` (what was asked) and ``summary.json`` (one row per trial,
the format of ``--json-out``), which ``services.compare`` reads.
"""
from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass, field

from services import salvage
from services import storage as st
from services.trainer import resolve_trial_spec, run_trial, trial_gpus


class ExperimentExistsError(ValueError):
    """An experiment name already used in the storage, without ``--resume``."""


@dataclass
class Resources:
    """Ray resources of one training run and how many run at once."""

    num_workers: int = 1
    use_gpu: bool = False
    gpus_per_worker: float = 1.0
    cpus_per_worker: float = 1
    max_failures: int = 2
    max_concurrent_trials: int | None = None

    def spec_fields(self) -> dict:
        return {
            "num_workers": self.num_workers, "use_gpu": self.use_gpu,
            "gpus_per_worker": self.gpus_per_worker if self.use_gpu else 0.0,
            "cpus_per_worker": self.cpus_per_worker, "max_failures": self.max_failures,
        }

    def trial_resources(self) -> dict:
        """Resources Tune reserves per trial. Multi-worker trials are drivers: the Ray Train
        workers reserve their own CPUs/GPUs, so the driver asks for a sliver of a CPU."""
        if self.num_workers > 1:
            return {"cpu": 0.01}
        res = {"cpu": self.cpus_per_worker}
        if self.use_gpu:
            res["gpu"] = self.gpus_per_worker
        return res

    def concurrency(self, capacity: dict) -> int:
        """``max_concurrent_trials`` matching the cluster: as many trials as CPUs (and GPUs) allow."""
        if self.max_concurrent_trials:
            return self.max_concurrent_trials
        limits = [capacity["CPU"] / (self.num_workers * self.cpus_per_worker)]
        if self.use_gpu and self.gpus_per_worker > 0:
            if capacity["GPU"] == 0:
                print("warning: no GPU in the cluster yet (autoscaling?): running one trial at a time; "
                      "set --max-concurrent-trials to the GPUs the cluster can grow to")
            limits.append(capacity["GPU"] / (self.num_workers * self.gpus_per_worker))
        return max(1, int(math.floor(min(limits) + 1e-9)))


def make_spec(train: dict, resources: Resources, **label) -> dict:
    return {"train": train, **resources.spec_fields(), "label": label, "fault_injection": None}


def grid_trials(base: dict, losses: list[str], grids: dict, lrs: list[float], seeds: int, resources: Resources) -> list[dict]:
    """Cartesian grid per loss: its parameter grid (``grids[loss]``, lists per parameter; the key
    ``logit_bias`` is the training-time bias, not a loss parameter) × learning rates × seeds."""
    trials = []
    for loss in losses:
        grid = dict(grids.get(loss) or {})
        biases = grid.pop("logit_bias", [base.get("logit_bias", 0.0)])
        names = sorted(grid)
        for values in itertools.product(*(grid[n] for n in names)):
            params = dict(zip(names, values))
            for bias, lr, seed in itertools.product(biases, lrs, range(seeds)):
                train = {**base, "loss": loss, "loss_params": params, "logit_bias": float(bias), "lr": float(lr), "seed": seed}
                trials.append(make_spec(train, resources, loss=loss, params=params, logit_bias=float(bias), lr=float(lr), seed=seed))
    return trials


def calibrate_losses(losses: list[str], num_classes: int, dataset: str, c: float | None = None,
                     reference_classes: int | None = None) -> dict:
    """The analytic step: ε (Eq. 4) for MAE*, calibrated hyperparameters (Sec. 3.3) for the others,
    from the reference setting at ``reference_classes`` (None: the recipes' default, K_ref = 100).
    Returns ``{loss: {"params", "logit_bias", "target", "achieved", "residual", "seconds", ...}}``."""
    from robustloss_core import theory

    out = {}
    for loss in losses:
        t0 = time.perf_counter()
        cal = theory.default_calibration(loss, num_classes, dataset=dataset, reference_classes=reference_classes,
                                         **({"c": c} if c is not None else {}))
        seconds = time.perf_counter() - t0
        row = cal.to_dict() if hasattr(cal, "to_dict") else dict(cal)
        params = dict(row.get("params") or {})
        bias = float(params.pop("logit_bias", 0.0))
        row.update(params=params, logit_bias=bias, seconds=seconds, loss=loss)
        out[loss] = row
    return out


def analytic_trials(base: dict, calibration: dict, lr_for, seeds: int, resources: Resources) -> list[dict]:
    """One trial per loss and seed with the computed parameters (no search); a relative logit-bias
    schedule in ``base`` (``--bias-schedule weaning``) applies to the trials with ε > 0."""
    trials = []
    for loss, cal in calibration.items():
        lr = float(lr_for(loss, cal["logit_bias"] > 0))
        for seed in range(seeds):
            train = {**base, "loss": loss, "loss_params": cal["params"], "logit_bias": cal["logit_bias"],
                     "lr": lr, "seed": seed}
            trials.append(make_spec(train, resources, loss=loss, params=cal["params"], logit_bias=cal["logit_bias"], lr=lr, seed=seed))
    return trials


class OptunaSpace:
    """Define-by-run Optuna space over the same ranges as the grid: loss (categorical), log-uniform
    learning rate over the grid's span, each parameter uniform over its grid's span (categorical if
    the grid has one value or non-numeric values). A class, not a closure: Tune pickles the searcher
    into the experiment state so a killed sweep can resume."""

    def __init__(self, losses: list[str], grids: dict, lrs: list[float]):
        self.losses, self.grids, self.lrs = list(losses), grids, list(lrs)

    def __call__(self, trial):
        loss = trial.suggest_categorical("loss", self.losses)
        trial.suggest_float("lr", min(self.lrs), max(self.lrs), log=True)
        for name, values in (self.grids.get(loss) or {}).items():
            numeric = all(isinstance(v, (int, float)) for v in values)
            if numeric and len(set(values)) > 1:
                trial.suggest_float(name, float(min(values)), float(max(values)))
            else:
                trial.suggest_categorical(name, list(values))
        return None


@dataclass
class SweepResult:
    name: str
    rows: list[dict]
    wall_seconds: float
    location: str
    extra: dict = field(default_factory=dict)


def run_row(spec: dict, metrics: dict | None, error) -> dict:
    """One ``summary.json`` row: a trial spec's label, its last reported metrics, its status."""
    label, m = spec["label"], metrics or {}
    epochs_total = spec["train"].get("epochs")
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
    return {
        "loss": label["loss"], "params": label["params"], "logit_bias": label["logit_bias"],
        "lr": label["lr"], "seed": label["seed"],
        "test_top1": m.get("test_top1"), "test_top5": m.get("test_top5"),
        "compute_seconds": m.get("worker_seconds", 0.0), "gpu_seconds": m.get("gpu_seconds", 0.0),
        "trial_seconds": m.get("trial_seconds", 0.0), "epochs": epoch,
        "num_workers": spec["num_workers"], "gpus": trial_gpus(spec),
        "status": status, "error": message, "trial_id": m.get("trial_id"), "node_id": m.get("node_id"),
    }


def run_sweep(storage: st.Storage, name: str, trials: list[dict], *, resources: Resources, resume: bool = False,
              search: str = "grid", search_space=None, num_samples: int | None = None, epochs: int = 1,
              record: dict | None = None, verbose: int = 1) -> SweepResult:
    """Run (or ``resume``) the Tune experiment ``<storage>/<name>`` over ``trials``.

    ``search="grid"``: every spec is one trial (``tune.grid_search`` over the specs).
    ``search="optuna"``: Optuna TPE samples ``num_samples`` configurations from ``search_space`` (keys
    applied over ``trials[0]``), ASHA stops the weak ones early on ``test_top1``.
    """
    from ray import tune

    from services.cluster import cluster_capacity

    # Tune's compact progress table (the legacy reporter: one status table every 30 s with the
    # columns below) instead of the new output's per-trial config and result dumps.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # Every epoch is checkpointed (a retried or resumed trial repeats no epoch) and only the last two
    # are kept, which makes Tune snapshot its state often; that is cheap here, so no warning about it.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

    exp_path = storage.path(name)
    wall0 = time.time()
    prior_wall = 0.0
    if storage.exists(name, st.EXPERIMENT_RECORD):
        prior_wall = float(storage.read_json(name, st.EXPERIMENT_RECORD).get("wall_seconds", 0.0))
    if record is not None and not resume:
        storage.write_json({**record, "name": name, "started": wall0, "wall_seconds": 0.0}, name, st.EXPERIMENT_RECORD, overwrite=False)

    base = trials[0]
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, spec=base, storage=storage, experiment=name), resources.trial_resources()
    )
    if resume and not salvage.state_readable(storage, name) and (
            storage.exists(name, "tuner.pkl") or storage.exists(name, salvage.SALVAGED)):
        # Tune's experiment state was cut short (a kill during its in-place write), or an earlier rebuild
        # found every trial finished and started no Tune run: rebuild from the trials' own folders
        if search != "grid":
            raise ExperimentExistsError(f"--resume: Tune's experiment state {salvage.newest_state(storage, name)} at "
                                        f"{storage.display(name)} is unreadable (truncated by a kill); only grid "
                                        f"sweeps can be rebuilt from their trials: start again under a new --name")
        done, trials, aside = salvage.prepare(storage, name, trials)
        print(f"--resume: Tune's experiment state is unreadable (set aside: {', '.join(aside)}); rebuilt from the "
              f"trial folders: {len(done)} trial(s) finished, {len(trials)} to run "
              f"({sum(1 for t in trials if t.get('resume_from'))} from their last checkpoint)", flush=True)
        resume = False
        if not trials:
            return SweepResult(name=name, rows=done, wall_seconds=prior_wall, location=storage.display(name))
    if resume:
        if not tune.Tuner.can_restore(exp_path, storage_filesystem=storage.fs):
            raise ExperimentExistsError(f"--resume: no restorable Tune experiment at {storage.display(name)}")
        tuner = tune.Tuner.restore(exp_path, trainable, resume_unfinished=True, resume_errored=False,
                                   storage_filesystem=storage.fs)
    else:
        run_config = tune.RunConfig(
            name=name, storage_path=storage.root, storage_filesystem=storage.fs,
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=verbose, progress_reporter=progress_reporter(search),
        )
        concurrency = resources.concurrency(cluster_capacity())
        if search == "optuna":
            from ray.tune.schedulers import ASHAScheduler
            from ray.tune.search.optuna import OptunaSearch

            tune_config = tune.TuneConfig(
                metric="test_top1", mode="max", num_samples=num_samples or len(trials),
                search_alg=OptunaSearch(space=search_space, metric="test_top1", mode="max", seed=base["train"].get("seed", 0)),
                scheduler=ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=max(1, epochs // 4), reduction_factor=3),
                max_concurrent_trials=concurrency, trial_dirname_creator=_trial_dirname,
            )
            param_space = {}
        else:
            tune_config = tune.TuneConfig(max_concurrent_trials=concurrency, trial_dirname_creator=_trial_dirname)
            param_space = {"trial": tune.grid_search(trials)}
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
    grid = tuner.fit()
    rows = salvage.salvaged_rows(storage, name)   # trials finished before a rebuild, if there was one
    for r in grid:
        if not r.config:  # a trial whose actor never started has no config to label it with
            print(f"warning: a trial never started: {str(r.error).strip().splitlines()[-1] if r.error else 'unknown'}")
            continue
        rows.append(run_row(resolve_trial_spec(r.config, base), r.metrics, r.error))
    wall = prior_wall + time.time() - wall0
    if storage.exists(name, st.EXPERIMENT_RECORD):
        rec = storage.read_json(name, st.EXPERIMENT_RECORD)
        storage.write_json({**rec, "wall_seconds": wall, "finished": time.time()}, name, st.EXPERIMENT_RECORD)
    return SweepResult(name=name, rows=rows, wall_seconds=wall, location=storage.display(name))


def progress_reporter(search: str):
    """Tune's status table: loss, its parameters, ε, lr, seed and the latest epoch's metrics."""
    from ray.tune import CLIReporter

    if search == "grid":
        params = {f"trial/label/{k}": k for k in ("loss", "params", "logit_bias", "lr", "seed")}
    else:
        params = ["loss", "lr"]
    return CLIReporter(parameter_columns=params, max_report_frequency=30, max_column_length=24,
                       metric_columns={"epoch": "epoch", "train_loss": "train loss", "test_top1": "top1",
                                       "trial_seconds": "seconds"})


def _trial_dirname(trial) -> str:
    """Readable, unique trial folder names: ``<loss>_lr<lr>_s<seed>_<trial id>``."""
    cfg = trial.config
    label = cfg["trial"]["label"] if "trial" in cfg else {"loss": cfg.get("loss", "x"), "lr": cfg.get("lr", 0), "seed": cfg.get("seed", 0)}
    return f"{label['loss']}_lr{label['lr']:.3g}_s{label['seed']}_{trial.trial_id}"


def write_summary(storage: st.Storage, result: SweepResult, **extra) -> dict:
    """``summary.json`` (= ``--json-out`` payload) into the experiment folder."""
    summary = {"experiment": result.name, "location": result.location, "wall_seconds": result.wall_seconds,
               "runs": result.rows, **extra}
    storage.write_json(summary, result.name, st.SUMMARY)
    return summary
