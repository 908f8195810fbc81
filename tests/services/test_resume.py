"""An experiment is its stored request (services/resume.py), without Ray: `--resume` with flags that would
change the trials is refused in one line before Ray starts and stores nothing; a bare `--resume` continues the
stored request; the summary keeps every trial of the folder."""
import json

import pytest

from services import resume
from services.request import SweepRequest
from services.storage import resolve_storage
from sweeps import run
from sweeps.run import CLIError, parse_args

from robustloss_core.engine import STATE_FORMAT
from services import checkpoint
from services.spec import Fixed, TrialSpec

TINY = {"dataset": "synthetic", "classes": 10, "dataset_args": "train_per_class=20,test_per_class=10", "batch_size": 32}


def stored(tmp_path, name="r", **options):
    """An experiment folder as `--mode grid` leaves it: its request in robustloss.json, one summary row."""
    req = SweepRequest.from_options(**{"mode": "grid", "losses": "mae", "lrs": "0.1", "epochs": 1, "name": name,
                                       "storage_path": str(tmp_path), **TINY, **options}).validated()
    folder = tmp_path / name
    folder.mkdir()
    (folder / "robustloss.json").write_text(json.dumps({"mode": req.mode, "request": req.record(), "created": 0.0}))
    (folder / "summary.json").write_text(json.dumps({"runs": [{"loss": "mae", "key": "k-mae", "role": "main",
                                                               "test_top1": 42.0}]}))
    return folder, req


FIXED = Fixed(train={"dataset": "synthetic", "epochs": 4, "batch_size": 8, "val_fraction": 0.0,
                     "dataset_args": {"classes": 4, "train_per_class": 8, "test_per_class": 4}}, experiment="kr")


def spec(lr: float) -> TrialSpec:
    return TrialSpec.from_hparams(FIXED, {"loss": "ce", "lr": lr, "seed": 0})


def trial(exp, dirname, s: TrialSpec, epoch: int):
    """A trial folder with one checkpoint after ``epoch``, written as a trial writes it (services.checkpoint)."""
    folder = exp / dirname / "checkpoint_000000"
    folder.mkdir(parents=True)
    state = {"format": STATE_FORMAT, "epoch": epoch, "config": dict(s.train_config()),
             "metrics": {"epoch": epoch, "test_top1": 10.0 * epoch, "test_top5": 50.0}, "robustloss_elapsed": 3.0 * epoch}
    checkpoint.write(str(folder), s, state=state)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_resume_with_a_different_request_is_refused_before_ray(tmp_path, no_ray, capsys):
    folder, _ = stored(tmp_path)
    before = snapshot(folder)
    argv = ["--mode", "grid", "--losses", "gce", "--lrs", "0.03,0.3", "--name", "r", "--resume",
            "--storage-path", str(tmp_path), "--epochs", "1"]
    assert run.main(argv) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith("error: --resume --name r:")
    assert '--losses (["mae"] -> ["gce"])' in line and "--lrs ([0.1] -> [0.03, 0.3])" in line
    assert "--epochs" not in line   # the same value as stored is no difference
    assert snapshot(folder) == before   # rows and request unchanged


def test_bare_resume_continues_the_stored_request(tmp_path):
    _, first = stored(tmp_path)
    again = parse_args(["--resume", "--name", "r", "--storage-path", str(tmp_path)])
    assert (again.mode, again.losses, again.lrs, again.epochs, again.num_classes) == ("grid", ["mae"], [0.1], 1, 10)
    assert again.dataset_kwargs == first.dataset_kwargs and again.grids == first.grids
    # the request it runs is the stored one, field for field (the default request would be mode all, 3 losses)
    assert {k: v for k, v in again.record().items() if k != "resume"} == {k: v for k, v in first.record().items()
                                                                          if k != "resume"}


def test_resume_may_change_resources_and_output(tmp_path):
    stored(tmp_path)
    req = parse_args(["--resume", "--name", "r", "--storage-path", str(tmp_path), "--max-concurrent-trials", "1",
                      "--quiet", "--checkpoint-seconds", "5"])
    assert (req.max_concurrent_trials, req.quiet, req.checkpoint_seconds, req.losses) == (1, True, 5.0, ["mae"])
    with pytest.raises(CLIError, match=r"--num-workers \(1 -> 2\)"):   # DDP changes what a trial computes
        parse_args(["--resume", "--name", "r", "--storage-path", str(tmp_path), "--num-workers", "2",
                    "--address", "127.0.0.1:1"])
    with pytest.raises(CLIError, match=r"--classes \(10 -> 20\)") as err:   # derived K etc. are not listed again
        parse_args(["--resume", "--name", "r", "--storage-path", str(tmp_path), "--classes", "20"])
    assert "num-classes" not in str(err.value)


def test_resume_of_a_missing_name_is_refused(tmp_path, no_ray, capsys):
    assert run.main(["--resume", "--name", "does-not-exist", "--storage-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --resume: no experiment 'does-not-exist' at {tmp_path}; drop --resume to start it"
    assert not any(tmp_path.iterdir())


def test_resume_of_mode_all_finds_its_parts(tmp_path):
    """`--mode all --name r` stores its request in r-grid (mode grid, name r): a bare resume of r is mode all."""
    req = SweepRequest.from_options(mode="all", losses="mae", lrs="0.1", epochs=1, name="r", **TINY).validated()
    (tmp_path / "r-grid").mkdir()
    (tmp_path / "r-grid" / "robustloss.json").write_text(json.dumps({"request": req.replace(mode="grid").record()}))
    again = parse_args(["--resume", "--name", "r", "--storage-path", str(tmp_path)])
    assert (again.mode, again.losses, again.name) == ("all", ["mae"], "r")


def test_api_resume_refuses_the_same_way(tmp_path, no_ray):
    from services import api

    stored(tmp_path)
    with pytest.raises(api.RequestError, match=r"losses \(\[\"mae\"\] -> \[\"gce\"\]\)"):
        api.grid(name="r", resume=True, storage_path=str(tmp_path), losses="gce", lrs=[0.1], epochs=1, **TINY)


def test_optuna_budget_may_grow_on_resume(tmp_path):
    stored(tmp_path, search="optuna", num_samples=3)
    req = parse_args(["--resume", "--name", "r", "--storage-path", str(tmp_path), "--num-samples", "5"])
    assert (req.search, req.num_samples) == ("optuna", 5)


def test_summary_keeps_every_trial_of_the_folder(tmp_path):
    """A row this run only kept (rebuilt from its checkpoint) is the previous summary's row; a trial folder
    this run did not list gets its row from its checkpoint; a previous row whose folder is gone stays."""
    storage = resolve_storage(tmp_path)
    exp = tmp_path / "kr"
    kept, other = spec(0.01), spec(0.02)
    trial(exp, "ce_a", kept, 4)
    trial(exp, "ce_b", other, 4)   # e.g. a trial of another request in the same folder
    old = {"loss": "ce", "key": kept.key, "role": "main", "test_top1": 40.0, "compute_seconds": 13.5, "started_at": 1.0}
    gone = {"loss": "ce", "key": "gone", "role": "main", "test_top1": 7.0}
    (exp / "summary.json").write_text(json.dumps({"runs": [old, gone]}))
    rebuilt = {"loss": "ce", "key": kept.key, "role": "main", "test_top1": 40.0, "compute_seconds": 12.0,
               "started_at": None}
    rows = resume.all_rows(storage, "kr", [rebuilt])
    by_key = {r["key"]: r for r in rows}
    assert len(rows) == 3 and by_key[kept.key] == old and by_key["gone"] == gone
    assert by_key[other.key]["lr"] == 0.02 and by_key[other.key]["test_top1"] == 40.0   # from its epoch-4 checkpoint
    assert by_key[other.key]["status"] == "ok" and by_key[other.key]["epochs"] == 4
    fresh = {**rebuilt, "started_at": 5.0, "test_top1": 41.0}   # trained in this run: its own row wins
    assert {r["key"]: r for r in resume.all_rows(storage, "kr", [fresh])}[kept.key] == fresh
