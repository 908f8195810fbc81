"""Tests for robustloss_core.presets: the published values of reference-params.md, their use as defaults
by build_loss, training setups, and JSON serialisation."""
import json

import pytest

from robustloss_core import presets
from robustloss_core.losses import LOSSES, build_loss

DATASETS = ["fashionmnist", "cifar10", "cifar100", "webvision", "mini-webvision"]


def test_table_complete_and_well_formed():
    assert set(presets.LOSS_PRESETS) == set(LOSSES)
    for loss, row in presets.LOSS_PRESETS.items():
        assert list(row) == DATASETS, loss
        for ds, entry in row.items():
            assert set(entry) == {"params", "source", "reconstructed"}, (loss, ds)
            assert isinstance(entry["source"], str) and entry["source"], (loss, ds)
            assert isinstance(entry["reconstructed"], bool)
            assert set(entry["params"]) <= set(LOSSES[loss].param_names), (loss, ds)


@pytest.mark.parametrize("loss,ds,params,reconstructed", [
    ("gce", "cifar10", {"q": 0.7}, False),
    ("gce", "webvision", {"q": 0.7}, False),
    ("nce_mae", "fashionmnist", {"alpha": 1.0, "beta": 1.0}, False),
    ("nce_mae", "cifar100", {"alpha": 10.0, "beta": 1.0}, False),
    ("nce_mae", "mini-webvision", {"alpha": 50.0, "beta": 1.0}, False),
    ("nfl_mae", "cifar10", {"alpha": 1.0, "beta": 1.0, "gamma": 0.5}, False),
    ("nfl_mae", "webvision", {"alpha": 10.0, "beta": 1.0, "gamma": 0.5}, False),
    ("nfl_mae", "mini-webvision", {"alpha": 50.0, "beta": 1.0, "gamma": 0.5}, False),
    ("nce_agce", "cifar10", {"alpha": 1.0, "beta": 4.0, "a": 6.0, "q": 1.5}, False),
    ("nce_agce", "cifar100", {"alpha": 10.0, "beta": 0.1, "a": 1.8, "q": 3.0}, False),
    ("nce_agce", "webvision", {"alpha": 10.0, "beta": 0.1, "a": 1.8, "q": 3.0}, False),
    ("nce_agce", "mini-webvision", {"alpha": 50.0, "beta": 0.1, "a": 2.5, "q": 3.0}, False),
    ("agce", "cifar10", {"a": 0.6, "q": 0.6}, False),
    ("agce", "cifar100", {"a": 0.6, "q": 0.6}, True),
    ("sce", "cifar10", {"alpha": 0.1, "beta": 1.0, "A": -4.0}, False),
    ("sce", "cifar100", {"alpha": 6.0, "beta": 0.1, "A": -4.0}, False),
    ("bitemp", "cifar10", {"t1": 0.8, "t2": 1.2}, True),
    ("bitemp", "webvision", {"t1": 0.8, "t2": 1.2}, True),
    ("ce", "webvision", {}, False),
])
def test_published_values(loss, ds, params, reconstructed):
    entry = presets.loss_preset(loss, ds)
    assert entry["params"] == params
    assert entry["reconstructed"] is reconstructed


def test_loss_preset_returns_a_copy():
    presets.loss_preset("gce", "cifar10")["params"]["q"] = 0.1
    assert presets.LOSS_PRESETS["gce"]["cifar10"]["params"]["q"] == 0.7


@pytest.mark.parametrize("ds", DATASETS + ["synthetic", "imagefolder", None])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_preset_builds(loss, ds):
    K = presets.NUM_CLASSES.get(presets.resolve_dataset(ds), 10)
    built = build_loss(loss, K, dataset=ds)
    for k, v in presets.loss_preset(loss, ds)["params"].items():
        assert built.params[k] == v


def test_build_loss_defaults_and_overrides():
    assert build_loss("nce_mae", 10).params == {"alpha": 1.0, "beta": 1.0}            # cifar10 column
    assert build_loss("nce_mae", 100, dataset="cifar100").params == {"alpha": 10.0, "beta": 1.0}
    assert build_loss("nce_mae", 10, dataset="synthetic").params == {"alpha": 1.0, "beta": 1.0}
    assert build_loss("nce_mae", 100, dataset="cifar100", beta=2.0).params == {"alpha": 10.0, "beta": 2.0}
    assert build_loss("sce", 10, A=-9.21).params["A"] == -9.21
    assert build_loss("nfl", 10).params["detach_normalizer"] is False


@pytest.mark.parametrize("fn,fragment", [
    (lambda: presets.loss_preset("focal", "cifar10"), "'focal'"),
    (lambda: presets.loss_preset("gce", "svhn"), "'svhn'"),
    (lambda: presets.training_setup("svhn"), "'svhn'"),
    (lambda: presets.logit_bias_preset("svhn"), "'svhn'"),
    (lambda: presets.mlp_lr("ce", "cifar100"), "'cifar100'"),
    (lambda: presets.mlp_lr("nce_agce", "cifar10"), "'nce_agce'"),
])
def test_bad_lookups(fn, fragment):
    with pytest.raises(ValueError, match=fragment):
        fn()


def test_logit_bias_constants():
    assert presets.C_DEFAULT == 0.25
    assert presets.EPSILON_C025[10] == pytest.approx(1.272)
    assert presets.EPSILON_C025[100] == pytest.approx(3.769)
    assert presets.EPSILON_C025[1000] == pytest.approx(6.090)
    lad = presets.WEANING_LADDER
    assert len(lad["values"]) == 6 and lad["hold"] == 11 and lad["reconstructed"] is True
    assert lad["values"][0] == pytest.approx(6.090)
    assert lad["values"][-1] == pytest.approx(6.090 / 6, abs=1e-4)
    assert all(a > b for a, b in zip(lad["values"], lad["values"][1:]))
    wv = presets.logit_bias_preset("webvision")
    assert wv["schedule"] == {"values": lad["values"], "hold": 11} and wv["logit_bias"] == lad["values"][0]
    assert presets.logit_bias_preset("cifar100")["logit_bias"] == pytest.approx(3.769)
    assert presets.logit_bias_preset(None)["num_classes"] == 10


def test_training_setups():
    c10 = presets.training_setup("cifar10")
    assert c10["model"] == "resnet32" and c10["batch_size"] == 128 and c10["epochs"] == 200
    assert c10["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
    assert c10["lr_schedule"] == {"kind": "multistep", "milestones": [100, 150], "gamma": 0.1}
    assert presets.training_setup("fashionmnist")["augmentation"] == "fmnist"
    c100 = presets.training_setup("cifar100")
    assert c100["model"] == "resnet34" and c100["optimizer"]["weight_decay"] == 5e-4
    assert c100["lr_schedule"] == {"kind": "multistep", "milestones": [60, 120, 160], "gamma": 0.2}
    wv = presets.training_setup("webvision")
    assert wv["model"] == "wrn101" and wv["epochs"] == 198 and wv["batch_size"] == 256
    assert wv["lr_schedule"]["milestones"] == [66, 132]
    assert "batch_size" in wv["reconstructed"]
    syn = presets.training_setup("synthetic")
    assert syn["model"] == "mlp1024" and syn["optimizer"]["lr"] == 0.01 and syn["epochs"] == 10
    assert syn["lr_schedule"] == {"kind": "exponential", "gamma": 0.95} and syn["batch_size"] == 128
    mlp = presets.training_setup("cifar10", model="mlp1024")
    assert mlp["model"] == "mlp1024" and mlp["optimizer"]["weight_decay"] == 0.0
    assert mlp["lr_schedule"] == {"kind": "exponential", "gamma": 0.95} and mlp["augmentation"] is None
    for setup in presets.TRAINING_SETUPS.values():
        assert setup["grad_clip"] is None


def test_mlp_learning_rates():
    assert presets.LR_GRID_MLP == [5e-4, 8e-4, 1e-3, 3e-3, 5e-3, 8e-3, 0.01, 0.03, 0.05]
    for ds, table in presets.MLP_LR.items():
        assert set(table) == {"ce", "mae", "mae*", "gce", "nfl_mae", "nce_mae", "bitemp"}
        assert all(v in presets.LR_GRID_MLP for v in table.values()), ds
    assert presets.mlp_lr("mae", "cifar10", logit_bias=True) == 3e-3
    assert presets.mlp_lr("gce", "fashionmnist") == 0.01
    assert presets.mlp_lr("ce", "fashionmnist") == 5e-3


def test_json_roundtrip():
    d = presets.as_dict()
    again = json.loads(json.dumps(d))
    assert again["loss_presets"] == d["loss_presets"]
    assert again["training_setups"] == d["training_setups"]
    assert again["lr_grid_mlp"] == presets.LR_GRID_MLP
