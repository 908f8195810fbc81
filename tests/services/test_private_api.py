"""services/_private_api.py: each private Ray Tune / Optuna API robustloss uses, exercised against the
installed versions, so an upgrade fails here, not in a sweep (then re-check and update the versions)."""
import time

import optuna
import pytest
import ray

from services import _private_api as private


def test_installed_versions_are_the_checked_ones():
    assert ray.__version__ == private.RAY_CHECKED, (
        f"Ray {ray.__version__} installed, services/_private_api.py was checked against {private.RAY_CHECKED}: "
        "run tests/services/test_private_api.py, fix what fails, then update RAY_CHECKED")
    assert optuna.__version__ == private.OPTUNA_CHECKED, (
        f"Optuna {optuna.__version__} installed, services/_private_api.py was checked against "
        f"{private.OPTUNA_CHECKED}: re-check it, then update OPTUNA_CHECKED")


def test_count_callbacks_tags_a_sweeps_callbacks_as_ray_does():
    """Ray's function is there with its one argument and its tags (calling it would import the MLflow and
    W&B integrations: minutes on a busy 2-core machine); ours tags a sweep's callbacks the same way, and
    the patch is put back."""
    import inspect

    from ray.air._internal import usage

    from services import sweeps

    original = usage._count_callbacks
    source = inspect.getsource(original)
    assert list(inspect.signature(original).parameters) == ["callbacks"]
    assert '"CustomLoggerCallback"' in source and '"CustomCallback"' in source
    callbacks = [private.varied_hparams_tbx(["q"]), sweeps._trial_clock(), object()]
    assert private.count_callbacks(callbacks) == {"CustomLoggerCallback": 1, "CustomCallback": 1}
    with private.light_callback_telemetry():
        assert usage._count_callbacks is private.count_callbacks
    assert usage._count_callbacks is original


def test_tensorboard_hparams_are_the_varied_ones():
    """_try_log_hparams writes HParams of loss, lr and the varied keys only, and leaves the trial as it was."""
    tbx = private.varied_hparams_tbx(["q"])
    summaries = []

    class Trial:
        evaluated_params = {"loss": "gce", "lr": 0.1, "q": 0.7, "seed": 0, "logit_bias": 0.0}

    class Writer:
        class file_writer:
            add_summary = staticmethod(summaries.append)

    trial = Trial()
    tbx._trial_writer = {trial: Writer()}
    tbx._try_log_hparams(trial, {"val_top1": 50.0})
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    assert len(summaries) == 3 and trial.evaluated_params["seed"] == 0
    data = HParamsPluginData.FromString(summaries[0].value[0].metadata.plugin_data.content)
    assert [h.name for h in data.experiment.hparam_infos] == ["loss", "lr", "q"]


def test_status_table_names_the_storage_and_the_best_trials_own_parameters():
    from ray.tune.experiment import Trial

    class StubTrial(Trial):   # a trial outside a Tune run: no staging folder
        local_experiment_path = "/tmp/ray/session/driver_artifacts"
        local_path = None

    a = StubTrial("run_trial", config={"loss": "gce", "q": 0.7, "lr": 0.1}, stub=True, trial_id="a1")
    a.update_last_result({"config": {"loss": "gce", "q": 0.7, "lr": 0.1}, "val_top1": 55.0, "epoch": 2})
    b = StubTrial("run_trial", config={"loss": "ce", "lr": 0.03}, stub=True, trial_id="b2")
    b.update_last_result({"config": {"loss": "ce", "lr": 0.03}, "val_top1": 60.0, "epoch": 2})
    from ray.tune.utils import log as tune_log

    reporter = private.storage_reporter(["loss", "q", "lr"], "/store/exp", metric_columns={"val_top1": "val"})
    reporter.setup(start_time=time.time(), metric="val_top1", mode="max")
    # Tune's verbosity is process-global: a quiet sweep earlier in this process (verbose=0) hides the table
    before = tune_log.verbosity
    tune_log.set_verbosity(1)
    try:
        lines = reporter._progress_str([a, b], False).split("\n")
    finally:
        tune_log.set_verbosity(before)
    assert "Result logdir: /store/exp" in lines and not any("driver_artifacts" in ln for ln in lines)
    # the best trial (ce) has no q: named with its own parameters instead of Tune's KeyError
    assert "Current best trial: b2 with val_top1=60.0 (loss=ce, lr=0.03)" in lines


def test_function_trainable_is_a_trainable_class():
    from ray.tune import Trainable

    cls = private.function_trainable(lambda config: None)
    assert isinstance(cls, type) and issubclass(cls, Trainable) and callable(cls.reset_config)


def _search(study_name, storage, epochs=4):
    def space(trial):
        trial.suggest_float("lr", 0.01, 0.1, log=True)

    return private.persistent_optuna_search(space, metric="val_top1", seed=0, study_name=study_name,
                                            storage=storage, epochs=epochs)


def test_optuna_search_tells_the_study_complete_pruned_and_fail():
    storage = optuna.storages.InMemoryStorage()
    search = _search("s", storage)
    for tid in ("done", "stopped", "broken"):
        assert "lr" in search.suggest(tid)
    search.on_trial_complete("done", {"val_top1": 70.0, "epoch": 4})
    search.on_trial_complete("stopped", {"val_top1": 40.0, "epoch": 1})    # ASHA stopped it at a rung
    search.on_trial_complete("broken", None, error=True)
    search.on_trial_complete("done", {"val_top1": 0.0, "epoch": 4})        # told once only
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).get_trials()]
    S = optuna.trial.TrialState
    assert states == [S.COMPLETE, S.PRUNED, S.FAIL]
    assert optuna.load_study(study_name="s", storage=storage).trials[0].value == 70.0


def test_fail_trial_marks_a_running_trial_failed():
    study = optuna.create_study(direction="maximize")
    study.ask()
    (running,) = study.get_trials(deepcopy=False)
    assert running.state == optuna.trial.TrialState.RUNNING
    private.fail_trial(study, running)
    assert study.get_trials()[0].state == optuna.trial.TrialState.FAIL
    with pytest.raises(RuntimeError):   # a finished trial stays as it is
        private.fail_trial(study, study.get_trials()[0])


def test_ray_address_file_is_the_one_ray_start_writes_and_auto_reads(tmp_path, monkeypatch):
    """``ray_address_file``: in the given temp dir, else in Ray's default one ($RAY_TMPDIR/ray); the file
    Ray's own writer (``ray start``) fills and its ``auto`` lookup reads."""
    from ray._private import services as ray_services
    from ray._private.utils import write_ray_address

    found = private.ray_address_file(str(tmp_path))
    assert found == str(tmp_path / "ray_current_cluster")
    write_ray_address("127.0.0.1:6380", str(tmp_path))
    assert open(found).read() == "127.0.0.1:6380"
    assert ray_services.find_bootstrap_address(str(tmp_path)) == "127.0.0.1:6380"
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert private.ray_address_file() == str(tmp_path / "ray" / "ray_current_cluster")


def test_worker_printer_is_wrapped_under_the_dispatchers_lock():
    """The dispatcher ``ray.init`` registers the driver's printer with has the ``handlers`` list and
    ``_lock`` used, ``ray.init`` names the printer ``WORKER_PRINTER``, and ``wrap_worker_printer`` replaces
    that handler only (False when it is absent)."""
    import inspect
    import threading

    import ray._private.worker as ray_worker
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    assert isinstance(dispatcher.handlers, list) and isinstance(dispatcher._lock, type(threading.Lock()))
    assert f'"{private.WORKER_PRINTER}"' in inspect.getsource(ray_worker.connect)   # ray.init's registration
    assert not private.wrap_worker_printer(lambda handle: handle)   # no ray.init here: no printer
    printed, other = [], []
    dispatcher.add_handler("another", other.append)
    dispatcher.add_handler(private.WORKER_PRINTER, printed.append)
    try:
        assert private.wrap_worker_printer(lambda handle: lambda data: handle({**data, "lines": ["wrapped"]}))
        assert not dispatcher._lock.locked()
        dispatcher.emit({"lines": ["raw"]})
        assert printed == [{"lines": ["wrapped"]}] and other == [{"lines": ["raw"]}]
    finally:
        dispatcher.remove_handler(private.WORKER_PRINTER)
        dispatcher.remove_handler("another")


@pytest.mark.parametrize("name", ["TOKEN_AUTH_LOGGER", "PLACEMENT_GROUP_CALLBACK_LOGGER"])
def test_private_logger_names_are_those_modules_loggers(name):
    """Each name is an importable Ray module whose module-level logger is ``getLogger(__name__)``: the
    logger services.quiet filters is the one that module logs to."""
    import importlib
    import logging

    module = importlib.import_module(getattr(private, name))
    assert module.logger is logging.getLogger(getattr(private, name))


def test_train_report_logger_is_named_by_its_files_path():
    """Ray Train's execution context logs to ``getLogger(__file__)``: the installed file at
    ``TRAIN_REPORT_LOGGER_FILE``, which services.quiet.emitter resolves to the same logger."""
    import importlib
    import logging
    import os

    from services import quiet

    module_name = private.TRAIN_REPORT_LOGGER_FILE.removesuffix(".py").replace("/", ".")
    module = importlib.import_module(module_name)
    path = os.path.join(os.path.dirname(ray.__file__), *private.TRAIN_REPORT_LOGGER_FILE.split("/")[1:])
    assert os.path.samefile(module.__file__, path) and module.logger is logging.getLogger(module.__file__)
    drop = next(d for d in quiet.LOG_DROPS if d.where == private.TRAIN_REPORT_LOGGER_FILE)
    assert quiet.emitter(drop) is module.logger


def test_trial_actor_is_named_by_its_name_attribute():
    """The class ``function_trainable`` returns shows ``_name`` as its ``repr`` (the dashboard's actor name)."""
    cls = private.function_trainable(lambda config: None)
    trainable = cls.__new__(cls)   # the attribute only: no actor, no session
    private.name_trial_actor(trainable, "gce_q0.7_lr0.1_s0")
    assert repr(trainable) == "gce_q0.7_lr0.1_s0"


@pytest.fixture
def train_session_dir(tmp_path, monkeypatch):
    """Ray's session folder for the driver's staging copies (``<session>/artifacts``) without ``ray.init``."""
    from ray.train._internal import storage as train_storage

    monkeypatch.setattr(train_storage, "_get_ray_train_session_dir", lambda: str(tmp_path / "session"))
    return tmp_path / "session"


def _storage_context(store, trial_dir: str):
    from ray.train._internal.storage import StorageContext

    return StorageContext(str(store), experiment_dir_name="exp", trial_dir_name=trial_dir)


def test_checkpoint_numbering_continues_after_the_trials_own(tmp_path, train_session_dir):
    """``Trainable._storage`` is the trial's ``StorageContext``; raising its ``current_checkpoint_index``
    makes the next checkpoint Tune persists ``checkpoint_<found + 1>``, in the folder given to ``last_index``.
    A function trainable hands the same context to its session (where ``tune.report`` persists)."""
    import inspect

    from ray.tune import Trainable
    from ray.tune.trainable.function_trainable import FunctionTrainable

    assert "storage=self._storage" in inspect.getsource(FunctionTrainable.setup)

    class Counter(Trainable):
        def step(self):
            return {"epoch": 1}

        def save_checkpoint(self, checkpoint_dir):
            return {"epoch": 1}

    store = tmp_path / "store"
    (store / "exp" / "t" / "checkpoint_000003").mkdir(parents=True)
    seen = []
    trainable = Counter(storage=_storage_context(store, "t"))
    private.continue_checkpoint_numbering(trainable, lambda fs, path: seen.append(path) or 3)
    assert seen == [str(store / "exp" / "t")]
    trainable.train()
    trainable.save()
    assert sorted(p.name for p in (store / "exp" / "t").glob("checkpoint_*")) == ["checkpoint_000003",
                                                                                   "checkpoint_000004"]
    private.continue_checkpoint_numbering(trainable, lambda fs, path: 1)   # never numbers backwards
    trainable.save()
    assert (store / "exp" / "t" / "checkpoint_000005").is_dir()
    private.continue_checkpoint_numbering(Counter(), lambda fs, path: pytest.fail("no storage, no lookup"))


def test_trial_folders_are_the_stored_one_and_the_staging_one_tunes_loggers_write(tmp_path, train_session_dir):
    """``trial_folders``: the storage's filesystem, the trial's folder on it (named by Tune's
    ``trial_dirname_creator``), and the driver's staging folder where Tune's json/csv loggers write
    ``result.json`` / ``progress.csv`` (``services.salvage.in_place`` puts the stored history there first)."""
    from pyarrow import fs as pafs
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    store = tmp_path / "store"
    trial = Trial("run_trial", config={"lr": 0.1}, trial_id="t1", stub=True, trial_dirname_creator=lambda t: "t",
                  storage=StorageContext(str(store), experiment_dir_name="exp"))
    trial.init_local_path()   # what Tune's controller does when it adds the trial
    fs, remote, local = private.trial_folders(trial)
    assert isinstance(fs, pafs.LocalFileSystem) and remote == str(store / "exp" / "t")
    assert local.startswith(str(train_session_dir)) and local.endswith("/t")
    for logger in (JsonLoggerCallback(), CSVLoggerCallback()):
        logger.log_trial_start(trial)
        logger.log_trial_result(1, trial, {"epoch": 1, "val_top1": 50.0})
        logger.log_trial_end(trial)
    assert '"val_top1": 50.0' in open(f"{local}/result.json").read()
    assert "val_top1" in open(f"{local}/progress.csv").readline()


def test_experiment_state_entries_name_their_trial_folders(tmp_path, train_session_dir):
    """An ``experiment_state`` ``trial_data`` entry (what ``Trial.get_json_state`` gives Tune's controller)
    names its trial's folder; a cut entry raises (``services.salvage`` leaves it out)."""
    import inspect

    from ray.tune import PlacementGroupFactory
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    assert "trial_json_state, trial_runtime_metadata in experiment_state[\"trial_data\"]" in inspect.getsource(
        TuneController._restore_trials)
    trial = Trial("run_trial", config={"lr": 0.1}, trial_id="t1", stub=True,
                  storage=_storage_context(tmp_path / "store", "gce_q0.7_lr0.1_s0_0123abcd"))
    trial.placement_group_factory = PlacementGroupFactory([{"CPU": 1}])
    entry = list(trial.get_json_state())
    assert private.state_entry_folder(entry) == "gce_q0.7_lr0.1_s0_0123abcd"
    with pytest.raises(Exception):
        private.state_entry_folder([entry[0][:50], entry[1]])
