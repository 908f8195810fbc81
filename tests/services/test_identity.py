"""A trial's identity is what it computes (services.spec.TrialSpec.key), and a pilot's checkpoint never
continues a main trial (services.checkpoint + services.salvage), also for experiments stored before."""
import dataclasses
import json
import random
import shutil

import pytest

from services import checkpoint as ckpt
from services import salvage
from services.spec import HP_FIELDS, STORED_BASE, Fixed, Resources, TrialSpec
from services.storage import resolve_storage
from services.trainer import _run_engine
from sweeps.run import parse_args

HP = {"loss": "gce", "lr": 0.1, "seed": 0, "logit_bias": 0.0, "q": 0.7}


def _changed(v):
    """Another value of the same kind (what a user could set the field to)."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1 if v == 0 else v * 2
    if isinstance(v, str):
        return v + "x"
    if v is None:
        return 1
    if isinstance(v, dict):
        return {**v, "extra": 1}
    if isinstance(v, (list, tuple)):
        return [*v, 1]
    raise TypeError(v)


def test_specs_differing_in_any_one_computing_field_never_share_a_key():
    """Every TrainConfig field of a real request and every hyperparameter, changed one at a time: all keys
    differ (from the base and from each other). What does not change the computation is not identity."""
    train = parse_args(["--mode", "analytic", "--losses", "gce", "--classes", "10", "--epochs", "10"]).base_train()
    base = TrialSpec.from_hparams(Fixed(train=train), HP)
    variants = [TrialSpec.from_hparams(Fixed(train={**train, k: _changed(v)}), HP) for k, v in train.items()]
    variants += [TrialSpec.from_hparams(Fixed(train=train), {**HP, k: _changed(v)}) for k, v in HP.items() if k != "loss"]
    variants += [TrialSpec.from_hparams(Fixed(train=train), {**HP, "loss": "sce"})]
    keys = [base.key] + [v.key for v in variants]
    assert len(train) >= 15 and len(set(keys)) == len(keys) == 1 + len(train) + len(HP)
    # record, not identity: role, resources, experiment, per-trial extras
    for fixed in (Fixed(train=train, role="pilot"), Fixed(train=train, resources=Resources(num_workers=2)),
                  Fixed(train=train, experiment="other"),
                  Fixed(train=train, extras={base.key: {"resume_from": "/x", "fault_injection": {"epoch": 1}}})):
        assert TrialSpec.from_hparams(fixed, HP).key == base.key
    with pytest.raises(ValueError, match="epochs"):   # a computing override cannot hide in the extras
        TrialSpec.from_hparams(Fixed(train=train, extras={base.key: {"epochs": 2}}), HP)


def test_random_specs_share_a_key_only_when_they_compute_the_same():
    rng = random.Random(0)
    seen: dict = {}
    for _ in range(400):
        train = {"dataset": "synthetic", "epochs": rng.choice([2, 10]), "batch_size": rng.choice([32, 128]),
                 "noise": rng.choice(["none", "symmetric"]), "noise_rate": rng.choice([0.0, 0.4])}
        hp = {"loss": rng.choice(["ce", "gce"]), "lr": rng.choice([0.03, 0.1]), "seed": rng.choice([0, 1]),
              "logit_bias": rng.choice([0.0, 2.5])}
        spec = TrialSpec.from_hparams(Fixed(train=train, role=rng.choice(["main", "pilot"])), hp)
        what = json.dumps(spec.train_config(), sort_keys=True)
        assert seen.setdefault(spec.key, what) == what
    assert len(seen) > 100


# Trials of real requests with the keys (and Fixed.train's preset lr) the code stored them with while
# Fixed.train still held every TrainConfig field, the hyperparameters' at base values.
STORED = [
    (["--mode", "grid", "--losses", "gce", "--classes", "10", "--epochs", "2"],
     {"loss": "gce", "lr": 0.1, "seed": 0, "logit_bias": 0.0, "q": 0.7}, "5f7353113c47", 0.01),
    # batch 128 was the MLP1024 preset's then (the refit made it 64): pinned, it is the same computation
    (["--mode", "analytic", "--losses", "mae", "--dataset", "fashionmnist", "--model", "mlp1024", "--epochs", "3",
      "--batch-size", "128"],
     {"loss": "mae", "lr": 0.01, "seed": 1, "logit_bias": 2.5}, "7f29e6374398", 0.001),
    (["--mode", "grid", "--losses", "mae", "--classes", "20", "--bias-schedule", "weaning", "--epochs", "3"],
     {"loss": "mae", "lr": 0.3, "seed": 0, "logit_bias": 6.0}, "598be9c3d7d6", 0.01),
]


@pytest.mark.parametrize("argv,hp,key,preset_lr", STORED)
def test_stored_trials_keep_their_keys(argv, hp, key, preset_lr):
    """Fixed.train holds no hyperparameter field now (a preset lr no longer rides along to be overwritten), yet
    a trial's key is the one stored before: from today's spec, and from the spec.json stored then (its train
    with those fields), which trains the same config."""
    train = parse_args(argv).base_train()
    assert not set(HP_FIELDS) & set(train)
    spec = TrialSpec.from_hparams(Fixed(train=train), hp)
    assert spec.key == key
    old = TrialSpec.from_dict({**spec.to_dict(), "train": {**train, **STORED_BASE, "lr": preset_lr}})
    assert old.key == key and old.train_config() == spec.train_config() and spec.train_config()["lr"] == hp["lr"]
    with pytest.raises(ValueError, match="lr"):   # the fixed settings cannot carry a learning rate again
        TrialSpec.from_hparams(Fixed(train={**train, "lr": preset_lr}), hp)


def test_a_trial_stored_before_is_kept_on_resume(tmp_path):
    """A finished trial whose spec.json was written while Fixed.train held the hyperparameters' fields: today's
    spec of that trial (from the same request) finds it finished, so a resume does not train it again."""
    from robustloss_core.engine import STATE_FORMAT

    argv, hp, key, preset_lr = STORED[0]
    train = parse_args(argv).base_train()
    spec = TrialSpec.from_hparams(Fixed(train=train, experiment="old"), hp)
    folder = tmp_path / "old" / "gce_q0.7_lr0.1_s0_0000" / "checkpoint_000000"
    folder.mkdir(parents=True)
    state = {"format": STATE_FORMAT, "epoch": 2, "config": spec.train_config(), "metrics": {"epoch": 2, "test_top1": 50.0}}
    ckpt.write(str(folder), spec, state=state)
    stored = {**spec.to_dict(), "train": {**train, **STORED_BASE, "lr": preset_lr}, "key": key}
    (folder / ckpt.SPEC_FILE).write_text(json.dumps(stored))
    rows, todo, _ = salvage.plan(resolve_storage(tmp_path), "old", [spec])
    assert todo == [] and [r["key"] for r in rows] == [key] and rows[0]["test_top1"] == 50.0


def test_folder_names_carry_every_loss_parameter():
    """An analytic trial's folder shows what it computed (q, ε) even where nothing varies."""
    train = {"dataset": "synthetic", "epochs": 2}
    gce = TrialSpec.from_hparams(Fixed(train=train), {"loss": "gce", "lr": 0.1, "seed": 0, "q": 0.2610620567729481})
    mae = TrialSpec.from_hparams(Fixed(train=train), {"loss": "mae", "lr": 0.1, "seed": 0, "logit_bias": 6.091})
    assert gce.dirname([]) == "gce_q0.261_lr0.1_s0" and mae.dirname([]) == "mae_eps6.09_lr0.1_s0"
    assert mae.dirname(["logit_bias"]).startswith("mae_eps") and gce.dirname(["logit_bias"]) == "gce_q0.261_eps0_lr0.1_s0"


FIXED = Fixed(train={"dataset": "synthetic", "epochs": 3, "batch_size": 8, "val_fraction": 0.0,
                     "dataset_args": {"classes": 4, "train_per_class": 8, "test_per_class": 4}},
              resources=Resources(), experiment="pe")
PILOT = dataclasses.replace(FIXED, train={**FIXED.train, "epochs": 1}, role="pilot")   # as app._pilot builds it


def _trained(tmp_path, spec: TrialSpec, folder: str):
    """Run ``spec`` for real (trainer._run_engine, no Ray), its checkpoints copied into ``<exp>/<folder>/``."""
    d = tmp_path / "store" / "pe" / folder
    d.mkdir(parents=True)
    saved = []

    def make_checkpoint(src):
        saved.append(shutil.copytree(src, d / f"checkpoint_{len(saved):06d}"))
        return saved[-1]

    _run_engine(spec, report=lambda row, checkpoint=None: None, make_checkpoint=make_checkpoint, checkpoint=None,
                is_rank0=True)
    return saved


@pytest.mark.usefixtures("one_thread")
def test_no_main_trial_starts_from_a_pilots_checkpoint(tmp_path):
    """The issue's scenario without Ray: a pilot trains the main trial's hyperparameters for fewer epochs.
    Its checkpoint is its own (own key, own epochs, role pilot); the main trial runs from scratch; the
    pilot is found finished. The same for a checkpoint a pilot wrote before spec.json had a format."""
    hp = {"loss": "ce", "lr": 0.05, "seed": 0}
    main, pilot = TrialSpec.from_hparams(FIXED, hp), TrialSpec.from_hparams(PILOT, hp)
    assert main.key != pilot.key and pilot.role == "pilot" and pilot.train_config()["epochs"] == 1
    (saved,) = _trained(tmp_path, pilot, "ce_pilot")
    stored = json.loads((saved / ckpt.SPEC_FILE).read_text())
    assert stored["key"] == pilot.key and stored["train"]["epochs"] == 1 and stored["role"] == "pilot"
    storage = resolve_storage(tmp_path / "store")

    def check():
        rows, todo, _ = salvage.plan(storage, "pe", [main])
        assert rows == [] and [t.key for t in todo] == [main.key] and todo[0].resume_from is None
        rows, todo, _ = salvage.plan(storage, "pe", [pilot])
        assert todo == [] and rows[0]["key"] == pilot.key and rows[0]["epochs"] == 1 and rows[0]["role"] == "pilot"

    check()
    # the format before this one: the pilot's spec.json held the main train config and the main key
    old = {k: v for k, v in stored.items() if k != "format"}
    (saved / ckpt.SPEC_FILE).write_text(json.dumps({**old, "train": dict(FIXED.train), "key": main.key}))
    check()
    (entry,) = salvage.scan(storage, "pe").values()
    assert TrialSpec.from_dict(entry["content"]["spec"]).key == pilot.key   # read back in today's format


def test_old_main_checkpoints_keep_their_keys(tmp_path):
    """A spec.json written before the format field: a main trial's key is recomputed the same (the key's
    formula did not change), so an old experiment's finished trials are found, not retrained."""
    spec = TrialSpec.from_hparams(FIXED, {"loss": "ce", "lr": 0.01, "seed": 0})
    old = {k: v for k, v in spec.to_dict().items() if k != "format"}
    assert ckpt.upgraded({"spec": old, "state": {"config": {"epochs": 3}}}) == old
    assert ckpt.upgraded({"spec": {**old, "role": "pilot"}, "nonfinite": "nan"}) is None   # no state: no trial's


@pytest.mark.parametrize("kind", ["state", "nonfinite"])
def test_checkpoint_round_trip(tmp_path, kind):
    """services.checkpoint writes what restore reads back (the engine state, or the non-finite error)."""
    from ray import tune

    from robustloss_core.engine import STATE_FORMAT, NonFiniteLossError

    spec = TrialSpec.from_hparams(FIXED, {"loss": "ce", "lr": 0.01, "seed": 0})
    state = {"format": STATE_FORMAT, "epoch": 2, "metrics": {"epoch": 2}}
    ckpt.write(str(tmp_path), spec, **({"state": state} if kind == "state" else {"nonfinite": "loss nan"}))
    assert TrialSpec.from_dict(json.loads((tmp_path / ckpt.SPEC_FILE).read_text())).key == spec.key
    if kind == "state":
        assert ckpt.restore(tune.Checkpoint(str(tmp_path))) == state
    else:
        with pytest.raises(NonFiniteLossError, match="loss nan"):
            ckpt.restore(tune.Checkpoint(str(tmp_path)))
    with pytest.raises(ValueError, match="either"):
        ckpt.write(str(tmp_path), spec)
