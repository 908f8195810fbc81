"""services/salvage.py (the one resume path) without Ray: trial folders as the trials write them."""
import json
import shutil

import pytest
import torch

from robustloss_core.engine import STATE_FORMAT
from services import salvage
from services.spec import Fixed, Resources, TrialSpec
from services.storage import resolve_storage
from services.checkpoint import NONFINITE_FILE, SPEC_FILE, STATE_FILE
from services.trainer import _run_engine

FIXED = Fixed(train={"dataset": "synthetic", "epochs": 4, "batch_size": 8, "val_fraction": 0.0,
                     "dataset_args": {"classes": 4, "train_per_class": 8, "test_per_class": 4}},
              resources=Resources(), experiment="kr")


def spec(lr: float) -> TrialSpec:
    return TrialSpec.from_hparams(FIXED, {"loss": "ce", "lr": lr, "seed": 0})


def trial(exp, dirname, s: TrialSpec, checkpoints):
    """A trial folder with checkpoint_NNNNNN/ folders ({epoch} or "nonfinite" or "cut" (a half-written
    state) or "nospec" (spec.json cut)), each with the spec copy the trial writes (spec.json)."""
    d = exp / dirname
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps(s.hparams))
    for i, c in enumerate(checkpoints):
        ck = d / f"checkpoint_{i:06d}"
        ck.mkdir()
        (ck / SPEC_FILE).write_text(json.dumps(s.to_dict())[: 10 if c == "nospec" else None])
        if c == "nonfinite":
            (ck / NONFINITE_FILE).write_text(json.dumps({"reason": "non-finite training loss (nan)"}))
        elif c == "cut":
            (ck / STATE_FILE).write_bytes(b"PK\x03\x04 truncated")
        else:
            epoch = 2 if c == "nospec" else c
            torch.save({"format": STATE_FORMAT, "epoch": epoch,
                        "metrics": {"epoch": epoch, "test_top1": 10.0 * epoch, "test_top5": 50.0, "val_top1": 9.0 * epoch},
                        "robustloss_elapsed": 3.0 * epoch}, ck / STATE_FILE)


def test_plan_splits_finished_and_resumable_trials(tmp_path):
    storage = resolve_storage(tmp_path / "store")
    exp = tmp_path / "store" / "kr"
    specs = [spec(0.01), spec(0.02), spec(0.03), spec(0.04), spec(0.05), spec(0.06)]
    trial(exp, "ce_a", specs[0], [3, 4])                 # finished
    trial(exp, "ce_b", specs[1], [1, 2, "cut"])          # newest checkpoint half-copied: continue from epoch 2
    trial(exp, "ce_c", specs[2], [1, "nonfinite"])       # diverged: done, with its error
    trial(exp, "ce_d", specs[3], [])                     # started, nothing saved: runs from scratch
    trial(exp, "ce_e1", specs[4], [1, 2])                # ran twice (an earlier resume): the furthest wins
    trial(exp, "ce_e2", specs[4], [3, "nospec"])
    trial(exp, "train/" + specs[5].run_name, specs[5], [4])   # a multi-worker trial's Ray Train folder
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": [')   # Tune's, cut: not read
    rows, todo, _ = salvage.plan(storage, "kr", specs)

    by_lr = {r["lr"]: r for r in rows}
    assert set(by_lr) == {0.01, 0.03, 0.06}
    assert by_lr[0.01]["status"] == "ok" and by_lr[0.01]["epochs"] == 4 and by_lr[0.01]["test_top1"] == 40.0
    assert by_lr[0.01]["val_top1"] == 36.0 and by_lr[0.01]["key"] == specs[0].key
    assert by_lr[0.01]["compute_seconds"] == 12.0          # worker-seconds from the checkpoint's elapsed time
    assert by_lr[0.03]["status"] == "error" and "non-finite" in by_lr[0.03]["error"]
    assert [t.hparams["lr"] for t in todo] == [0.02, 0.04, 0.05]
    assert todo[0].resume_from.endswith("ce_b/checkpoint_000001")
    assert todo[1].resume_from is None
    assert todo[2].resume_from.endswith("ce_e2/checkpoint_000000")   # epoch 3 beats epoch 2; a cut spec is skipped
    # nothing was deleted or rewritten
    assert (exp / "experiment_state-2026-01-01_00-00-00.json").read_text() == '{"trial_data": ['
    assert len(list(exp.rglob("checkpoint_*"))) == 2 + 3 + 2 + 0 + 2 + 2 + 1


def test_plan_is_idempotent(tmp_path):
    storage = resolve_storage(tmp_path / "store")
    exp = tmp_path / "store" / "kr"
    specs = [spec(0.01), spec(0.02)]
    trial(exp, "ce_a", specs[0], [4])
    trial(exp, "ce_b", specs[1], [3, 4])
    rows, todo, _ = salvage.plan(storage, "kr", specs)
    assert todo == [] and len(rows) == 2
    again, todo2, _ = salvage.plan(storage, "kr", specs)
    assert again == rows and todo2 == []


def test_trial_checkpoints_name_their_trial(tmp_path):
    """The trial's own checkpoints (trainer._run_engine) carry its spec and key, so scan finds the trial
    with its newest state whatever Tune's files say."""
    s = TrialSpec.from_hparams(Fixed(train={**FIXED.train, "epochs": 2}, experiment="kr",
                                     resources=Resources(checkpoint_seconds=0.0)),   # after every epoch
                               {"loss": "ce", "lr": 0.05, "seed": 0})
    d = tmp_path / "store" / "kr" / "ce_x"
    d.mkdir(parents=True)
    saved = []

    def make_checkpoint(folder):   # what tune.Checkpoint.from_directory + persisting does: a copy in the trial folder
        saved.append(shutil.copytree(folder, d / f"checkpoint_{len(saved):06d}"))
        return saved[-1]

    _run_engine(s, report=lambda row, checkpoint=None: None, make_checkpoint=make_checkpoint, checkpoint=None,
                is_rank0=True)
    assert len(saved) == 2 and TrialSpec.from_dict(json.loads((saved[-1] / SPEC_FILE).read_text())).key == s.key
    (entry,) = salvage.scan(resolve_storage(tmp_path / "store"), "kr").values()
    assert entry["checkpoint"].endswith("ce_x/checkpoint_000001") and entry["content"]["state"]["epoch"] == 2
    row = salvage.finished_row(s, entry["content"])
    assert row["status"] == "ok" and row["epochs"] == 2 and row["test_top1"] == entry["content"]["state"]["metrics"]["test_top1"]


def test_spec_key_is_stable_and_names_the_configuration():
    a = spec(0.01)
    same = TrialSpec.from_dict(json.loads(json.dumps(a.to_dict())))
    assert same.key == a.key and same.train_config() == a.train_config()
    assert spec(0.02).key != a.key
    other_data = TrialSpec.from_hparams(Fixed(train={**FIXED.train, "noise": "symmetric", "noise_rate": 0.4}),
                                        {"loss": "ce", "lr": 0.01, "seed": 0})
    assert other_data.key != a.key
    # numpy scalars from a searcher give the same key as Python numbers
    import numpy as np
    assert TrialSpec.from_hparams(FIXED, {"loss": "ce", "lr": np.float64(0.01), "seed": np.int64(0)}).key == a.key


@pytest.mark.parametrize("policy, expected", [
    ({}, [5]),                                      # default: a short trial checkpoints after its last epoch only
    ({"checkpoint_every": 2}, [2, 4, 5]),
    ({"checkpoint_seconds": 0.0}, [1, 2, 3, 4, 5]),
    ({"checkpoint_epochs": (1, 3)}, [1, 3, 5]),      # the ASHA rungs of an Optuna search
])
def test_checkpoint_policy_decides_which_epochs_save_state(tmp_path, policy, expected):
    """The checkpoints _run_engine really writes, by policy; every epoch is reported either way, and the
    rows count the checkpoints so far."""
    s = TrialSpec.from_hparams(Fixed(train={**FIXED.train, "epochs": 5}, resources=Resources(**policy), experiment="kr"),
                               {"loss": "ce", "lr": 0.05, "seed": 0})
    saved, rows = [], []

    def make_checkpoint(folder):
        saved.append(torch.load(f"{folder}/{STATE_FILE}", weights_only=False)["epoch"])
        return folder

    _run_engine(s, report=lambda row, checkpoint=None: rows.append(row), make_checkpoint=make_checkpoint,
                checkpoint=None, is_rank0=True)
    assert saved == expected
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["checkpoints"] for r in rows] == [sum(e <= r["epoch"] for e in expected) for r in rows]
    assert all(r["setup_seconds"] >= 0 and r["worker_peak_rss_mb"] > 0 for r in rows)


def test_checkpoint_due_time_rule():
    r = Resources(checkpoint_seconds=30.0)
    assert not r.checkpoint_due(3, 10, seconds_since=29.9)
    assert r.checkpoint_due(3, 10, seconds_since=30.0)      # an epoch ending 30 s after the last checkpoint
    assert r.checkpoint_due(10, 10, seconds_since=0.0)      # always the last epoch
    assert not Resources(checkpoint_every=4).checkpoint_due(3, 10, 0.0)
    assert Resources(checkpoint_every=4).checkpoint_due(8, 10, 0.0)


@pytest.mark.parametrize("epochs", [1, 2, 4, 5, 8, 12, 40, 100])
def test_optuna_trials_checkpoint_at_ashas_own_rungs(epochs):
    """A trial under ASHA checkpoints where ASHA may stop it: ``Asha.rungs`` against the milestones of
    the ASHAScheduler the sweep builds (Ray's own computation)."""
    from services.search import SCHEDULERS

    asha = SCHEDULERS["asha"].tune(epochs)
    milestones = sorted(m for m, _ in asha._brackets[0]._rungs if m < epochs)
    assert list(SCHEDULERS["asha"].rungs(epochs)) == milestones
    assert SCHEDULERS["none"].rungs(epochs) == () and SCHEDULERS["none"].tune(epochs) is None


def _state(store, folders: list[str]) -> str:
    """An ``experiment_state`` file's text listing a stub Tune trial per folder (as Tune 2.60 writes it)."""
    from ray.train._internal.storage import StorageContext
    from ray.tune import PlacementGroupFactory
    from ray.tune.experiment import Trial

    data = []
    for i, folder in enumerate(folders):
        storage = StorageContext(str(store), experiment_dir_name="kr", trial_dir_name=folder)
        trial = Trial("run_trial", config={"lr": i}, trial_id=f"{folder}-id", stub=True, storage=storage)
        trial.placement_group_factory = PlacementGroupFactory([{"CPU": 1}])   # what Tune sets when it runs one
        data.append(list(trial.get_json_state()))
    return json.dumps({"trial_data": data, "runner_data": {}, "stats": {}, "timestamp": 0.0})


def test_newest_experiment_state_lists_every_trial_once(tmp_path):
    """Each resume's Tune run writes its own experiment_state-<start>.json, listing only its trials; the
    merge makes the newest one list every trial folder once (the newest view wins), skipping a cut file."""
    from ray.tune.experiment import Trial

    store = tmp_path / "store"
    exp = store / "kr"
    exp.mkdir(parents=True)
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(_state(store, ["a", "b"]))
    (exp / "experiment_state-2026-01-01_00-01-00.json").write_text(_state(store, ["c"])[:50])   # a kill cut it
    (exp / "experiment_state-2026-01-01_00-02-00.json").write_text(_state(store, ["b", "d"]))
    assert salvage.merge_experiment_states(resolve_storage(store), "kr") == 3
    newest = json.loads((exp / "experiment_state-2026-01-01_00-02-00.json").read_text())
    folders = [Trial.from_json_state(e[0], stub=True).storage.trial_dir_name for e in newest["trial_data"]]
    assert sorted(folders) == ["a", "b", "d"] and len(folders) == 3   # c's only state is cut: not listed
    assert (exp / "experiment_state-2026-01-01_00-01-00.json").read_text() == _state(store, ["c"])[:50]
    (exp / "experiment_state-2026-01-01_00-03-00.json").write_text(_state(store, ["a"])[:50])   # the newest cut
    assert salvage.merge_experiment_states(resolve_storage(store), "kr") == 3
    assert len(json.loads((exp / "experiment_state-2026-01-01_00-03-00.json").read_text())["trial_data"]) == 3


def test_resumed_trial_numbers_checkpoints_after_its_own(tmp_path):
    from pyarrow import fs as pafs

    d = tmp_path / "t"
    assert salvage.next_checkpoint_index(pafs.LocalFileSystem(), str(d)) == -1
    for n in ("checkpoint_000000", "checkpoint_000003", "checkpoint_tmp", "other"):
        (d / n).mkdir(parents=True)
    assert salvage.next_checkpoint_index(pafs.LocalFileSystem(), str(d)) == 3
