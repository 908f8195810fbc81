"""Every use of Ray Tune's and Optuna's private API in ``services``, fenced in one module.

Ray and Optuna may rename or change any of these in a minor release without notice. Each one is used
only here, was checked against the versions below, and has a test in ``tests/services/test_private_api.py``
that exercises it (not just looks it up), so an upgrade fails a test, not a sweep. After an upgrade:
run that file, fix what fails, then update the versions here.

Ray (``RAY_CHECKED``):
  * ``TBXLoggerCallback._try_log_hparams(trial, result)`` — :func:`varied_hparams_tbx`: TensorBoard's
    HParams restricted to the hyperparameters that vary (Tune logs every config key).
  * ``CLIReporter._progress_str(trials, done, *sys_info, ...)`` and ``CLIReporter._current_best_trial(trials)``
    — :func:`storage_reporter`: the status table's "Result logdir:" names the storage, and its "Current
    best trial" line does not raise KeyError for a parameter the best trial lacks.
  * ``ray.air._internal.usage._count_callbacks(callbacks)`` — :func:`light_callback_telemetry`.
  * ``ray.tune.trainable.function_trainable.wrap_function`` — :func:`function_trainable`: the class Tune
    makes of a function trainable, subclassed so a trial's actor is named after its hyperparameters.
  * ``ImplicitFunc._name`` (the class ``wrap_function`` returns: its ``__repr__``, the actor's name in the
    dashboard) — :func:`name_trial_actor`.
  * ``Trainable._storage`` (the trial's ``ray.train._internal.storage.StorageContext``: ``storage_filesystem``,
    ``trial_fs_path``, ``current_checkpoint_index``, which it increments before naming each checkpoint
    ``checkpoint_<index:06d>``) — :func:`continue_checkpoint_numbering`.
  * ``Trial.storage`` (its ``StorageContext``) and ``Trial.local_path`` (the trial's staging folder on the
    driver, where Tune's loggers write ``result.json`` / ``progress.csv``) — :func:`trial_folders`.
  * ``Trial.from_json_state`` on an ``experiment_state-*.json`` ``trial_data`` entry ``[json state, run
    metadata]``, and the restored trial's ``storage.trial_dir_name`` — :func:`state_entry_folder`.
  * ``OptunaSearch._ot_trials`` / ``_ot_study`` / ``_completed_trials`` — :func:`persistent_optuna_search`.
  * ``ray._common.utils.get_ray_address_file(temp_dir)`` — :func:`ray_address_file`: the file ``ray start``
    records its GCS address in and ``address="auto"`` reads (``services.cluster.check_address``).
  * ``ray._private.ray_logging.global_worker_stdstream_dispatcher`` (its ``handlers`` list and ``_lock``)
    and the name ``"ray_print_logs"`` that ``ray.init`` registers the driver's printer of worker output
    under (``ray/_private/worker.py``) — :func:`wrap_worker_printer` (``services.quiet.filter_worker_stream``).
  * Loggers of private Ray modules, named by ``logging.getLogger(__name__)`` there, or by the file's path
    (``__file__``) — :data:`TOKEN_AUTH_LOGGER`, :data:`PLACEMENT_GROUP_CALLBACK_LOGGER`,
    :data:`TRAIN_REPORT_LOGGER_FILE`: where ``services.quiet.LOG_DROPS`` put their filters.
Optuna (``OPTUNA_CHECKED``):
  * ``Study._storage.set_trial_state_values`` and ``FrozenTrial._trial_id`` — :func:`fail_trial`: mark a
    trial a killed driver left RUNNING as FAIL (the public ``Study.tell`` refuses trials it did not ask).
"""
from __future__ import annotations

import contextlib

RAY_CHECKED = "2.60.0"
OPTUNA_CHECKED = "5.1.0"

# Private Ray modules whose loggers emit a line services.quiet drops (their module-level ``logger``).
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"   # getLogger(__name__)
PLACEMENT_GROUP_CALLBACK_LOGGER = "ray.train.v2._internal.callbacks.placement_group_callback"   # (__name__)
# Ray names this one by the file's absolute path (getLogger(__file__)): the path inside the installed Ray
TRAIN_REPORT_LOGGER_FILE = "ray/train/v2/_internal/execution/context.py"
WORKER_PRINTER = "ray_print_logs"   # the dispatcher handler ray.init(log_to_driver=True) registers


def ray_address_file(temp_dir: str | None = None) -> str:
    """The file ``ray start`` writes its address to and Ray's ``address="auto"`` reads, in ``temp_dir``
    (``ray_current_cluster``); ``None``: in Ray's default temp dir ($RAY_TMPDIR, else $TMPDIR, else /tmp; + /ray)."""
    from ray._common.utils import get_ray_address_file

    return get_ray_address_file(temp_dir)


def wrap_worker_printer(wrap) -> bool:
    """Replace the driver's printer of worker output (the ``ray_print_logs`` handler ``ray.init`` adds to
    ``global_worker_stdstream_dispatcher``) by ``wrap(printer)``, under the dispatcher's lock. Returns
    whether the printer was there (False before ``ray.init``, without ``log_to_driver``, or if Ray renames it)."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    with dispatcher._lock:
        for i, (name, handle) in enumerate(dispatcher.handlers):
            if name == WORKER_PRINTER:
                dispatcher.handlers[i] = (name, wrap(handle))
                return True
    return False


def varied_hparams_tbx(varied: list[str]):
    """A ``TBXLoggerCallback`` whose HParams are ``loss``, ``lr`` and the ``varied`` keys only."""
    from ray.tune.logger import TBXLoggerCallback

    class VariedHParamsTBX(TBXLoggerCallback):
        def _try_log_hparams(self, trial, result):
            full = trial.evaluated_params
            trial.evaluated_params = {k: v for k, v in full.items() if k in varied or k in ("loss", "lr")}
            try:
                super()._try_log_hparams(trial, result)
            finally:
                trial.evaluated_params = full

    return VariedHParamsTBX()


def storage_reporter(params: list[str], location: str | None, **kwargs):
    """Tune's ``CLIReporter`` with ``parameter_columns=params`` whose "Result logdir:" line names ``location``
    (the experiment in the storage, not the driver's staging folder) and whose "Current best trial" line
    shows only the parameters the best trial has (Tune's own raises KeyError for an Optuna trial of another
    loss, which has no ``q``)."""
    from ray.tune import CLIReporter

    class StorageReporter(CLIReporter):
        def _current_best_trial(self, trials):
            return None, None     # Tune's line is off; ours is inserted below

        def _progress_str(self, trials, done, *sys_info, **kw):
            lines = super()._progress_str(trials, done, *sys_info, **kw).split("\n")
            if location is not None:
                lines = [f"Result logdir: {location}" if ln.startswith("Result logdir: ") else ln for ln in lines]
            best, metric = CLIReporter._current_best_trial(self, trials)
            if best is not None:
                config = best.last_result.get("config", {})
                shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in ((k, config[k]) for k in params if k in config))
                at = next((i for i, ln in enumerate(lines) if ln.startswith("Number of trials")), len(lines))
                lines.insert(at, f"Current best trial: {best.trial_id} with {metric}={best.last_result.get(metric)} ({shown})")
            return "\n".join(lines)

    return StorageReporter(parameter_columns=params, **kwargs)


@contextlib.contextmanager
def light_callback_telemetry():
    """Ray's usage telemetry (``ray.air._internal.usage._count_callbacks``, run by every ``Tuner.fit``)
    imports the MLflow, W&B, Comet and Aim integrations to classify the callbacks, which imports mlflow
    and wandb themselves when installed (seconds of a sweep's start: benchmarks/README.md §10). For the
    run, count the callbacks by class name without those imports; the tag Ray records is the same for the
    callbacks a robustloss sweep passes (Tune's own loggers, ours, MLflow/W&B when asked, which are then
    imported anyway). If Ray renames the function, nothing is patched (and the fence's test fails)."""
    from ray.air._internal import usage

    original = getattr(usage, "_count_callbacks", None)
    if original is None:
        yield
        return
    usage._count_callbacks = count_callbacks
    try:
        yield
    finally:
        usage._count_callbacks = original


def count_callbacks(callbacks) -> dict[str, int]:
    """What ``usage._count_callbacks`` returns for a robustloss sweep's callbacks, without its imports."""
    from ray.tune import Callback
    from ray.tune.logger import LoggerCallback

    counts: dict[str, int] = {}
    for cb in callbacks or []:
        if not isinstance(cb, Callback):
            continue
        name = type(cb).__name__
        key = name if name in ("MLflowLoggerCallback", "WandbLoggerCallback") else (
            "CustomLoggerCallback" if isinstance(cb, LoggerCallback) else "CustomCallback")
        counts[key] = counts.get(key, 0) + 1
    return counts


def function_trainable(trainable):
    """The Trainable class Tune builds from a function trainable (what ``Tuner`` would wrap it in)."""
    from ray.tune.trainable.function_trainable import wrap_function

    return wrap_function(trainable)


def name_trial_actor(trainable, name: str) -> None:
    """Name a function trainable's actor ``name``: the class :func:`function_trainable` returns gives its
    ``_name`` as its ``repr``, which Ray's dashboard shows for the actor (Actors view)."""
    trainable._name = name


def continue_checkpoint_numbering(trainable, last_index) -> None:
    """Make the next checkpoint a Tune ``trainable`` persists follow ``last_index(fs, trial folder)`` (the
    highest ``checkpoint_<n>`` already in its folder, -1: none): its ``StorageContext`` increments
    ``current_checkpoint_index`` before each checkpoint (-1 in a new trial); a function trainable's session
    uses the same context. Nothing outside a Tune run (no storage)."""
    storage = trainable._storage
    if storage is not None:
        found = last_index(storage.storage_filesystem, storage.trial_fs_path)
        storage.current_checkpoint_index = max(storage.current_checkpoint_index, found)


def trial_folders(trial) -> tuple:
    """(the storage's filesystem, the trial's folder on it, the trial's staging folder on the driver) of a
    Tune ``Trial``: Tune's loggers write ``result.json`` / ``progress.csv`` in the staging folder, and its
    driver copies that folder to the storage."""
    return trial.storage.storage_filesystem, trial.storage.trial_fs_path, trial.local_path


def state_entry_folder(entry) -> str:
    """The trial folder name of one ``trial_data`` entry of Tune's ``experiment_state-*.json`` (the trial's
    json state, its run metadata); raises on an entry Tune cannot read."""
    from ray.tune.experiment import Trial

    return Trial.from_json_state(entry[0], stub=True).storage.trial_dir_name


def persistent_optuna_search(space, *, metric: str, study_name: str, storage, epochs: int, seed: int | None = None,
                             sampler=None):
    """``OptunaSearch`` (mode max) on a persistent study that tells Optuna the truth about each trial: a
    trial ASHA stopped before its last epoch is PRUNED (with its last value reported), one that raised or
    reported no metric is FAIL, one that reached ``epochs`` is COMPLETE."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    class PersistentOptunaSearch(OptunaSearch):
        def on_trial_complete(self, trial_id, result=None, error=False):
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            ot_trial = self._ot_trials[trial_id]
            value = (result or {}).get(self.metric)
            if error or value is None:
                state, value = optuna.trial.TrialState.FAIL, None
            elif int((result or {}).get("epoch", 0)) < epochs:
                state, value = optuna.trial.TrialState.PRUNED, None
            else:
                state = optuna.trial.TrialState.COMPLETE
            if state != optuna.trial.TrialState.COMPLETE and value is None and result:
                ot_trial.report(float(result.get(self.metric) or 0.0), int(result.get("epoch", 0)))
            self._ot_study.tell(ot_trial, value, state=state)
            self._completed_trials.add(trial_id)

    return PersistentOptunaSearch(space=space, metric=metric, mode="max", seed=None if sampler else seed, sampler=sampler,
                                  study_name=study_name, storage=storage)


def fail_trial(study, trial) -> None:
    """Mark ``trial`` (a FrozenTrial of ``study``, RUNNING) as FAIL in the study's storage."""
    import optuna

    study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
