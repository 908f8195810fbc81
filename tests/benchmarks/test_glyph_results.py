"""The glyph K-sweep's bookkeeping: the pilot's pick, the results file and the README table against the run records."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import glyphs_ksweep as gk  # noqa: E402
import glyphs_runs as gr  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "glyphs_ksweep.json"
needs_results = pytest.mark.skipif(not RESULTS.exists(), reason="no glyph K-sweep results in this checkout")


def _records() -> dict:
    return {p.stem: json.loads(p.read_text()) for p in (REPO / "benchmarks" / "results" / "glyphs").glob("*.json")}


@needs_results
def test_each_row_is_the_mean_and_sem_of_its_run_records():
    records, res = _records(), json.loads(RESULTS.read_text())
    assert res["rows"]
    for row in res["rows"]:
        finals = []
        for seed in row["seeds"]:
            cfg = gr.run_config(row["loss"], row["K"], row["lr"], row["noise_rate"], seed)
            rec = records[gr.name_of(cfg)]
            assert rec["config"]["epochs"] == row["epochs"] == len(rec["history"])
            finals.append(rec["history"][-1]["test_top1"])
        assert row["top1_per_seed"] == finals
        assert math.isclose(row["top1_mean"], float(np.mean(finals)))
        if len(finals) > 1:
            assert math.isclose(row["top1_sem"], float(stats.sem(finals)))


@needs_results
def test_the_pilot_pick_is_the_best_noisy_validation_lr():
    records = _records()
    for K in gr.PILOT_KS:
        for label in gr.LABELS:
            val = {lr: records[gr.name_of(gr.run_config(label, K, lr, 0.4, 0))]["history"][-1]["val_top1"]
                   for lr in gr.PILOT_LRS}
            assert gr.pilot_pick(label, K) == max(val, key=lambda lr: (val[lr], lr))


@needs_results
def test_readme_table_is_the_results_files():
    res = json.loads(RESULTS.read_text())
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index(gk.MARKERS[0]):readme.index(gk.MARKERS[1])].splitlines()[1:]
    assert block == gk.table(res)


def test_analytic_rows_use_the_calibration_not_the_published_values():
    from robustloss_core import theory

    assert gr.loss_setting("GCE", 1000) == ("gce", 0.0, {"q": 0.7})
    loss, eps, params = gr.loss_setting("GCE+", 1000)
    assert params["q"] == pytest.approx(theory.default_calibration("gce", 1000, reference_classes=10).params["q"])
    assert gr.loss_setting("MAE*", 1000)[1] == pytest.approx(theory.logit_bias(1000))
    assert gr.loss_setting("GCE+", 10)[2]["q"] == pytest.approx(0.7)   # K = K_ref: the reference value
    assert gr.loss_setting("NF-MAE+", 1000)[2]["alpha"] > 100 > gr.loss_setting("NF-MAE", 1000)[2]["alpha"]


def test_real_optuna_run_budget_to_match_follows_the_validation_incumbent():
    import glyphs_k1000 as gk1

    # finishing order (ended_at) differs from the list order; the incumbent is picked on val, judged on test
    rows = [{"status": "ok", "epochs": 20, "ended_at": 3.0, "val_top1": 50.0, "test_top1": 60.0, "lr": 0.1,
             "logit_bias": 4.0, "params": {}},
            {"status": "ok", "epochs": 20, "ended_at": 1.0, "val_top1": 30.0, "test_top1": 20.0, "lr": 0.3,
             "logit_bias": 1.0, "params": {}},
            {"status": "error", "epochs": 3, "ended_at": 0.5, "val_top1": 90.0, "test_top1": 90.0},
            {"status": "ok", "epochs": 20, "ended_at": 2.0, "val_top1": 20.0, "test_top1": 58.0, "lr": 0.03,
             "logit_bias": 7.0, "params": {}}]
    analytic = {"top1_mean": 59.0, "tolerance": 0.5, "budget": 40}
    rec = gk1.optuna_record(rows, analytic, {"median": 40.0, "q25": 20.0, "q75": 60.0, "matched_seeds": 20,
                                             "seeds": 20, "per_seed": [1]})
    # trial 2 (ended 2.0) has the better test top-1 but a worse val: the incumbent stays at 20 % until trial 3
    assert [t["incumbent_test_top1"] for t in rec["trace"]] == [20.0, 20.0, 60.0]
    assert rec["trial_epochs"] == 60 and rec["budget_to_match"] == 60 and rec["ratio_to_match"] == 1.5
    assert rec["pick"]["logit_bias"] == 4.0 and rec["pick_minus_analytic"] == 1.0
    assert rec["replay_tpe"] == {"median": 40.0, "q25": 20.0, "q75": 60.0, "matched_seeds": 20, "seeds": 20}
    never = gk1.optuna_record(rows, dict(analytic, top1_mean=70.0), None)
    assert never["budget_to_match"] is None and never["ratio_to_match"] is None and "replay_tpe" not in never
    assert "never" in gk1.optuna_markdown({"mae": never})
