"""Ray Tune sweeps: the baseline grid (or another search of ``services.search``) and the paper's analytic mode.

A sweep is a list of ``TrialSpec`` (flat hyperparameters over one ``Fixed``) run by one ``tune.Tuner``
whose experiment folder is ``<storage>/<name>/``. Tune sees the real hyperparameters: every trial's
``config`` is its flat dict (``loss``, ``lr``, ``seed``, ``logit_bias``, ``q``…), so
``ExperimentAnalysis(path).dataframe()`` has ``config/lr``, ``config/q``… columns, ``get_best_config()``
returns them, TensorBoard HParams show the ones that vary, and trial folders are named after them.

* grid / analytic: ``TrialListSearcher`` hands Tune the given list, one config per trial (a per-loss
  grid is not a Cartesian product over all keys, so ``tune.grid_search`` per key cannot express it);
* optuna / random: ``OptunaSearch`` (TPE or random sampling) over ``OptunaSpace``; its study persists in
  ``<storage>/<name>/optuna.journal`` (or ``--optuna-storage``), so a resumed search continues it.
  Any search may run under a scheduler (``--scheduler asha``). ``services.search`` holds both registries.

Many short trials: grid and analytic sweeps reuse trial actors (``reuse_actors=True``), so a worker process pays imports,
torch's lazy start-up and the dataset (cached per process) once and then runs trial after trial; trials
checkpoint by ``Resources.checkpoint_due`` (the last epoch, every N epochs or M seconds, and ASHA's
rungs under ASHA), not after every epoch. ``benchmarks/sweep_overhead.py`` measures what is left.

The folder is the single source of truth: Tune's files, ``robustloss.json`` (what was asked),
``summary.json`` / ``summary.csv`` (one row per trial), and the trials' checkpoints, from which
``--resume`` rebuilds (``services.salvage``).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field

from services import _private_api as private
from services import search as search_mod
from services import checkpoint as ckpt
from services import progress, salvage, timeline
from services import storage as st
from services.request import RequestError
from services.resolve import calibrate_losses, grid_hparams  # noqa: F401 (re-exported)
from services.results import SUMMARY_COLUMNS, flat_rows, run_row, to_csv  # noqa: F401 (re-exported)
from services.spec import Fixed, Resources, TrialSpec
from services.trainer import run_trial

__all__ = ["ExperimentExistsError", "Resources", "grid_hparams", "calibrate_losses", "SweepResult", "run_row",
           "run_sweep", "write_summary", "SUMMARY_COLUMNS", "flat_rows"]


class ExperimentExistsError(RequestError):
    """An experiment name already used in the storage, without ``--resume``."""


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
    """Names a trial's row in Tune's table by its hyperparameters (not ``run_trial_<id>``): every parameter
    of its loss (varied or not; an analytic trial's computed ones too), ε (where not 0 or varied), lr, seed
    (``TrialSpec.dirname``)."""

    def name(trial) -> str:
        """``<loss>_<every loss param>_[eps<ε>]_lr<lr>_s<seed>_<trial id>``, e.g. ``gce_q0.7_lr0.1_s0_8f2a1_00003``."""
        return f"{TrialSpec.from_hparams(fixed, trial.config).dirname(varied)}_{trial.trial_id}"

    return name


def _trial_folder_creator(varied: list[str], fixed: Fixed):
    """Names a trial's folder by its hyperparameters — every parameter of its loss (varied or not; an analytic
    trial's computed ones too), ε (where not 0 or varied), lr, seed (``TrialSpec.dirname``) — and its spec key,
    which a resumed run gives the same trial again (Tune's trial id is new each run): the trial continues in
    its folder (``services.salvage``). A second trial of the same key in one run (a searcher's repeated
    sample) gets its trial id as well."""
    used: dict[str, str] = {}

    def name(trial) -> str:
        """``<loss>_<every loss param>_[eps<ε>]_lr<lr>_s<seed>_<key[:8]>``, e.g. ``gce_q0.2611_lr0.1_s0_3f9c0d1e``."""
        spec = TrialSpec.from_hparams(fixed, trial.config)
        folder = f"{spec.dirname(varied)}_{spec.key[:8]}"
        if used.setdefault(folder, trial.trial_id) != trial.trial_id:
            folder = f"{folder}_{trial.trial_id}"
        return folder

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
              search: str = "grid", scheduler: str = "auto", search_space=None, num_samples: int | None = None,
              record: dict | None = None, verbose: int = 1, callbacks: list[str] = (), optuna_url: str | None = None,
              extras: dict | None = None) -> SweepResult:
    """Run (or ``resume``) the Tune experiment ``<storage>/<name>``.

    ``search`` (``services.search.STRATEGIES``): ``grid`` runs every dict in ``hparams`` as one trial; ``optuna``
    and ``random`` sample ``num_samples`` configurations from ``search_space``. ``scheduler``
    (``services.search.SCHEDULERS``, ``auto``: the search's own) may stop trials early; they checkpoint at its rungs.
    ``extras``: {TrialSpec.key: {"fault_injection"|"resume_from": ...}} per-trial settings that do not change
    what a trial computes (``spec.EXTRA_KEYS``); what does (a pilot's epochs) is in ``fixed.train``.
    """
    strategy, sched = search_mod.STRATEGIES[search], search_mod.scheduler_of(search, scheduler)
    rungs = sched.rungs(int(fixed.train["epochs"]))
    resources = dataclasses.replace(fixed.resources, checkpoint_epochs=rungs) if rungs else fixed.resources
    fixed = dataclasses.replace(fixed, resources=resources, experiment=name, extras=dict(extras or {}))
    sweep = search_mod.Sweep(storage, name, fixed, [TrialSpec.from_hparams(fixed, hp) for hp in hparams],
                             space=search_space, num_samples=num_samples, optuna_url=optuna_url, scheduler=sched)
    varied = strategy.varied(sweep)
    wall0 = time.time()
    prior_wall = 0.0
    if storage.exists(name, st.EXPERIMENT_RECORD):
        prior_wall = float(storage.read_json(name, st.EXPERIMENT_RECORD).get("wall_seconds", 0.0))
    if record is not None and not resume:
        storage.write_json({**record, "name": name, "started": wall0, "wall_seconds": 0.0}, name,
                           st.EXPERIMENT_RECORD, overwrite=False)
    done, todo = strategy.plan(sweep, resume)
    rows = list(done)
    progress.begin(done, todo, sweep.epochs)
    if todo:
        # Tune's compact progress table (the legacy reporter) instead of per-trial config dumps. What the
        # run sets in the environment (these, and what Tune's tracker callbacks set, e.g.
        # MLFLOW_TRACKING_URI) is put back afterwards: a notebook's process is not changed behind its back.
        saved_env = dict(os.environ)
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        try:
            rows += _fit(sweep, strategy, todo, varied=varied, verbose=verbose, callbacks=list(callbacks))
        finally:
            for k in set(os.environ) - set(saved_env):
                del os.environ[k]
            os.environ.update(saved_env)
    wall = prior_wall + time.time() - wall0
    if storage.exists(name, st.EXPERIMENT_RECORD):
        rec = storage.read_json(name, st.EXPERIMENT_RECORD)
        storage.write_json({**rec, "wall_seconds": wall, "finished": time.time()}, name, st.EXPERIMENT_RECORD)
    return SweepResult(name=name, rows=rows, wall_seconds=wall, location=storage.display(name))


def _merge_states(storage: st.Storage, name: str) -> None:
    """Tune's newest experiment state lists every trial of the experiment (``salvage.merge_experiment_states``)."""
    try:
        salvage.merge_experiment_states(storage, name)
    except Exception as exc:   # a view for ExperimentAnalysis: never fails the sweep
        print(f"warning: could not merge Tune's experiment states of {storage.display(name)}: {exc}")


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
            _name_and_number(self, config)
            super().setup(config)

        def reset_config(self, new_config):   # a reused actor (TuneConfig(reuse_actors=True)) takes its next trial
            _name_and_number(self, new_config)
            return super().reset_config(new_config)

        def step(self):
            """Tune's ``training_iteration`` is the trial's epoch: a trial resumed in its folder goes on counting
            where it stopped (TensorBoard's steps, ASHA's rungs), not from 1 (``Trainable.train`` keeps it)."""
            result = super().step()
            if result.get("epoch") is not None:
                result["training_iteration"] = int(result["epoch"])
            return result

    def _name_and_number(trainable, config) -> None:
        """The actor is named after its trial; a trial resumed in its folder numbers its next checkpoint
        after the ones there (``salvage.next_checkpoint_index``)."""
        private.name_trial_actor(trainable, TrialSpec.from_hparams(fixed, config).dirname(varied))
        private.continue_checkpoint_numbering(trainable, salvage.next_checkpoint_index)

    return RobustlossTrial


def _tune_config(sweep: search_mod.Sweep, strategy, todo: int, varied: list[str]):
    from ray import tune

    from services.cluster import cluster_capacity

    fixed = sweep.fixed
    metric = ({"metric": search_mod.selection_metric(fixed.train), "mode": "max"}
              if strategy.samples or sweep.scheduler.uses_metric else {})
    return tune.TuneConfig(**strategy.tune_config(sweep, todo), **metric, scheduler=sweep.scheduler.tune(sweep.epochs),
                           max_concurrent_trials=fixed.resources.concurrency(cluster_capacity()),
                           trial_dirname_creator=_trial_folder_creator(varied, fixed),
                           trial_name_creator=_trial_dirname_creator(varied, fixed))


def _fit(sweep: search_mod.Sweep, strategy, todo: int, *, varied, verbose, callbacks) -> list[dict]:
    from ray import tune

    storage, name, fixed = sweep.storage, sweep.name, sweep.fixed
    trainable = tune.with_resources(_named_trainable(fixed, storage, varied), fixed.resources.trial_resources())
    tune_config = _tune_config(sweep, strategy, todo, varied)
    clock = _trial_clock()
    extra = [clock, salvage.in_place(), ckpt.pruner(storage, fixed.resources.keep_checkpoints), *progress.callbacks()]
    if sweep.scheduler.uses_metric:
        extra.append(search_mod.stop_recorder(storage, name, sweep.epochs,
                                              lambda config: TrialSpec.from_hparams(fixed, config).key))
    run_config = tune.RunConfig(
        name=name, storage_path=storage.root, storage_filesystem=storage.fs,
        failure_config=tune.FailureConfig(max_failures=fixed.resources.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=verbose, progress_reporter=progress_reporter(varied, storage.display(name)),
        callbacks=_callbacks(callbacks, varied, name, storage) + extra,
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
        _merge_states(storage, name)
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
