"""compare: best-configuration choice, mean ± s.e.m., compute sums and ratios, report files."""
import json
import math

import pytest

from services import compare as cmp
from services.storage import resolve_storage


def run(loss, lr, seed, top1, *, params=None, bias=0.0, secs=10.0, epochs=3, status="ok"):
    return {"loss": loss, "params": params or {}, "logit_bias": bias, "lr": lr, "seed": seed, "test_top1": top1,
            "test_top5": top1 + 10, "compute_seconds": secs, "gpu_seconds": 0.0, "epochs": epochs, "status": status}


GRID = {"wall_seconds": 100.0, "runs": [
    run("gce", 0.01, 0, 50.0, params={"q": 0.7}), run("gce", 0.01, 1, 54.0, params={"q": 0.7}),
    run("gce", 0.1, 0, 60.0, params={"q": 0.3}), run("gce", 0.1, 1, 58.0, params={"q": 0.3}),
    run("gce", 1.0, 0, 99.0, params={"q": 0.3}, status="error"),  # errored trials never win
    run("mae", 0.01, 0, 1.0), run("mae", 0.01, 1, 1.5),
]}
ANALYTIC = {"wall_seconds": 20.0, "calibration": {"gce": {"seconds": 0.5}, "mae": {"seconds": 0.25}}, "runs": [
    run("gce", 0.1, 0, 61.0, params={"q": 0.48}, secs=12.0), run("gce", 0.1, 1, 63.0, params={"q": 0.48}, secs=12.0),
    run("mae", 0.01, 0, 30.0, bias=3.77), run("mae", 0.01, 1, 34.0, bias=3.77),
]}


def test_mean_sem_matches_closed_form():
    mean, sem = cmp.mean_sem([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    sd = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert sem == pytest.approx(sd / math.sqrt(3))
    assert cmp.mean_sem([5.0]) == (5.0, 0.0)


def test_compare_picks_best_grid_config_and_computes_ratios():
    rows = {(r["loss"], r["mode"]): r for r in cmp.compare(GRID, ANALYTIC)}
    g, a = rows[("gce", "grid")], rows[("gce", "analytic")]
    assert g["params"] == {"q": 0.3} and g["lr"] == 0.1  # mean 59 beats 52; the errored 99 is ignored
    assert g["top1_mean"] == pytest.approx(59.0) and g["top1_sem"] == pytest.approx(1.0)
    assert g["trials"] == 5 and g["worker_seconds"] == pytest.approx(50.0) and g["trial_epochs"] == 15
    assert a["top1_mean"] == pytest.approx(62.0)
    assert a["worker_seconds"] == pytest.approx(24.5)  # trials + calibration time
    assert a["top1_ratio"] == pytest.approx(62.0 / 59.0)
    assert a["cost_ratio"] == pytest.approx(24.5 / 50.0)
    assert rows[("mae", "analytic")]["logit_bias"] == pytest.approx(3.77)


def test_compare_without_common_loss_fails():
    with pytest.raises(cmp.CompareError, match="no loss in common"):
        cmp.compare({"runs": [run("ce", 0.1, 0, 5.0)]}, ANALYTIC)


def test_report_files_written(tmp_path):
    storage = resolve_storage(tmp_path)
    rows = cmp.compare(GRID, ANALYTIC)
    files = cmp.write_report(storage, "cmp", rows, grid="g", analytic="a")
    for ext in ("md", "csv", "png", "json"):
        assert (tmp_path / "cmp" / f"compare.{ext}").stat().st_size > 0
    assert set(files) == {"md", "csv", "png", "json"}
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| gce | analytic | q=0.480 |" in md
    csv_lines = (tmp_path / "cmp" / "compare.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + 4
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"][1]["mode"] == "analytic"
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_load_summary_errors(tmp_path):
    storage = resolve_storage(tmp_path)
    with pytest.raises(cmp.CompareError, match="not found"):
        cmp.load_summary(storage, "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(cmp.CompareError, match="--resume"):
        cmp.load_summary(storage, "half")
