"""Ray Tune sweeps: the baseline grid (or Optuna TPE + ASHA) and the paper's analytic mode.

A sweep is a list of ``TrialSpec`` (flat hyperparameters over one ``Fixed``) run by one ``tune.Tuner``
whose experiment folder is ``<storage>/<name>/``. Tune sees the real hyperparameters: every trial's
``config`` is its flat dict (``loss``, ``lr``, ``seed``, ``logit_bias``, ``q``…), so
``ExperimentAnalysis(path).dataframe()`` has ``config/lr``, ``config/q``… columns, ``get_best_config()``
returns them, TensorBoard HParams show the ones that vary, and trial folders are named after them.

* grid / analytic: ``TrialListSearcher`` hands Tune the given list, one config per trial (a per-loss
  grid is not a Cartesian product over all keys, so ``tune.grid_search`` per key cannot express it);
* optuna: ``OptunaSearch`` (TPE) over ``OptunaSpace`` with ASHA; its study persists in
  ``<storage>/<name>/optuna.journal`` (or ``--optuna-storage``), so a resumed search continues it.

Many short trials: grid and analytic sweeps reuse trial actors (``reuse_actors=True``), so a worker process pays imports,
torch's lazy start-up and the dataset (cached per process) once and then runs trial after trial; trials
checkpoint by ``Resources.checkpoint_due`` (the last epoch, every N epochs or M seconds, and ASHA's
rungs for Optuna), not after every epoch. ``benchmarks/sweep_overhead.py`` measures what is left.

The folder is the single source of truth: Tune's files, ``robustloss.json`` (what was asked),
``summary.json`` / ``summary.csv`` (one row per trial), and the trials' checkpoints, from which
``--resume`` rebuilds (``services.salvage``).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import pickle
import time
from dataclasses import dataclass, field

from services import _private_api as private
from services import salvage, timeline
from services import storage as st
from services.results import ROW_METRICS, SUMMARY_COLUMNS, flat_rows, run_row, to_csv
from services.spec import Fixed, Resources, TrialSpec, varied_keys
from services.trainer import run_trial

__all__ = ["ExperimentExistsError", "Resources", "grid_hparams", "calibrate_losses", "OptunaSpace",
           "SweepResult", "run_row", "run_sweep", "write_summary", "SUMMARY_COLUMNS"]

OPTUNA_JOURNAL = "optuna.journal"


class ExperimentExistsError(ValueError):
    """An experiment name already used in the storage, without ``--resume``."""


# ----------------------------------------------------------------------------- trial lists
def grid_hparams(losses: list[str], grids: dict, lrs: list[float], seeds: int, logit_bias: float = 0.0) -> list[dict]:
    """Per loss: its parameter grid (``grids[loss]``: lists per parameter; the key ``logit_bias`` is the
    training-time bias, not a loss parameter) × learning rates × seeds, as flat hyperparameter dicts."""
    out = []
    for loss in losses:
        grid = dict(grids.get(loss) or {})
        biases = grid.pop("logit_bias", [logit_bias])
        names = sorted(grid)
        for values in itertools.product(*(grid[n] for n in names)):
            for bias, lr, seed in itertools.product(biases, lrs, range(seeds)):
                out.append({"loss": loss, "lr": float(lr), "seed": seed, "logit_bias": float(bias),
                            **dict(zip(names, values))})
    return out


def calibrate_losses(losses: list[str], num_classes: int, dataset: str, c: float | None = None,
                     reference_classes: int | None = None, sigma: float = 1.0) -> dict:
    """The analytic step: ε (Eq. 4) for MAE*, calibrated hyperparameters (Sec. 3.3) for the others,
    from the reference setting at ``reference_classes`` (None: each recipe's own reference).
    Returns ``{loss: {"params", "logit_bias", "target", "achieved", "residual", "seconds", ...}}``."""
    from robustloss_core import theory

    out = {}
    for loss in losses:
        t0 = time.perf_counter()
        cal = theory.default_calibration(loss, num_classes, dataset=dataset, reference_classes=reference_classes,
                                         sigma=sigma, **({"c": c} if c is not None else {}))
        seconds = time.perf_counter() - t0
        row = cal.to_dict() if hasattr(cal, "to_dict") else dict(cal)
        params = dict(row.get("params") or {})
        bias = float(params.pop("logit_bias", 0.0))
        row.update(params=params, logit_bias=bias, seconds=seconds, loss=loss)
        out[loss] = row
    return out


class OptunaSpace:
    """Define-by-run Optuna space over the same ranges as the grid: loss (categorical), log-uniform
    learning rate over the grid's span, each parameter uniform over its grid's span (categorical if
    the grid has one value or non-numeric values); ``logit_bias`` is searched like a loss parameter.
    A class, not a closure: it is pickled with the searcher."""

    def __init__(self, losses: list[str], grids: dict, lrs: list[float]):
        self.losses, self.grids, self.lrs = list(losses), grids, list(lrs)

    def keys(self) -> list[str]:
        """Every hyperparameter a trial of this space can have: loss, lr and each loss's own."""
        return sorted({"loss", "lr"} | {k for loss in self.losses for k in (self.grids.get(loss) or {})})

    def __call__(self, trial):
        loss = trial.suggest_categorical("loss", self.losses)
        trial.suggest_float("lr", min(self.lrs), max(self.lrs), log=True)
        for name, values in sorted((self.grids.get(loss) or {}).items()):
            numeric = all(isinstance(v, (int, float)) for v in values)
            if numeric and len(set(values)) > 1:
                trial.suggest_float(name, float(min(values)), float(max(values)))
            else:
                trial.suggest_categorical(name, list(values))
        return None


def _trial_list_searcher(hparams: list[dict]):
    """A Tune ``Searcher`` that suggests ``hparams`` in order, one per trial, then FINISHED."""
    from ray.tune.search import Searcher

    class TrialListSearcher(Searcher):
        def __init__(self, configs):
            super().__init__()
            self.configs, self.next = list(configs), 0

        def suggest(self, trial_id):
            if self.next >= len(self.configs):
                return Searcher.FINISHED
            self.next += 1
            return dict(self.configs[self.next - 1])

        def on_trial_complete(self, trial_id, result=None, error=False):
            pass

        def save(self, checkpoint_path):
            with open(checkpoint_path, "wb") as f:
                pickle.dump({"configs": self.configs, "next": self.next}, f)

        def restore(self, checkpoint_path):
            with open(checkpoint_path, "rb") as f:
                self.__dict__.update(pickle.load(f))

    return TrialListSearcher(hparams)


def _optuna_searcher(space, study_name: str, storage_url, seed: int, epochs: int, metric: str):
    """``OptunaSearch`` on a persistent study; a trial ASHA stopped before its last epoch is told to
    Optuna as PRUNED (not COMPLETE), one that raised as FAIL (``_private_api.persistent_optuna_search``)."""
    return private.persistent_optuna_search(space, metric=metric, seed=seed, study_name=study_name,
                                            storage=storage_url, epochs=epochs)


ASHA_REDUCTION = 3


def asha_grace(epochs: int) -> int:
    return max(1, epochs // 4)


def asha_rungs(epochs: int) -> tuple[int, ...]:
    """The epochs at which ASHA (grace ``asha_grace``, reduction 3, max ``epochs``) may stop a trial:
    Optuna trials checkpoint there too, so a stopped trial's result survives a driver kill."""
    g = asha_grace(epochs)
    n = int(math.log(epochs / g) / math.log(ASHA_REDUCTION) + 1) if epochs > g else 0
    return tuple(g * ASHA_REDUCTION ** k for k in range(n) if g * ASHA_REDUCTION ** k < epochs)


def selection_metric(train: dict) -> str:
    """What Optuna and ASHA optimise: noisy-validation top-1 (test top-1 only without a validation split)."""
    return "val_top1" if float(train.get("val_fraction", 0.0) or 0.0) > 0 else "test_top1"


def optuna_storage(storage: st.Storage, name: str, url: str | None):
    """The Optuna storage of experiment ``name``: ``url`` (a database) if given, else a journal file
    ``<storage>/<name>/optuna.journal`` (local or NFS storage only)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if url:
        return optuna.storages.RDBStorage(url) if "://" in url and not url.startswith("file://") else url
    if not storage.is_local:
        raise st.StorageError(f"--search optuna on {storage.display()} needs --optuna-storage URL (a database): "
                              f"Optuna's journal file needs a local or NFS --storage-path")
    path = storage.path(name, OPTUNA_JOURNAL)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return JournalStorage(JournalFileBackend(path))


# ----------------------------------------------------------------------------- results
@dataclass
class SweepResult:
    name: str
    rows: list[dict]
    wall_seconds: float
    location: str
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- the Tune run
def _callbacks(kinds: list[str], varied: list[str], name: str, storage: st.Storage) -> list:
    """Tune logger callbacks: TensorBoard (HParams restricted to what varies), plus ``mlflow``/``wandb``."""
    out = [private.varied_hparams_tbx(varied)]
    for kind in kinds:
        out.append(TRACKERS[kind](name, storage))
    return out


def _mlflow(name: str, storage: st.Storage):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    # MLflow 3 keeps its local store in SQLite (its ./mlruns file store is in maintenance mode)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (
        "sqlite:///" + storage.path(name, "mlflow.db") if storage.is_local else None)
    return MLflowLoggerCallback(tracking_uri=uri, experiment_name=name, save_artifact=False)


def _wandb(name: str, storage: st.Storage):
    from ray.air.integrations.wandb import WandbLoggerCallback

    return WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT", "robustloss"), group=name,
                               dir=storage.path(name) if storage.is_local else None)


TRACKERS = {"mlflow": _mlflow, "wandb": _wandb}


def _trial_clock():
    """A driver callback timing each trial from its scheduling (actor start) to its end."""
    from ray.tune import Callback

    class TrialClock(Callback):
        def __init__(self):
            self.start, self.end = {}, {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.start.setdefault(trial.trial_id, time.time())

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.end[trial.trial_id] = time.time()

        on_trial_error = on_trial_complete

        def span(self, trial_id) -> tuple[float, float] | None:
            if trial_id in self.start and trial_id in self.end:
                return self.start[trial_id], self.end[trial_id]
            return None

    return TrialClock()


def _trial_dirname_creator(varied: list[str], fixed: Fixed):
    """Names a trial's folder, and its row in Tune's table, by its hyperparameters (not ``run_trial_<id>``)."""

    def name(trial) -> str:
        """``<loss>_<varied loss params>_[eps<ε>]_lr<lr>_s<seed>_<trial id>``."""
        return f"{TrialSpec.from_hparams(fixed, trial.config).dirname(varied)}_{trial.trial_id}"

    return name


def progress_reporter(varied: list[str], location: str | None = None):
    """Tune's status table: the searched hyperparameters and the latest epoch's metrics. Its
    "Result logdir:" line names ``location`` (the experiment in the storage), not the driver's staging
    folder under Ray's temporary directory that Tune would print."""
    params = ["loss"] + [k for k in varied if k != "loss"] + [k for k in ("lr",) if k not in varied]
    return private.storage_reporter(params, location, max_report_frequency=30, max_column_length=24,
                                    metric_columns={"epoch": "epoch", "train_loss": "train loss", "val_top1": "val",
                                                    "test_top1": "test", "trial_seconds": "seconds"})


def run_sweep(storage: st.Storage, name: str, fixed: Fixed, hparams: list[dict], *, resume: bool = False,
              search: str = "grid", search_space=None, num_samples: int | None = None, record: dict | None = None,
              verbose: int = 1, callbacks: list[str] = (), optuna_url: str | None = None,
              extras: dict | None = None) -> SweepResult:
    """Run (or ``resume``) the Tune experiment ``<storage>/<name>``.

    ``search="grid"``: every dict in ``hparams`` is one trial.
    ``search="optuna"``: Optuna TPE samples ``num_samples`` configurations from ``search_space``, ASHA
    stops weak trials early on noisy-validation top-1; the study persists (``optuna_storage``).
    ``extras``: {TrialSpec.key: {"fault_injection"|"resume_from": ...}} per-trial settings that do not change
    what a trial computes (``spec.EXTRA_KEYS``); what does (a pilot's epochs) is in ``fixed.train``.
    """
    resources = fixed.resources
    if search == "optuna":   # ASHA may stop a trial at any rung: checkpoint there as well
        resources = dataclasses.replace(resources, checkpoint_epochs=asha_rungs(int(fixed.train["epochs"])))
    fixed = dataclasses.replace(fixed, resources=resources, experiment=name, extras=dict(extras or {}))
    specs = [TrialSpec.from_hparams(fixed, hp) for hp in hparams]
    varied = varied_keys(specs) if search == "grid" else search_space.keys()
    wall0 = time.time()
    prior_wall = 0.0
    if storage.exists(name, st.EXPERIMENT_RECORD):
        prior_wall = float(storage.read_json(name, st.EXPERIMENT_RECORD).get("wall_seconds", 0.0))
    if record is not None and not resume:
        storage.write_json({**record, "name": name, "started": wall0, "wall_seconds": 0.0}, name,
                           st.EXPERIMENT_RECORD, overwrite=False)

    done: list[dict] = []
    epochs = int(fixed.train["epochs"])
    if search == "optuna":
        study_storage = optuna_storage(storage, name, optuna_url)
        total = num_samples or len(specs)
        told, enqueue, done = _optuna_resume(storage, name, fixed, study_storage, epochs) if resume else (0, [], [])
        todo_count = max(0, total - len(done))   # the interrupted trials run again among these
        for spec in enqueue:
            if spec.resume_from:
                fixed.extras.setdefault(spec.key, {})["resume_from"] = spec.resume_from
    else:
        if resume:
            done, specs, _ = salvage.plan(storage, name, specs)
            print(f"--resume: {len(done)} trial(s) finished and kept, {len(specs)} to run "
                  f"({sum(1 for s in specs if s.resume_from)} from their last checkpoint)", flush=True)
            for s in specs:
                if s.resume_from:
                    fixed.extras.setdefault(s.key, {})["resume_from"] = s.resume_from
        todo_count = len(specs)

    rows = list(done)
    if todo_count:
        # Tune's compact progress table (the legacy reporter) instead of per-trial config dumps. What the
        # run sets in the environment (these, and what Tune's tracker callbacks set, e.g.
        # MLFLOW_TRACKING_URI) is put back afterwards: a notebook's process is not changed behind its back.
        saved_env = dict(os.environ)
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        try:
            rows += _fit(storage, name, fixed, specs, search=search, search_space=search_space, todo_count=todo_count,
                         epochs=epochs, varied=varied, verbose=verbose, callbacks=list(callbacks),
                         study_storage=study_storage if search == "optuna" else None,
                         sampler_offset=told if search == "optuna" else 0)
        finally:
            for k in set(os.environ) - set(saved_env):
                del os.environ[k]
            os.environ.update(saved_env)
    wall = prior_wall + time.time() - wall0
    if storage.exists(name, st.EXPERIMENT_RECORD):
        rec = storage.read_json(name, st.EXPERIMENT_RECORD)
        storage.write_json({**rec, "wall_seconds": wall, "finished": time.time()}, name, st.EXPERIMENT_RECORD)
    return SweepResult(name=name, rows=rows, wall_seconds=wall, location=storage.display(name))


class _InterruptNote(logging.Filter):
    """Sees Tune's "Experiment has been interrupted" warning (Tune handles SIGINT itself and returns from
    ``fit``) and drops it: its advice, ``Tuner.restore(...)``, is not how a robustloss sweep resumes."""

    seen = False

    def filter(self, record) -> bool:
        if "has been interrupted" in record.getMessage():
            self.seen = True
            return False
        return True


def _named_trainable(fixed: Fixed, storage: st.Storage, varied: list[str]):
    """``run_trial`` as a Tune function trainable whose actor names its trial: the dashboard's Actors
    view shows each trial's ``repr`` — loss, varied parameters, ε, lr, seed — instead of ``run_trial``."""
    from ray import tune

    base = private.function_trainable(tune.with_parameters(run_trial, fixed=fixed, storage=storage))

    class RobustlossTrial(base):
        def setup(self, config):
            self._name = TrialSpec.from_hparams(fixed, config).dirname(varied)
            super().setup(config)

        def reset_config(self, new_config):   # a reused actor (TuneConfig(reuse_actors=True)) takes its next trial
            self._name = TrialSpec.from_hparams(fixed, new_config).dirname(varied)
            return super().reset_config(new_config)

    return RobustlossTrial


def _fit(storage, name, fixed: Fixed, specs, *, search, search_space, todo_count, epochs, varied, verbose, callbacks,
         study_storage, sampler_offset: int = 0) -> list[dict]:
    from ray import tune

    from services.cluster import cluster_capacity

    trainable = tune.with_resources(_named_trainable(fixed, storage, varied), fixed.resources.trial_resources())
    concurrency = fixed.resources.concurrency(cluster_capacity())
    if search == "optuna":
        from ray.tune.schedulers import ASHAScheduler

        metric = selection_metric(fixed.train)
        # a resumed study gets a sampler seeded past its earlier draws: the same seed would replay the first run's
        # random start-up suggestions, i.e. run finished configurations again
        search_alg = _optuna_searcher(search_space, name, study_storage, int(fixed.train.get("seed", 0)) + sampler_offset,
                                      epochs, metric)
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=asha_grace(epochs),
                                  reduction_factor=ASHA_REDUCTION)
        tune_config = tune.TuneConfig(metric=metric, mode="max", num_samples=todo_count, search_alg=search_alg,
                                      scheduler=scheduler, max_concurrent_trials=concurrency,
                                      trial_dirname_creator=_trial_dirname_creator(varied, fixed),
                                      trial_name_creator=_trial_dirname_creator(varied, fixed))
    else:
        tune_config = tune.TuneConfig(num_samples=len(specs), search_alg=_trial_list_searcher([s.hparams for s in specs]),
                                      max_concurrent_trials=concurrency, reuse_actors=True,
                                      trial_dirname_creator=_trial_dirname_creator(varied, fixed),
                                      trial_name_creator=_trial_dirname_creator(varied, fixed))
    clock = _trial_clock()
    run_config = tune.RunConfig(
        name=name, storage_path=storage.root, storage_filesystem=storage.fs,
        failure_config=tune.FailureConfig(max_failures=fixed.resources.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=verbose, progress_reporter=progress_reporter(varied, storage.display(name)),
        callbacks=_callbacks(callbacks, varied, name, storage) + [clock],
    )
    interrupted = _InterruptNote()
    tune_logger = logging.getLogger("ray.tune.tune")
    tune_logger.addFilter(interrupted)
    timeline.mark("fit_start")
    try:
        with private.light_callback_telemetry():
            results = tune.Tuner(trainable, param_space={}, tune_config=tune_config, run_config=run_config).fit()
    finally:
        tune_logger.removeFilter(interrupted)
        timeline.mark("fit_end")
    if interrupted.seen:   # Tune took the Ctrl-C, saved its state and returned: stop here (app prints --resume)
        raise KeyboardInterrupt
    rows = []
    for r in results:
        if not r.config:  # a trial whose actor never started has no config to label it with
            print(f"warning: a trial never started: {str(r.error).strip().splitlines()[-1] if r.error else 'unknown'}")
            continue
        trial_id = (r.metrics or {}).get("trial_id")
        rows.append(run_row(TrialSpec.from_hparams(fixed, r.config), r.metrics, r.error, span=clock.span(trial_id)))
    return rows


def _optuna_resume(storage, name, fixed: Fixed, study_storage, epochs):
    """Resume an Optuna search: its finished trials (COMPLETE, PRUNED, FAIL in the study) keep their rows
    (rebuilt from their checkpoints); trials the kill left RUNNING are marked FAIL in the study and
    enqueued again with the same parameters, each continuing from its newest checkpoint."""
    import dataclasses

    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=study_storage)
    except KeyError:
        return 0, [], []
    found = salvage.scan(storage, name)
    done, enqueue = [], []
    for t in study.get_trials(deepcopy=False):
        spec = TrialSpec.from_hparams(fixed, dict(t.params))
        hit = found.get(spec.key)
        if t.state == optuna.trial.TrialState.RUNNING or t.state == optuna.trial.TrialState.WAITING:
            if t.state == optuna.trial.TrialState.RUNNING:
                private.fail_trial(study, t)
            study.enqueue_trial(dict(t.params), skip_if_exists=False)
            enqueue.append(dataclasses.replace(spec, resume_from=hit["checkpoint"]) if hit else spec)
            continue
        if hit is None:
            done.append(run_row(spec, {}, RuntimeError("no checkpoint")) if t.state == optuna.trial.TrialState.FAIL
                        else run_row(spec, {"epoch": 0}, None))
            continue
        failed = RuntimeError("failed") if t.state == optuna.trial.TrialState.FAIL else None
        done.append(salvage.checkpoint_row(spec, hit["content"], failed))   # PRUNED ones stop before the last epoch
    print(f"--resume: Optuna study {name!r} has {len(done)} finished trial(s); {len(enqueue)} interrupted one(s) "
          f"enqueued again", flush=True)
    return len(study.get_trials(deepcopy=False)), enqueue, done   # trials the study holds (the sampler offset)


def write_summary(storage: st.Storage, result: SweepResult, **extra) -> dict:
    """``summary.json`` (= ``--json-out`` payload) and ``summary.csv`` into the experiment folder; its rows are
    every trial of the experiment's folder, finished rows never dropped (``services.resume.all_rows``)."""
    from services.resume import all_rows

    result.rows = all_rows(storage, result.name, result.rows)
    summary = {"experiment": result.name, "location": result.location, "wall_seconds": result.wall_seconds,
               "runs": result.rows, "timings": timeline.marks(), "driver_peak_rss_mb": timeline.peak_rss_mb(), **extra}
    storage.write_json(summary, result.name, st.SUMMARY)
    storage.write_bytes(to_csv(result.rows).encode(), result.name, "summary.csv")
    return summary
