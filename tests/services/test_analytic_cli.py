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
    cal = json.loads(out.read_text())["calibration"]
    assert cal["mae"]["logit_bias"] == pytest.approx(6.090, abs=0.02)  # reference-params.md, c = 0.25
    assert cal["gce"]["params"]["q"] == pytest.approx(0.482, abs=0.005)
    assert cal["nce_agce"]["params"]["a"] == pytest.approx(18.2, rel=0.05)
    for loss in ("gce", "nce_agce"):
        assert cal[loss]["achieved"] == pytest.approx(cal[loss]["target"], rel=1e-4) and cal[loss]["seconds"] > 0
    store = tmp_path / "store" / "wv"
    assert json.loads((store / "calibration.json").read_text())["num_classes"] == 1000
    assert json.loads((store / "summary.json").read_text())["runs"] == []
    assert (store / "error_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_analytic_calibration_reference_k10(tmp_path):
    """--calibration-reference 10 calibrates from the CIFAR-10 settings and records the choice."""
    out = tmp_path / "a.json"
    proc = run_cli(["--mode", "analytic", "--calibrate-only", "--dataset", "synthetic", "--classes", "1000",
                    "--losses", "gce,nce_mae", "--calibration-reference", "10", "--name", "k10",
                    "--storage-path", str(tmp_path / "store"), "--json-out", str(out)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cal = json.loads(out.read_text())["calibration"]
    assert cal["gce"]["params"]["q"] == pytest.approx(0.261, abs=0.003) and cal["gce"]["reference_classes"] == 10
    assert cal["nce_mae"]["target"] == pytest.approx(-0.100, abs=0.002)  # NCE+MAE (1, 1) at K = 10
    stored = json.loads((tmp_path / "store" / "k10" / "calibration.json").read_text())
    assert stored["reference_classes"] == 10
    bad = run_cli(["--mode", "analytic", "--calibration-reference", "50", "--storage-path", str(tmp_path / "s2")])
    assert bad.returncode == 2 and "--calibration-reference" in bad.stderr and "50" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_bias_schedule_flag_reaches_every_biased_trial():
    """--bias-schedule weaning: every grid trial with ε > 0 trains on the ladder from its own ε;
    auto: the ladder only for analytic mode on webvision."""
    from robustloss_core.config import TrainConfig
    from services import app, sweeps
    from sweeps.run import parse_args

    args = parse_args(["--mode", "grid", "--losses", "mae", "--classes", "20", "--bias-schedule", "weaning",
                       "--grid-file", "sweeps/configs/paper/grids/webvision-mae-star.yaml", "--epochs", "3"])
    trials = sweeps.grid_trials(app.base_train(args), args.losses, {"mae": {"logit_bias": [0.0, 6.0]}}, [0.1], 1,
                                app.resources_from(args))
    ladders = [TrainConfig.from_dict(t["train"]).resolved().logit_bias_schedule for t in trials]
    assert ladders[0] is None
    assert ladders[1]["values"] == pytest.approx([6.0, 5.0, 4.0, 3.0, 2.0, 1.0]) and ladders[1]["hold"] == 11
    assert app.base_train(parse_args(["--mode", "grid", "--losses", "mae"]))["logit_bias_schedule"] is None
    wv = parse_args(["--mode", "analytic", "--dataset", "webvision", "--data-root", "/nonexistent", "--losses", "mae"])
    assert app.bias_schedule(wv) == {"kind": "weaning", "steps": 6, "hold": 11}
    wv.bias_schedule = "constant"
    assert app.bias_schedule(wv) is None
