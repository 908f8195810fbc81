"""`sweeps/run.py --mode analytic --dataset webvision` on a machine without the data: computes ε and
the calibrated parameters for K = 1000, stores them with the figure, says how to point --data-root
at the data, exits 0, and never starts Ray."""
import json

import pytest

from conftest import run_cli


def test_analytic_webvision_without_data(tmp_path):
    out = tmp_path / "a.json"
    proc = run_cli(["--mode", "analytic", "--dataset", "webvision", "--losses", "mae,gce,nce_agce", "--name", "wv",
                    "--data-root", str(tmp_path / "nowhere"), "--storage-path", str(tmp_path / "store"),
                    "--json-out", str(out)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr
    assert "--data-root" in proc.stdout and str(tmp_path / "nowhere") in proc.stdout
    from robustloss_core import theory

    cal = json.loads(out.read_text())["calibration"]
    assert cal["mae"]["logit_bias"] == pytest.approx(theory.logit_bias(1000), abs=1e-6)   # Eq. 4, c = 0.25
    for loss in ("gce", "nce_agce"):   # each loss from its own reference, recorded with the rule's verdict
        want = theory.default_calibration(loss, 1000, dataset="webvision").to_dict()
        assert cal[loss]["params"] == pytest.approx(want["params"]) and cal[loss]["reference_classes"] == want["reference_classes"]
        assert cal[loss]["achieved"] == pytest.approx(cal[loss]["target"], rel=1e-4) and cal[loss]["seconds"] > 0
        assert cal[loss]["rejected"] or cal[loss]["peak_ratio"] <= 2.0
    assert cal["gce"]["reference_classes"] == 10 and cal["nce_agce"]["reference_classes"] == 100
    store = tmp_path / "store" / "wv"
    stored = json.loads((store / "calibration.json").read_text())
    assert stored["num_classes"] == 1000 and stored["sigma"] == 1.0
    assert json.loads((store / "summary.json").read_text())["runs"] == []
    for png in ("error_curves.png", "epsilon_vs_k.png"):
        assert (store / png).read_bytes()[:4] == b"\x89PNG"


def test_analytic_calibration_reference_k10(tmp_path):
    """--calibration-reference 10 calibrates from the CIFAR-10 settings and records the choice."""
    out = tmp_path / "a.json"
    proc = run_cli(["--mode", "analytic", "--calibrate-only", "--dataset", "synthetic", "--classes", "1000",
                    "--losses", "gce,nce_mae", "--calibration-reference", "10", "--name", "k10",
                    "--storage-path", str(tmp_path / "store"), "--json-out", str(out)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cal = json.loads(out.read_text())["calibration"]
    from robustloss_core import theory

    want = theory.default_calibration("gce", 1000, dataset="synthetic", reference_classes=10).to_dict()
    assert cal["gce"]["params"] == pytest.approx(want["params"]) and cal["gce"]["reference_classes"] == 10
    # NCE+MAE from K_ref = 10 reaches the target only by letting the NCE term carry ~99 % of <delta_y> (34 % at
    # the reference): a one-term rescaling, rejected; it trains the reference parameters with Eq. 4's ε instead
    assert cal["nce_mae"]["rejected"] and not cal["nce_mae"]["criteria"]["term_shares"]["ok"]
    assert cal["nce_mae"]["term_shares"]["alpha"] > 0.9 and cal["nce_mae"]["reference_term_shares"]["alpha"] < 0.5
    assert cal["nce_mae"]["reference_classes"] == 10 and cal["nce_mae"]["label"] == "nce_mae*"
    assert cal["nce_mae"]["params"] == pytest.approx({"alpha": 1.0, "beta": 1.0})
    assert cal["nce_mae"]["logit_bias"] == pytest.approx(theory.logit_bias(1000))
    assert not cal["gce"]["rejected"]
    # the target is the reference curve at z* = 0: NCE+MAE (1, 1) at K = 10, computed independently
    ref = theory.mean_backprop_error("nce_mae", 10, [0.0], params={"alpha": 1.0, "beta": 1.0})
    assert cal["nce_mae"]["target"] == pytest.approx(float(ref.mean[0]), rel=0.02)
    stored = json.loads((tmp_path / "store" / "k10" / "calibration.json").read_text())
    assert stored["reference_classes"] == 10
    bad = run_cli(["--mode", "analytic", "--calibration-reference", "50", "--storage-path", str(tmp_path / "s2")])
    assert bad.returncode == 2 and "--calibration-reference" in bad.stderr and "50" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_bias_schedule_flag_reaches_every_biased_trial():
    """--bias-schedule weaning: every grid trial with ε > 0 trains on the ladder from its own ε;
    auto: the ladder only for analytic mode on webvision; dynamic: the per-epoch rule with --bias-c."""
    from robustloss_core.config import TrainConfig
    from services import resolve
    from services.spec import Fixed, TrialSpec
    from sweeps.run import parse_args

    req = parse_args(["--mode", "grid", "--losses", "mae", "--classes", "20", "--bias-schedule", "weaning",
                      "--grid-file", "sweeps/configs/paper/grids/webvision-mae-star.yaml", "--epochs", "3"])
    fixed = Fixed(train=req.base_train(), resources=req.resources())
    hps = resolve.grid_hparams(req.losses, {"mae": {"logit_bias": [0.0, 6.0]}}, [0.1], 1)
    ladders = [TrainConfig.from_dict(TrialSpec.from_hparams(fixed, hp).train_config()).resolved().logit_bias_schedule
               for hp in hps]
    assert ladders[0] is None
    assert ladders[1]["values"] == pytest.approx([6.0, 5.0, 4.0, 3.0, 2.0, 1.0]) and ladders[1]["hold"] == 11
    assert parse_args(["--mode", "grid", "--losses", "mae"]).base_train()["logit_bias_schedule"] is None
    wv = parse_args(["--mode", "analytic", "--dataset", "webvision", "--data-root", "/nonexistent", "--losses", "mae"])
    assert wv.resolved_bias_schedule() == {"kind": "weaning", "steps": 6, "hold": 11}
    assert wv.replace(bias_schedule="constant").resolved_bias_schedule() is None
    dyn = parse_args(["--mode", "grid", "--losses", "mae", "--bias-schedule", "dynamic", "--bias-c", "0.3"])
    assert dyn.base_train()["logit_bias_schedule"] == {"kind": "dynamic", "c": 0.3}


@pytest.mark.ray
def test_analytic_pick_pilot_and_measured_sigma(tmp_path):
    """--pick pilot trains the most different admissible solutions as real (pilot) trials, keeps the best on
    noisy validation and draws the solution set; --sigma auto feeds the measured σ of the model into Eq. 3/4."""
    import torch

    from robustloss_core import datasets, models, theory

    out = tmp_path / "a.json"
    # K = 200: above NCE+MAE's reference (K_ref = 100), so there is a solution set to pilot from
    proc = run_cli(["--mode", "analytic", "--losses", "nce_mae", "--classes", "200", "--dataset-args",
                    "train_per_class=10,test_per_class=5", "--epochs", "10", "--lrs", "0.1", "--pick", "pilot",
                    "--pilots", "2", "--pilot-fraction", "0.3", "--sigma", "auto", "--batch-size", "32", "--quiet", "--name", "p",
                    "--storage-path", str(tmp_path / "store"), "--json-out", str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    pilots = [r for r in summary["runs"] if r["role"] == "pilot"]
    main = [r for r in summary["runs"] if r["role"] == "main"]
    assert len(pilots) == 2 and all(r["epochs"] == 3 and r["status"] == "ok" for r in pilots)
    assert len({json.dumps(r["params"], sort_keys=True) for r in pilots}) == 2   # two different solutions
    best = max(pilots, key=lambda r: r["val_top1"])
    assert len(main) == 1 and main[0]["params"] == pytest.approx(best["params"]) and main[0]["epochs"] == 10
    stored = json.loads((tmp_path / "store" / "p" / "calibration.json").read_text())
    assert stored["losses"]["nce_mae"]["pick"]["rule"] == "pilot"
    assert (tmp_path / "store" / "p" / "solution_set_nce_mae.png").read_bytes()[:4] == b"\x89PNG"
    # σ: the stored one is the preset model's initial-logit std on the training data, computed here again
    bundle = datasets.build_dataset("synthetic", classes=200, train_per_class=10, test_per_class=5)
    torch.manual_seed(0)
    model = models.build_model("mlp1024", 200, bundle.input_shape)
    x = datasets.normalize_batch(bundle.tensors.train_x[:512], bundle.tensors.mean, bundle.tensors.std)
    with torch.no_grad():
        sigma = float(model(x).std())
    assert stored["sigma"] == pytest.approx(sigma, rel=1e-3) and stored["sigma_measured"] == stored["sigma"]
    assert summary["calibration"]["nce_mae"]["sigma"] == pytest.approx(sigma, rel=1e-3)
