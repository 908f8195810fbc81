"""services/salvage.py without Ray: trial folders written in Tune's layout, a truncated experiment state."""
import json
import shutil

import torch

from robustloss_core.engine import STATE_FORMAT
from services import salvage
from services.storage import resolve_storage
from services.trainer import NONFINITE_FILE, SPEC_FILE, STATE_FILE, _run_engine


def spec(lr: float, epochs: int = 4) -> dict:
    return {"train": {"loss": "ce", "lr": lr, "epochs": epochs, "seed": 0}, "num_workers": 1, "use_gpu": False,
            "gpus_per_worker": 0.0, "cpus_per_worker": 1, "max_failures": 2,
            "label": {"loss": "ce", "params": {}, "logit_bias": 0.0, "lr": lr, "seed": 0}, "fault_injection": None}


def trial(exp, dirname, s, checkpoints, params_cut=False):
    """A Tune trial folder: params.json (cut short by a kill if ``params_cut``) and checkpoint_NNNNNN/
    folders ({epoch} or "nonfinite" or "cut"), each with the spec copy the trial writes (spec.json)."""
    d = exp / dirname
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps({"trial": s})[:20 if params_cut else None])
    for i, c in enumerate(checkpoints):
        ck = d / f"checkpoint_{i:06d}"
        ck.mkdir()
        (ck / SPEC_FILE).write_text(json.dumps(s))
        if c == "nonfinite":
            (ck / NONFINITE_FILE).write_text(json.dumps({"reason": "non-finite training loss (nan)"}))
        elif c == "cut":
            (ck / STATE_FILE).write_bytes(b"PK\x03\x04 truncated")
        else:
            torch.save({"format": STATE_FORMAT, "epoch": c,
                        "metrics": {"epoch": c, "test_top1": 10.0 * c, "test_top5": 50.0},
                        "robustloss_elapsed": 3.0 * c}, ck / STATE_FILE)


def test_prepare_splits_finished_and_resumable_trials(tmp_path):
    storage = resolve_storage(tmp_path / "store")
    exp = tmp_path / "store" / "kr"
    exp.mkdir(parents=True)
    (exp / "tuner.pkl").write_bytes(b"old tuner")
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": [')   # cut mid-write
    (exp / "basic-variant-state-2026-01-01_00-00-00.json").write_text("{}")
    assert salvage.newest_state(storage, "kr") == "experiment_state-2026-01-01_00-00-00.json"
    assert not salvage.state_readable(storage, "kr")

    specs = [spec(0.01), spec(0.02), spec(0.03), spec(0.04), spec(0.05), spec(0.06)]
    trial(exp, "ce_a", specs[0], [3, 4])                 # finished
    trial(exp, "ce_b", specs[1], [1, 2, "cut"])          # newest checkpoint half-copied: continue from epoch 2
    trial(exp, "ce_c", specs[2], [1, "nonfinite"])       # diverged: done, with its error
    trial(exp, "ce_d", specs[3], [])                     # started, nothing saved
    (exp / "ce_e").mkdir()
    (exp / "ce_e" / "params.json").write_text("")        # params.json itself cut, no checkpoint: ignored
    trial(exp, "ce_f", specs[5], [4], params_cut=True)   # params.json cut: named by its checkpoint, finished
    rows, todo, aside = salvage.prepare(storage, "kr", specs)

    by_lr = {r["lr"]: r for r in rows}
    assert set(by_lr) == {0.01, 0.03, 0.06}
    assert by_lr[0.01]["status"] == "ok" and by_lr[0.01]["epochs"] == 4 and by_lr[0.01]["test_top1"] == 40.0
    assert by_lr[0.01]["compute_seconds"] == 12.0          # worker-seconds from the checkpoint's elapsed time
    assert by_lr[0.03]["status"] == "error" and "non-finite" in by_lr[0.03]["error"]
    assert by_lr[0.06]["status"] == "ok" and by_lr[0.06]["epochs"] == 4
    assert [t["train"]["lr"] for t in todo] == [0.02, 0.04, 0.05]
    assert todo[0]["resume_from"].endswith("ce_b/checkpoint_000001") and "resume_from" not in todo[1]
    assert sorted(aside) == ["basic-variant-state-2026-01-01_00-00-00.json",
                             "experiment_state-2026-01-01_00-00-00.json", "tuner.pkl"]
    # nothing deleted: the unreadable files are renamed, contents intact
    kept = {p.name.split(".unreadable-")[0]: p for p in exp.glob("*.unreadable-*")}
    assert kept["tuner.pkl"].read_bytes() == b"old tuner"
    assert kept["experiment_state-2026-01-01_00-00-00.json"].read_text() == '{"trial_data": ['
    assert salvage.newest_state(storage, "kr") is None
    assert salvage.salvaged_rows(storage, "kr") == rows


def test_state_readable_on_a_complete_state(tmp_path):
    storage = resolve_storage(tmp_path)
    (tmp_path / "e").mkdir()
    assert not salvage.state_readable(storage, "e")       # no state at all
    (tmp_path / "e" / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    (tmp_path / "e" / "experiment_state-2025-01-01_00-00-00.json").write_text("")   # older one: not looked at
    assert salvage.state_readable(storage, "e")


def test_prepare_again_after_everything_finished_keeps_the_rows(tmp_path):
    """A rebuild that found every trial finished starts no Tune run; a second one returns the same rows."""
    storage = resolve_storage(tmp_path / "store")
    exp = tmp_path / "store" / "kr"
    exp.mkdir(parents=True)
    (exp / "tuner.pkl").write_bytes(b"old tuner")
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text("")
    specs = [spec(0.01), spec(0.02)]
    trial(exp, "ce_a", specs[0], [4])
    trial(exp, "ce_b", specs[1], [3, 4])
    rows, todo, _ = salvage.prepare(storage, "kr", specs)
    assert todo == [] and len(rows) == 2
    again, todo2, aside2 = salvage.prepare(storage, "kr", specs)
    assert again == rows and todo2 == [] and aside2 == []


def test_trial_checkpoints_name_their_trial(tmp_path):
    """The trial's own checkpoints (trainer._run_engine) carry its spec, so a folder whose params.json the
    kill cut short is still recognised, with its newest state."""
    s = spec(0.05, epochs=2)
    s["train"].update(dataset="synthetic", dataset_args={"classes": 4, "train_per_class": 8, "test_per_class": 4},
                      batch_size=8)
    d = tmp_path / "store" / "kr" / "ce_x"
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps({"trial": s})[:30])
    saved = []

    def make_checkpoint(folder):   # what tune.Checkpoint.from_directory + persisting does: a copy in the trial folder
        saved.append(shutil.copytree(folder, d / f"checkpoint_{len(saved):06d}"))
        return saved[-1]

    _run_engine(s, report=lambda row, checkpoint=None: None, make_checkpoint=make_checkpoint, checkpoint=None,
                is_rank0=True)
    assert len(saved) == 2 and json.loads((saved[-1] / SPEC_FILE).read_text()) == s
    (entry,) = salvage.scan(resolve_storage(tmp_path / "store"), "kr").values()
    assert entry["spec"] == s and entry["checkpoint"].endswith("ce_x/checkpoint_000001")
    assert entry["content"]["state"]["epoch"] == 2
