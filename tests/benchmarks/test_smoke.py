"""Smoke tests of the benchmark scripts (seconds each; the full benchmarks never run in CI)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


def _run(args, cwd, timeout=300):
    p = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{args} exited {p.returncode}\nstdout:\n{p.stdout[-2000:]}\nstderr:\n{p.stderr[-2000:]}"
    return p.stdout


def test_bench_theory_quick(tmp_path):
    # bench_theory prints its tables and writes nothing; run it from tmp_path all the same
    out = _run([BENCH / "bench_theory.py", "--quick"], cwd=tmp_path)
    assert "1000" in out
    assert list(tmp_path.iterdir()) == []


def test_paper_claims_smoke(tmp_path):
    out_dir = tmp_path / "out"
    out = _run([BENCH / "paper_claims.py", "--smoke", "--out", out_dir], cwd=tmp_path)
    assert "K=10" in out
    rows = [json.loads(line) for line in (out_dir / "paper_claims.jsonl").read_text().splitlines() if line.strip()]
    assert {r["label"] for r in rows} == {"ce", "mae*"}
    assert all(r["error"] is None and r["test_top1"] is not None for r in rows)
    assert (out_dir / "lr_pilot.jsonl").exists()
    md = (out_dir / "paper_claims.md").read_text()
    assert "| ce |" in md and "| mae* |" in md
    assert (out_dir / "accuracy_vs_K.png").stat().st_size > 0
    # resumable: a second call finds every run done and trains nothing
    again = _run([BENCH / "paper_claims.py", "--smoke", "--out", out_dir], cwd=tmp_path)
    assert "runs to do" not in again


def test_gpu_throughput_without_gpu_exits_zero(tmp_path):
    import torch

    if torch.cuda.is_available():
        return  # the real measurement is not a smoke test
    out = _run([BENCH / "gpu_throughput.py", "--out", tmp_path / "g"], cwd=tmp_path)
    assert "no CUDA GPU" in out


def test_gpu_throughput_cpu_dry_run(tmp_path):
    """--device cpu --smoke runs all three measurements (epoch, pipeline, 2 processes sharing the
    device) on the CPU so the script's own logic is exercised without a GPU."""
    out_dir = tmp_path / "g"
    _run([BENCH / "gpu_throughput.py", "--device", "cpu", "--smoke", "--out", out_dir], cwd=tmp_path)
    res = json.loads((out_dir / "gpu_throughput.json").read_text())
    assert res["config"]["device"] == "cpu" and res["config"]["train"] == 32 and "dry run" in res["gpu"]
    assert len(res["single"]["epoch_times"]) == 2 and res["epoch_time_median"] > 0
    assert 0 < res["pipeline"]["input_share"] < 1
    share = res["sharing"]["2"]
    assert "error" not in share and share["total_samples_per_sec_wall"] == pytest.approx(2 * 2 * 32 / share["wall"])
    assert "| 2 |" in (out_dir / "gpu_throughput.md").read_text()


def test_calibration_reference_smoke(tmp_path):
    out_dir = tmp_path / "c"
    out = _run([BENCH / "calibration_reference.py", "--smoke", "--out", out_dir], cwd=tmp_path)
    rows = [json.loads(line) for line in (out_dir / "calibration_reference.jsonl").read_text().splitlines()]
    assert {(r["label"], r["epochs"]) for r in rows} == {("ce", 1), ("gce+10", 1), ("ce", 2), ("gce+10", 2)}
    gce = next(r for r in rows if r["label"] == "gce+10")
    from robustloss_core import theory

    assert gce["loss_params"]["q"] == pytest.approx(theory.default_calibration("gce", 20, reference_classes=10).params["q"])
    assert "| gce+10 | q=" in out


@pytest.mark.parametrize("script", ["noise_k10", "many_classes_k1000", "dynamic_bias", "calibration_rule"])
def test_evidence_scripts_smoke(tmp_path, script):
    """The issue-11/12 evidence scripts (plain engine, no Ray) in their seconds-long form: every run finished
    with a test accuracy, and the JSON they write is strict (non-finite values stored as null)."""
    out_dir = tmp_path / "o"
    _run([BENCH / f"{script}.py", "--smoke", "--out", out_dir], cwd=tmp_path)
    text = (out_dir / f"{script}.json").read_text()
    res = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert res["smoke"] is True and res["runs"]
    assert all(r.get("test_top1") is not None or r.get("error") for r in res["runs"])



def test_initial_sigma_smoke(tmp_path):
    """benchmarks/initial_sigma.py --smoke: mlp1024 on synthetic K = 10, one seed; σ measured (finite,
    positive), the README claim judged, and the JSON strict."""
    out_dir = tmp_path / "o"
    out = _run([BENCH / "initial_sigma.py", "--smoke", "--out", out_dir], cwd=tmp_path)
    assert "mlp1024" in out
    text = (out_dir / "initial_sigma.json").read_text()
    res = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert res["smoke"] is True and len(res["rows"]) == 1
    row = res["rows"][0]
    assert row["model"] == "mlp1024" and row["K"] == 10 and row["skipped"] is None
    assert [s["seed"] for s in row["seeds"]] == [0] and row["sigma"]["mean"] > 0
    assert row["seeds"][0]["num_logits"] == row["batch"] * 10 and isinstance(row["claim_holds"], bool)
    assert "| mlp1024 | synthetic | 10 |" in (out_dir / "initial_sigma.md").read_text()

@pytest.mark.ray
def test_sweep_overhead_smoke(tmp_path):
    """benchmarks/sweep_overhead.py --smoke: 2 one-epoch trials, plain and through the CLI, in one run; the
    timeline adds up (every phase measured, none negative) and both sides trained the same configurations."""
    out_dir = tmp_path / "out"
    out = _run([BENCH / "sweep_overhead.py", "--smoke", "--out", out_dir], cwd=tmp_path, timeout=600)
    assert "smoke" in out
    res = json.loads((out_dir / "sweep_overhead.json").read_text())["results"]["smoke"]
    plain, cli = res["plain"], res["cli"]
    assert res["trials"] == 2 and len(plain["runs"]) == 2 and len(cli["test_top1"]) == 2
    assert sorted(r["test_top1"] for r in plain["runs"]) == sorted(cli["test_top1"])   # the same trainings
    phases = ("before_ray", "ray_start", "grid_phase", "teardown")
    assert all(cli[k] > 0 for k in phases) and 0 <= cli["idle_slots"] <= cli["grid_phase"]
    assert sum(cli[k] for k in phases) <= cli["wall"] + 1e-6
    assert cli["checkpoints_per_trial"] == 1.0   # one-epoch trials: the last epoch's checkpoint only
    assert "| smoke |" in (out_dir / "sweep_overhead.md").read_text()
