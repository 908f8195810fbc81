"""Fault handling inside a sweep: an injected crash is retried from the checkpoint (and ends exactly
where an uninterrupted run ends); a non-finite loss fails its trial with that reason; the sweep goes on."""
import json

import pytest

pytestmark = pytest.mark.ray

BASE = {"dataset": "synthetic", "dataset_args": {"classes": 10, "train_per_class": 20, "test_per_class": 10}, "val_fraction": 0.1,
        "loss": "ce", "loss_params": {}, "lr": 0.05, "epochs": 3, "batch_size": 32, "seed": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a stale cluster
    yield
    ray.shutdown()


def test_injected_failure_retried_from_checkpoint_and_nan_fails(tmp_path, ray_local):
    from robustloss_core import engine
    from robustloss_core.config import TrainConfig
    from services import sweeps
    from services.spec import Fixed, Resources, TrialSpec
    from services.storage import resolve_storage

    fixed = Fixed(train={k: v for k, v in BASE.items() if k not in ("loss", "loss_params", "lr", "seed")},
                  resources=Resources(max_failures=2, checkpoint_every=2))   # epochs 2 and 3 (the last)
    ok, nan = {"loss": "ce", "lr": 0.05, "seed": 0}, {"loss": "ce", "lr": 1e8, "seed": 0}
    extras = {TrialSpec.from_hparams(fixed, ok).key: {"fault_injection": {"epoch": 2, "marker": str(tmp_path / "crashed-once")}}}
    storage = resolve_storage(tmp_path / "store")
    res = sweeps.run_sweep(storage, "faults", fixed, [ok, nan], verbose=0, extras=extras)

    by_lr = {r["lr"]: r for r in res.rows}
    assert (tmp_path / "crashed-once").exists()  # the fault really fired
    good = by_lr[0.05]
    assert good["status"] == "ok" and good["epochs"] == 3
    reference = engine.train(TrainConfig.from_dict(dict(BASE)))
    assert good["test_top1"] == pytest.approx(reference["test_top1"], abs=1e-9)  # resume == uninterrupted
    trial = next(p for p in (tmp_path / "store" / "faults").iterdir() if p.name.startswith("ce_lr0.05"))
    rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # continued after epoch 2, did not start over
    # the policy: no checkpoint after epoch 1, one after epoch 2, then the retry's one after its last epoch
    assert [r["checkpoints"] for r in rows] == [0, 1, 1]
    bad = by_lr[1e8]
    assert bad["status"] == "error" and "non-finite" in bad["error"].lower()
