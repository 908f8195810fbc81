"""services.resolve: the one rule for a trial's lr, ε (with σ and c) and loss parameters, as every mode
and the pilots apply it; and the mode table of services.app (one row per mode, one signature)."""
import inspect
import json

import pytest

from robustloss_core import presets, theory
from services import app, resolve
from services.request import MODES as REQUEST_MODES
from services.storage import resolve_storage
from sweeps.run import parse_args


class _Result:
    def __init__(self, spec):
        self.metrics = {"epoch": spec.train_config()["epochs"], "test_top1": 50.0, "trial_seconds": 1.0}
        self.error = None


def test_train_logit_bias_auto_uses_sigma(tmp_path, monkeypatch):
    """--mode train --logit-bias auto --sigma 0.5 at K=100 trains with Eq. 4's ε for σ = 0.5 (the spec
    run_train hands the Ray Train trainer, so the TrainConfig the engine runs), not σ = 1's."""
    from services import trainer

    built = []

    def fake_trainer(spec, **kwargs):   # what run_train hands Ray Train, without Ray
        built.append(spec)
        return type("T", (), {"fit": lambda self: _Result(spec)})()

    monkeypatch.setattr(trainer, "build_torch_trainer", fake_trainer)
    req = parse_args(["--mode", "train", "--losses", "mae", "--classes", "100", "--logit-bias", "auto",
                      "--sigma", "0.5", "--epochs", "1", "--name", "t", "--storage-path", str(tmp_path)])
    payload = app.run_train(req, resolve_storage(tmp_path), "t", False)
    want = theory.logit_bias(100, sigma=0.5)
    assert want != pytest.approx(theory.logit_bias(100, sigma=1.0), abs=0.1)
    (spec,) = built
    assert spec.train_config()["logit_bias"] == pytest.approx(want, abs=1e-12)
    assert payload["runs"][0]["logit_bias"] == pytest.approx(want, abs=1e-12)
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["runs"][0]["logit_bias"] == pytest.approx(want)


def test_learning_rate_rule_per_mode():
    """--lr in train mode and under the shared protocol; the searched lrs in a sweep; else (train mode) the
    paper's MLP1024 rate (mae* when ε > 0) or the dataset's training setup."""
    base = {"dataset": "synthetic", "model": "mlp1024"}   # Fixed.train: no lr of its own
    setup_lr = presets.training_setup("synthetic", model="mlp1024")["optimizer"]["lr"]
    train = parse_args(["--mode", "train", "--losses", "mae", "--dataset", "synthetic"])
    assert "lr" not in train.base_train() and resolve.preset_lr(train.base_train()) == setup_lr
    assert resolve.learning_rates(train, "mae", False, base) == (setup_lr,)      # synthetic: no MLP rate, the setup's
    fm = train.replace(dataset="fashionmnist")
    base = {"dataset": "fashionmnist", "model": "mlp1024"}
    assert resolve.learning_rates(fm, "mae", True, base) == (presets.MLP_LR["fashionmnist"]["lrs"]["mae*"],)
    resnet_lr = presets.training_setup("fashionmnist", model="resnet32")["optimizer"]["lr"]
    assert resolve.learning_rates(fm, "gce", False, {**base, "model": "resnet32"}) == (resnet_lr,)
    assert resolve.learning_rates(train.replace(lr=0.2), "mae", True, base) == (0.2,)
    searched = parse_args(["--mode", "analytic", "--losses", "gce", "--lrs", "0.03,0.1,0.3"])
    assert resolve.learning_rates(searched, "gce", False, base) == (0.03, 0.1, 0.3)
    # --lr with an explicit searched protocol does not replace the searched lrs
    assert resolve.learning_rates(searched.replace(lr=0.5), "gce", False, base) == (0.03, 0.1, 0.3)
    shared = parse_args(["--mode", "grid", "--losses", "gce", "--lr", "0.05"])
    assert resolve.learning_rates(shared, "gce", False, base) == (0.05,)


def test_resolve_from_calibration_and_flags():
    req = parse_args(["--mode", "analytic", "--losses", "gce,mae", "--classes", "10", "--lrs", "0.03,0.1"])
    s = resolve.resolve(req, "gce", {"model": "mlp1024", "lr": 0.01}, sigma=0.7,
                        calibration={"logit_bias": 0.0, "params": {"q": 0.4}})
    assert (s.lrs, s.params, s.logit_bias, s.sigma, s.c) == ((0.03, 0.1), {"q": 0.4}, 0.0, 0.7, presets.C_DEFAULT)
    assert s.pilot_lr == 0.1 and resolve.Setting("x", (0.01, 0.03, 0.1), 0.0, None, 0.25).pilot_lr == 0.03
    assert s.hparams(2) == [{"loss": "gce", "lr": lr, "seed": seed, "logit_bias": 0.0, "q": 0.4}
                            for lr in (0.03, 0.1) for seed in (0, 1)]
    flags = parse_args(["--mode", "train", "--losses", "gce", "--loss-params", "q=0.5", "--logit-bias", "1.5"])
    s = resolve.resolve(flags, "gce", {"model": "mlp1024", "lr": 0.01}, measure=lambda r: pytest.fail("not needed"))
    assert (s.logit_bias, s.params, s.sigma) == (1.5, {"q": 0.5}, None)
    auto = flags.replace(logit_bias="auto", sigma="auto", bias_c=0.3)
    s = resolve.resolve(auto, "gce", {"model": "mlp1024", "lr": 0.01}, measure=lambda r: 0.8)
    assert s.sigma == 0.8 and s.logit_bias == pytest.approx(theory.logit_bias(10, c=0.3, sigma=0.8))


def test_every_mode_is_one_row_with_one_signature():
    assert set(app.MODES) == set(REQUEST_MODES)
    for name, mode in app.MODES.items():
        params = list(inspect.signature(mode.run).parameters)
        assert params == ["req", "storage", "name", "resume", "missing"], name
        assert mode.data in ("needed", "optional", "unused")
