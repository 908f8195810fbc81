"""One experiment across resumes (issue 32 item 4): a grid interrupted (Ctrl-C: Tune's own SIGINT handling)
after its first trial finished, resumed, interrupted again, resumed again. Tune's own ExperimentAnalysis on the
experiment folder sees every trial once, TensorBoard finds one run per trial (a resumed trial continues in its
folder), and `api.load_runs` reads the experiment while it is unfinished."""
import json
import os
import signal

import pytest

pytestmark = pytest.mark.ray

TRAIN = {"dataset": "synthetic", "dataset_args": {"classes": 4, "train_per_class": 16, "test_per_class": 8},
         "val_fraction": 0.0, "epochs": 2, "batch_size": 32, "device": "cpu"}
LRS = [0.01, 0.02, 0.03, 0.04]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a stale cluster
    yield
    ray.shutdown()


def interrupt_after_first_trial(monkeypatch):
    """Ctrl-C as a user gives it: SIGINT to this process once a trial of this run has finished."""
    from ray.tune import Callback

    from services import progress

    class CtrlC(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(progress, "callbacks", lambda: [CtrlC()])


def tensorboard_runs(exp) -> set:
    """The runs TensorBoard lists for a log dir: each folder holding event files."""
    return {os.path.relpath(root, exp) for root, _, files in os.walk(exp)
            if any(f.startswith("events.out.tfevents") for f in files)}


def test_interrupted_twice_is_one_experiment(tmp_path, ray_local, monkeypatch):
    from ray.tune import ExperimentAnalysis

    from services import api, sweeps
    from services.spec import Fixed, Resources
    from services.storage import resolve_storage

    fixed = Fixed(train=TRAIN, resources=Resources(max_concurrent_trials=1, checkpoint_every=1, max_failures=0))
    grid = [{"loss": "ce", "lr": lr, "seed": 0} for lr in LRS]
    storage, exp = resolve_storage(tmp_path / "store"), tmp_path / "store" / "kr"
    run = lambda resume: sweeps.run_sweep(storage, "kr", fixed, grid, resume=resume, verbose=0)

    with monkeypatch.context() as m:
        interrupt_after_first_trial(m)
        with pytest.raises(KeyboardInterrupt):
            run(False)
        with pytest.raises(KeyboardInterrupt):
            run(True)
    unfinished = api.load_runs(str(tmp_path / "store"), "kr")   # before the last resume: no summary yet
    assert "status" in unfinished.columns
    finished = unfinished[unfinished["status"] == "ok"]
    assert len(finished) >= 2 and set(finished["epochs"]) == {2}
    assert set(unfinished["status"]) <= {"ok", "unfinished"}

    res = run(True)
    assert sorted(r["lr"] for r in res.rows) == LRS and all(r["status"] == "ok" for r in res.rows)

    folders = sorted(p for p in exp.iterdir() if (p / "params.json").exists())
    assert len(folders) == 4                                   # no folder beside a resumed trial's own
    for folder in folders:                                     # each trial's history, once, in its folder
        epochs = [json.loads(line)["epoch"] for line in (folder / "result.json").read_text().splitlines()]
        assert epochs == [1, 2], (folder.name, epochs)
    df = ExperimentAnalysis(str(exp)).dataframe()
    assert len(df) == 4 and df["trial_id"].nunique() == 4
    assert sorted(df["config/lr"]) == LRS and set(df["epoch"]) == {2}
    assert tensorboard_runs(exp) == {p.name for p in folders}
