"""Steering without Ray: --dry-run, a bare `robustloss`, --version, `robustloss ls`, --keep-checkpoints'
pruning, the progress line, and the Python API's None handling and error classes."""
import io
import json

import pytest
import torch

from conftest import REPO, run_cli
from robustloss_core.engine import STATE_FORMAT, load_checkpoint
from services import api, app, checkpoint, progress
from services.storage import resolve_storage

DEMO = str(REPO / "sweeps" / "configs" / "demo.yaml")


def test_dry_run_starts_no_ray_and_writes_nothing(tmp_path):
    store, ray_tmp = tmp_path / "store", tmp_path / "raytmp"
    ray_tmp.mkdir()
    proc = run_cli(["--config", DEMO, "--dry-run", "--storage-path", str(store)], timeout=120,
                   env={"RAY_TMPDIR": str(ray_tmp), "TMPDIR": str(ray_tmp)})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "grid      36 trial(s) (MAE 18, GCE 18) x 8 epoch(s) = 288 trial-epochs" in out
    assert "analytic  12 trial(s) (MAE* 6, GCE+ 6) x 8 epoch(s) = 96 trial-epochs" in out
    assert "48 trial(s) to run, 384 trial-epochs; estimate" in out
    assert not store.exists()                                  # no storage folder
    assert not list(ray_tmp.rglob("session_*"))                # no Ray session was started
    assert "Started a local Ray instance" not in out + proc.stderr and "embedded Ray" not in out
    assert max(map(len, out.splitlines())) <= 120


def test_bare_cli_prints_how_to_start_and_starts_nothing(tmp_path):
    proc = run_cli([], env={"ROBUSTLOSS_STORAGE": str(tmp_path / "store")}, timeout=60)
    assert proc.returncode == 0 and "Nothing started" in proc.stdout
    assert "--config" in proc.stdout and "demo.yaml --dry-run" in proc.stdout and " ls " in proc.stdout
    assert proc.stdout.split()[proc.stdout.split().index("--config") - 2].endswith("python")   # interpreter + path
    assert not (tmp_path / "store").exists()


def test_version():
    proc = run_cli(["--version"], timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "robustloss 0.1.0"


def _summary(mode, runs, **extra):
    return {"experiment": "x", "mode": mode, "runs": runs, **extra}


def _run(loss, lr, val, status="ok", **kw):
    return {"loss": loss, "lr": lr, "seed": 0, "logit_bias": 0.0, "params": kw, "val_top1": val, "test_top1": val - 1,
            "status": status, "role": "main", "epochs": 2}


def test_ls_lists_experiments_with_mode_state_and_best(tmp_path):
    exp = tmp_path / "done"
    exp.mkdir()
    (exp / "robustloss.json").write_text(json.dumps({"mode": "grid", "created": 1.0, "request": {}}))
    (exp / "summary.json").write_text(json.dumps(_summary("grid", [_run("gce", 0.1, 40.0, q=0.7),
                                                                   _run("mae", 0.1, 55.5)])))
    part = tmp_path / "half"
    part.mkdir()
    (part / "robustloss.json").write_text(json.dumps({
        "mode": "grid", "created": 2.0, "request": {"seeds": 2, "lrs": [0.1, 0.3], "losses": ["mae", "gce"],
                                                    "search": "grid", "grids": {"mae": {"logit_bias": [0, 1]}, "gce": {}}}}))
    (tmp_path / "not-an-experiment").mkdir()
    proc = run_cli(["ls", "--storage-path", str(tmp_path)], timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"experiments in {tmp_path}: 2"
    done = next(ln for ln in lines if ln.startswith("done"))
    assert "grid" in done and "finished" in done and "2/2" in done and "val 55.5 %: MAE lr 0.1" in done
    half = next(ln for ln in lines if ln.startswith("half"))
    assert "unfinished" in half and "0/12" in half   # (2 + 1) configurations x 2 lrs x 2 seeds planned
    assert not any("not-an-experiment" in ln for ln in lines)


def _state(epoch):
    return {"format": STATE_FORMAT, "epoch": epoch, "model": {"w": torch.zeros(256, 256)},
            "optimizer": {"m": torch.zeros(256, 256)}, "rng": {"torch": torch.get_rng_state()},
            "metrics": {"epoch": epoch, "test_top1": 50.0}, "history": [{"epoch": epoch}], "robustloss_elapsed": 2.0}


@pytest.mark.parametrize("keep, left, weights", [("all", 3, True), ("last", 1, True), ("none", 1, False)])
def test_keep_checkpoints_prunes_an_ended_trial(tmp_path, keep, left, weights):
    trial = tmp_path / "exp" / "mae_lr0.1_s0_abc"
    for i in range(3):
        (trial / f"checkpoint_{i:06d}").mkdir(parents=True)
        torch.save(_state(i + 1), trial / f"checkpoint_{i:06d}" / checkpoint.STATE_FILE)
        (trial / f"checkpoint_{i:06d}" / checkpoint.SPEC_FILE).write_text("{}")
    before = sum(f.stat().st_size for f in trial.rglob("*") if f.is_file())
    freed = checkpoint.prune(resolve_storage(tmp_path), str(trial), keep)
    folders = sorted(p.name for p in trial.iterdir())
    assert len(folders) == left and folders[-1] == "checkpoint_000002"
    state = load_checkpoint(trial / folders[-1] / checkpoint.STATE_FILE)
    assert ("model" in state) == weights and ("optimizer" in state) == weights
    assert state["epoch"] == 3 and state["metrics"]["test_top1"] == 50.0   # what --resume and compare read
    after = sum(f.stat().st_size for f in trial.rglob("*") if f.is_file())
    assert before - after == freed and (keep == "all") == (freed == 0)


def test_progress_line_counts_kept_trials_and_prints_every_n_seconds(monkeypatch):
    monkeypatch.setenv(progress.EVERY_ENV, "3600")
    progress.set_phase("grid", estimate=100.0)
    progress.begin([{"epochs": 4}, {"epochs": 4}], todo=2, epochs=4)   # a resume kept 2 of 4 trials
    (cb,) = progress.callbacks()
    buf = io.StringIO()
    cb.line = progress.Line(buf)
    assert "2/4 trials  8/16 trial-epochs" in cb.text() and "(estimate)" in cb.text()

    class Trial:
        trial_id = "t1"

    cb.on_trial_result(0, [], Trial(), {"epoch": 4})
    cb.on_trial_complete(0, [], Trial())
    text = cb.text()
    assert "3/4 trials  12/16 trial-epochs" in text and "(measured)" in text and len(text) <= 120
    cb.on_step_end(0, [])
    cb.on_step_end(0, [])
    assert len(buf.getvalue().splitlines()) == 1            # not a terminal: at most every N seconds
    cb.on_experiment_end([])
    assert buf.getvalue().splitlines()[-1].startswith("grid  3/4 trials")
    progress.set_phase("grid", quiet=True)
    progress.begin([], todo=1, epochs=1)
    assert progress.callbacks() == []                         # --quiet: no line


def test_interrupt_hint_is_a_command_that_runs(monkeypatch):
    monkeypatch.setattr("sys.argv", [str(REPO / "sweeps" / "run.py"), "--config", "x.yaml"])
    hint = progress.interrupt_hint("demo", ["--storage-path", "/data/rl"])
    exe, script, *rest = hint.split()
    assert exe.endswith("python") and script.endswith("sweeps/run.py")
    assert rest == ["--resume", "--name", "demo", "--storage-path", "/data/rl"]


# ----------------------------------------------------------------------------- the API
def test_api_none_means_not_given(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(app, "execute", lambda req: (seen.append(req), (0, {"runs": []}, "g"))[1])
    common = dict(losses="mae", lrs="0.1", epochs=1, storage_path=str(tmp_path), name="g")
    api.grid(**common)
    api.grid(**common, grid_file=None, seeds=None, batch_size=None, callbacks=None, address=None, sigma=None)
    assert seen[0].record() == seen[1].record()
    assert seen[1].grid_file.endswith("grid.yaml") and seen[1].seeds == 1


def test_api_errors_are_request_errors_in_the_apis_words(tmp_path):
    with pytest.raises(api.RequestError) as err:
        api.grid(epochs="five", storage_path=str(tmp_path))
    assert str(err.value).startswith("epochs 'five'") and "--" not in str(err.value)
    with pytest.raises(api.RequestError) as err:
        api.grid(losses="mae", grid_file=str(tmp_path / "gone.yaml"), storage_path=str(tmp_path))
    assert str(err.value).startswith("grid_file ") and "--grid-file" not in str(err.value)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "summary.json").write_text('{"runs": []}')
    with pytest.raises(api.ExperimentExistsError) as err:
        api.grid(losses="ce", name="taken", storage_path=str(tmp_path))
    assert isinstance(err.value, api.RequestError) and "--" not in str(err.value) and "resume" in str(err.value)
    with pytest.raises(api.CompareError) as err:
        api.compare(grid="nope", analytic="nada", storage_path=str(tmp_path))
    assert isinstance(err.value, api.RequestError)
    with pytest.raises(api.RequestError):
        api.load_runs(str(tmp_path), "missing")
    with pytest.raises(api.StorageError) as err:
        api.grid(losses="ce", storage_path="ftp://host/x")
    assert isinstance(err.value, api.RequestError) and str(err.value).startswith("storage_path scheme")
    with pytest.raises(api.ClusterError) as err:
        api.grid(losses="ce", address="no-port", storage_path=str(tmp_path))
    assert isinstance(err.value, api.RequestError) and str(err.value).startswith("address ")
    with pytest.raises(api.DataError) as err:
        api.grid(losses="ce", dataset="fashionmnist", data_root=str(tmp_path / "empty"), storage_path=str(tmp_path))
    assert isinstance(err.value, api.RequestError) and "--" not in str(err.value)


def test_resume_needs_no_grid_file_and_load_runs_reads_an_unfinished_experiment(tmp_path):
    """A bare `--resume --name N` runs N's stored request (its grids included) after the grid file is gone;
    `api.load_runs` reads N before its summary exists: a row per checkpointed trial, with its status."""
    from sweeps.run import parse_args
    from services import checkpoint as ckpt
    from services.spec import TrialSpec

    grid = tmp_path / "g.yaml"
    grid.write_text("lrs: [0.1]\nlosses:\n  mae:\n    logit_bias: [0.0, 1.0]\n")
    store = tmp_path / "store"
    req = parse_args(["--mode", "grid", "--losses", "mae", "--epochs", "3", "--grid-file", str(grid), "--name", "g",
                      "--storage-path", str(store)])
    storage = resolve_storage(store)
    storage.write_json({"mode": "grid", "request": req.record(), "created": 1.0}, "g", "robustloss.json")
    fixed = app._fixed(req, "grid")
    specs = [TrialSpec.from_hparams(fixed, hp) for hp in app.grid_trials(req, fixed)[0]]
    for spec, epoch in zip(specs, (3, 1)):   # the first trial finished, the second was cut after epoch 1
        folder = store / "g" / f"{spec.dirname(['logit_bias'])}_x" / "checkpoint_000000"
        folder.mkdir(parents=True)
        ckpt.write(str(folder), spec, state={"format": STATE_FORMAT, "epoch": epoch, "robustloss_elapsed": 1.0,
                                             "metrics": {"epoch": epoch, "test_top1": 20.0, "val_top1": 21.0}})
    grid.unlink()
    resumed = parse_args(["--resume", "--name", "g", "--storage-path", str(store)])
    assert resumed.grids == req.grids and resumed.lrs == [0.1]
    df = api.load_runs(str(store), "g")
    assert sorted(df["status"]) == ["ok", "unfinished"] and sorted(df["epochs"]) == [1, 3]
