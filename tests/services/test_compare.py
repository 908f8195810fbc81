"""compare: validation vs oracle selection, incomplete configurations, paired / Welch gap intervals against
scipy and the verdict vocabulary (better / tie / worse / undetermined; reproduced / contradicted / not
significant), full cost
(LR search and pilots included), report files written through services.storage. No Ray."""
import csv
import json
import math

import pytest
from scipy import stats

from services import compare as cmp
from services.storage import resolve_storage


def run(loss, lr, seed, test, val, *, params=None, bias=0.0, secs=10.0, epochs=3, status="ok", role=None,
        val_best=None, test_best=None, best_epoch=2):
    r = {"loss": loss, "params": params or {}, "logit_bias": bias, "lr": lr, "seed": seed, "test_top1": test,
         "test_top5": None if test is None else test + 10, "val_top1": val, "val_top1_clean": None if val is None else val + 5,
         "memorized": 1.0, "best_epoch": best_epoch, "val_top1_best": val if val_best is None else val_best,
         "test_top1_at_best": test if test_best is None else test_best, "compute_seconds": secs, "gpu_seconds": secs / 2,
         "trial_seconds": secs, "epochs": epochs, "status": status}
    if role:
        r["role"] = role
    return r


A, B = {"q": 0.7}, {"q": 0.3}
# grid gce: A wins on validation (71 > 61), B wins on test (59 > 51); the early-stopping view reverses both.
GRID_RUNS = [
    run("gce", 0.01, 0, 49.0, 70.0, params=A, val_best=60.0, test_best=65.0),
    run("gce", 0.01, 1, 53.0, 72.0, params=A, val_best=60.0, test_best=67.0),
    run("gce", 0.1, 0, 60.0, 60.0, params=B, val_best=80.0, test_best=55.0),
    run("gce", 0.1, 1, 58.0, 62.0, params=B, val_best=80.0, test_best=57.0),
    run("gce", 1.0, 0, 99.0, 99.0, params=B),                  # seed 1 errored: never chosen
    run("gce", 1.0, 1, None, None, params=B, status="error", epochs=1),
    run("gce", 0.5, 0, 98.0, 98.0, params=B),                  # seed 1 never ran: never chosen
    run("gce", 0.3, 0, 97.0, 97.0, params=B, role="pilot", epochs=9, secs=40.0),  # pilot: cost only
    run("mae", 0.01, 0, 10.0, 11.0), run("mae", 0.01, 1, 12.0, 13.0),
]
GRID = {"experiment": "g", "wall_seconds": 100.0, "lr_protocol": "searched", "num_classes": 10, "runs": GRID_RUNS}

Q = {"q": 0.48}
ANALYTIC_RUNS = [  # searched LR protocol: the analytic parameters at two learning rates, plus a pilot
    run("gce", 0.1, 0, 61.0, 66.0, params=Q, secs=12.0), run("gce", 0.1, 1, 63.0, 68.0, params=Q, secs=12.0),
    run("gce", 0.01, 0, 70.0, 50.0, params=Q, secs=11.0), run("gce", 0.01, 1, 72.0, 52.0, params=Q, secs=11.0),
    run("gce", 0.05, 0, 90.0, 90.0, params=Q, secs=30.0, epochs=1, role="pilot"),
    run("mae", 0.01, 0, 30.0, 31.0, bias=3.77), run("mae", 0.01, 1, 34.0, 35.0, bias=3.77),
]
ANALYTIC = {"experiment": "a", "wall_seconds": 20.0, "lr_protocol": "searched", "num_classes": 10,
            "calibration": {"gce": {"seconds": 0.5}, "mae": {"seconds": 0.25}}, "runs": ANALYTIC_RUNS}


def by(rows):
    return {(r["loss"], r["mode"]): r for r in rows}


def test_mean_sem_matches_closed_form():
    mean, sem = cmp.mean_sem([1.0, 2.0, 4.0])
    sd = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert mean == pytest.approx(7 / 3) and sem == pytest.approx(sd / math.sqrt(3))
    assert sem == pytest.approx(stats.sem([1.0, 2.0, 4.0]))
    assert cmp.mean_sem([5.0]) == (5.0, None)


def test_validation_and_oracle_selection_disagree():
    val, test = by(cmp.compare(GRID, ANALYTIC)), by(cmp.compare(GRID, ANALYTIC, selection="test"))
    g = val[("gce", "grid")]
    assert (g["params"], g["lr"], g["selection"]) == (A, 0.01, "val")
    assert (g["top1_mean"], g["val_top1_mean"]) == (pytest.approx(51.0), pytest.approx(71.0))  # A's test, not B's
    assert g["candidates"] == 2  # the errored, the missing-seed and the pilot configurations are out
    t = test[("gce", "grid")]
    assert (t["params"], t["lr"], t["selection"], t["top1_mean"]) == (B, 0.1, "test", pytest.approx(59.0))
    # the same rule picks the analytic learning rate: 0.1 on validation, 0.01 by the oracle
    assert val[("gce", "analytic")]["lr"] == 0.1 and val[("gce", "analytic")]["top1_mean"] == pytest.approx(62.0)
    assert test[("gce", "analytic")]["lr"] == 0.01 and test[("gce", "analytic")]["top1_mean"] == pytest.approx(71.0)


def test_early_stopping_view():
    g = by(cmp.compare(GRID, ANALYTIC))[("gce", "grid")]
    assert (g["es_params"], g["es_lr"]) == (B, 0.1)          # val_top1_best 80 > 60
    assert g["es_top1_mean"] == pytest.approx(56.0) and g["es_top1_sem"] == pytest.approx(1.0)
    assert g["es_best_epoch_mean"] == pytest.approx(2.0)
    t = by(cmp.compare(GRID, ANALYTIC, selection="test"))[("gce", "grid")]
    assert (t["es_params"], t["es_top1_mean"]) == (A, pytest.approx(66.0))  # test_top1_at_best 66 > 56


def test_incomplete_configurations_are_skipped():
    runs = [run("ce", 0.1, 0, 80.0, 80.0), run("ce", 0.1, 1, 80.0, 80.0, status="stopped"),  # ASHA-stopped seed
            run("ce", 0.2, 0, 70.0, 70.0),                                                  # seed 1 missing
            run("ce", 0.3, 0, 40.0, 40.0), run("ce", 0.3, 1, 42.0, 42.0)]
    rows = by(cmp.compare({"runs": runs}, {"runs": runs[3:]}))
    assert rows[("ce", "grid")]["lr"] == 0.3 and rows[("ce", "grid")]["candidates"] == 1
    none = by(cmp.compare({"runs": runs[:3]}, {"runs": runs[3:]}))[("ce", "grid")]
    assert none["top1_mean"] is None and none["seeds"] == 0 and none["trials"] == 3
    assert by(cmp.compare({"runs": runs[:3]}, {"runs": runs[3:]}))[("ce", "analytic")]["verdict"] == "undetermined"


def test_welch_interval_matches_scipy():
    a, g = [70.1, 71.9, 73.2, 69.5], [66.0, 70.5, 61.2]
    grid = {"runs": [run("ce", 0.1, s, v, v) for s, v in enumerate(g)]}
    analytic = {"runs": [run("ce", 0.1, s, v, v) for s, v in enumerate(a)]}
    r = by(cmp.compare(grid, analytic))[("ce", "analytic")]
    ref = stats.ttest_ind(a, g, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert r["gap"] == pytest.approx(sum(a) / 4 - sum(g) / 3)
    assert r["gap_ci95"] == pytest.approx([ci.low, ci.high])
    assert r["verdict"] == ("better" if ci.low > 0 else "worse" if ci.high < 0 else "tie")
    assert r["es_gap_ci95"] == pytest.approx([ci.low, ci.high])  # test_top1_at_best = test_top1 here
    assert by(cmp.compare(grid, analytic))[("ce", "grid")]["gap"] is None


def _pair(a, g, a_seeds=None):
    """compare rows of ce with test top-1 ``g`` (grid) and ``a`` (analytic) on seeds 0.. (or ``a_seeds``)."""
    grid = {"runs": [run("ce", 0.1, s, v, v) for s, v in enumerate(g)]}
    analytic = {"runs": [run("ce", 0.1, s, v, v) for s, v in zip(a_seeds or range(len(a)), a)]}
    rows = by(cmp.compare(grid, analytic))
    return rows[("ce", "grid")], rows[("ce", "analytic")]


@pytest.mark.parametrize("a, g, want", [
    ([80.0, 81.0, 83.0], [60.0, 61.0, 62.0], "better"),
    ([60.0, 61.0, 62.0], [80.0, 81.0, 83.0], "worse"),
    ([60.0, 70.0, 80.0], [65.0, 70.0, 75.0], "tie"),
    ([80.0], [60.0, 61.0], "undetermined"),
])
def test_verdicts(a, g, want):
    _, r = _pair(a, g)
    assert r["verdict"] == want and r["es_verdict"] == want
    if want == "undetermined":
        assert r["gap_ci95"] is None and r["gap"] == pytest.approx(80.0 - 60.5)


def test_shared_seeds_get_the_paired_interval_of_scipy():
    """Same seeds: the paired-t interval of the per-seed differences, matched by seed (the runs arrive
    in another order), as scipy.stats.ttest_rel; it is narrower than Welch's on this correlated data."""
    g, a = [61.0, 70.5, 66.2, 58.9], [63.0, 72.0, 68.8, 60.7]
    grid = {"runs": [run("ce", 0.1, s, v, v) for s, v in enumerate(g)]}
    analytic = {"runs": [run("ce", 0.1, s, v, v) for s, v in reversed(list(enumerate(a)))]}
    rows = by(cmp.compare(grid, analytic))
    gr, r = rows[("ce", "grid")], rows[("ce", "analytic")]
    ci = stats.ttest_rel(a, g).confidence_interval(0.95)
    assert r["interval"] == gr["interval"] == "paired" and r["es_interval"] == "paired"
    assert r["gap"] == pytest.approx(sum(a) / 4 - sum(g) / 4) and r["gap_ci95"] == pytest.approx([ci.low, ci.high])
    assert r["verdict"] == "better" and ci.low > 0                       # Welch on the same numbers: a tie
    welch = stats.ttest_ind(a, g, equal_var=False).confidence_interval(0.95)
    assert welch.low < 0 < welch.high
    assert r["top1_per_seed"] == {str(s): v for s, v in enumerate(a)} and gr["top1_per_seed"] == {str(s): v for s, v in enumerate(g)}
    assert r["es_top1_per_seed"] == r["top1_per_seed"]


def test_identical_configurations_tie_at_zero():
    """The issue's case: the same trials on both sides, gap 0 on every seed -> gap 0, [0, 0], tie."""
    g = [34.2, 31.0, 36.8]
    gr, r = _pair(list(g), g)
    assert (r["gap"], r["gap_ci95"], r["verdict"], r["interval"]) == (0.0, [0.0, 0.0], "tie", "paired")


def test_no_spread_is_undetermined_never_a_zero_width_verdict():
    """Both sides constant at different values and a constant non-zero paired difference: no spread to
    estimate (scipy 1.17 returns the zero-width [10, 10] with a precision-loss warning), so no interval
    and "undetermined"."""
    gr, r = _pair([40.0, 40.0, 40.0], [30.0, 30.0], a_seeds=[0, 1, 2])        # seeds differ: Welch
    assert r["interval"] == "welch" and r["gap"] == 10.0 and r["gap_ci95"] is None and r["verdict"] == "undetermined"
    gr, r = _pair([41.0, 42.0, 43.0], [31.0, 32.0, 33.0])                  # paired, d = 10 on every seed
    assert r["interval"] == "paired" and r["gap_ci95"] is None and r["verdict"] == "undetermined"
    assert cmp.welch_ci([5.0, 5.0], [5.0, 5.0]) == (0.0, [0.0, 0.0])


def test_welch_when_seeds_differ_matches_scipy():
    a, g = [70.1, 71.9, 73.2], [66.0, 70.5, 61.2]
    gr, r = _pair(a, g, a_seeds=[3, 4, 5])
    ci = stats.ttest_ind(a, g, equal_var=False).confidence_interval(0.95)
    assert r["interval"] == gr["interval"] == "welch" and r["gap_ci95"] == pytest.approx([ci.low, ci.high])


def test_every_row_names_its_interval():
    rows = cmp.compare(GRID, ANALYTIC)
    assert all(r["interval"] == "paired" and r["es_interval"] == "paired" for r in rows)   # seeds 0, 1 everywhere
    assert all(set(r["top1_per_seed"]) == {"0", "1"} for r in rows)


@pytest.mark.parametrize("ci, direction, word", [
    ([1.0, 3.0], 1, "reproduced"), ([-3.0, -1.0], -1, "reproduced"),
    ([-3.0, -1.0], 1, "contradicted"), ([1.0, 3.0], -1, "contradicted"),
    ([-1.9, 17.0], 1, "not significant"), (None, 1, "not significant"), ([math.nan, math.nan], -1, "not significant"),
])
def test_paper_wording(ci, direction, word):
    assert cmp.paper_wording(ci, direction) == word
    assert cmp.verdict(ci) in cmp.VERDICTS


def test_paper_wording_needs_a_direction():
    with pytest.raises(ValueError, match="paper_direction=0"):
        cmp.paper_wording([1.0, 2.0], 0)


def test_cost_counts_every_trial_search_and_pilots():
    rows = by(cmp.compare(GRID, ANALYTIC))
    g, a = rows[("gce", "grid")], rows[("gce", "analytic")]
    gruns = [r for r in GRID_RUNS if r["loss"] == "gce"]
    aruns = [r for r in ANALYTIC_RUNS if r["loss"] == "gce"]
    assert g["trials"] == len(gruns) and a["trials"] == len(aruns) and a["pilot_trials"] == 1
    assert g["trial_epochs"] == sum(r["epochs"] for r in gruns) and a["trial_epochs"] == sum(r["epochs"] for r in aruns)
    a_secs = sum(r["compute_seconds"] for r in aruns) + ANALYTIC["calibration"]["gce"]["seconds"]
    g_secs = sum(r["compute_seconds"] for r in gruns)
    assert a["worker_seconds"] == pytest.approx(a_secs) and g["worker_seconds"] == pytest.approx(g_secs)
    assert a["gpu_seconds"] == pytest.approx(sum(r["gpu_seconds"] for r in aruns))
    assert a["cost_ratio"] == pytest.approx(a_secs / g_secs)
    assert a["epoch_ratio"] == pytest.approx(a["trial_epochs"] / g["trial_epochs"])
    assert g["cost_ratio"] is None and g["epoch_ratio"] is None


def test_missing_val_metrics_need_val_fraction_or_oracle():
    old = {"experiment": "old-grid", "runs": [dict(run("ce", 0.1, 0, 50.0, None), val_top1=None)]}
    new = {"runs": [run("ce", 0.1, 0, 55.0, 55.0)]}
    with pytest.raises(cmp.CompareError, match=r"'old-grid'.*--val-fraction > 0.*--selection test"):
        cmp.compare(old, new)
    assert by(cmp.compare(old, new, selection="test"))[("ce", "grid")]["top1_mean"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="selection 'best'"):
        cmp.compare(old, new, selection="best")


def test_lr_protocol_defaults_to_unknown():
    rows = by(cmp.compare({"runs": GRID_RUNS}, ANALYTIC))
    assert rows[("gce", "grid")]["lr_protocol"] == "unknown" and rows[("gce", "analytic")]["lr_protocol"] == "searched"


def test_compare_without_common_loss_fails():
    with pytest.raises(cmp.CompareError, match="no loss in common"):
        cmp.compare({"runs": [run("ce", 0.1, 0, 5.0, 5.0)]}, ANALYTIC)


@pytest.mark.parametrize("selection", ["val", "test"])
def test_report_files_written(tmp_path, selection):
    storage = resolve_storage(tmp_path)
    rows = cmp.compare(GRID, ANALYTIC, selection=selection)
    files = cmp.write_report(storage, "cmp", rows, grid="g", analytic="a", selection=selection)
    assert set(files) == {"md", "csv", "png", "json"}
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved["selection"] == selection and saved["rows"] == json.loads(json.dumps(rows))
    table = list(csv.DictReader((tmp_path / "cmp" / "compare.csv").open()))
    a = by(rows)[("gce", "analytic")]
    ca = next(r for r in table if (r["loss"], r["mode"]) == ("gce", "analytic"))
    assert len(table) == len(rows) and ca["params"] == "q=0.480000"
    assert float(ca["gap_ci95_low"]) == pytest.approx(a["gap_ci95"][0]) and float(ca["worker_seconds"]) == pytest.approx(a["worker_seconds"])
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert ("oracle" in md) == (selection == "test")
    assert "LR protocol: grid searched, analytic searched" in md.splitlines()[0]
    lo, hi = a["gap_ci95"]
    assert f"| {a['gap']:+.2f} [{lo:+.2f}, {hi:+.2f}] paired | {a['verdict']} |" in md
    assert ca["interval"] == "paired" and ca["top1_per_seed"] == f"0={a['top1_per_seed']['0']:.6f},1={a['top1_per_seed']['1']:.6f}"
    assert f"{a['top1_mean']:.2f} ± {a['top1_sem']:.2f}" in md
    es_other = {"val": "56.00 ± 1.00 (q=0.3, lr=0.1)", "test": "66.00 ± 1.00 (q=0.7, lr=0.01)"}[selection]
    assert es_other in next(line for line in md.splitlines() if line.startswith("| GCE | grid |"))  # ES chose elsewhere
    with pytest.raises(ValueError, match="differs"):
        cmp.write_report(storage, "cmp", rows, grid="g", analytic="a", selection={"val": "test", "test": "val"}[selection])


def test_plot_annotations_chance_line_and_oracle_title():
    import matplotlib.pyplot as plt

    for selection in ("val", "test"):
        rows = cmp.compare(GRID, ANALYTIC, selection=selection)
        fig = cmp.figure(rows)
        ax = fig.axes[0]
        assert ("oracle" in ax.get_title()) == (selection == "test")
        texts = {t.get_text() for t in ax.texts}
        analytic_gce = {"val": "q=0.48, lr=0.1", "test": "q=0.48, lr=0.01"}[selection]  # 3 significant digits
        assert analytic_gce in texts and "ε=3.77, lr=0.01" in texts and len(texts) == len(rows)
        chance = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
        assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(100 / GRID["num_classes"])
        plt.close(fig)


def test_load_summary_errors(tmp_path):
    storage = resolve_storage(tmp_path)
    with pytest.raises(cmp.CompareError, match="not found"):
        cmp.load_summary(storage, "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(cmp.CompareError, match="--resume"):
        cmp.load_summary(storage, "half")
