"""The real Fashion-MNIST pipeline's bookkeeping (benchmarks/fmnist_runs.py, benchmarks/fashionmnist_mlp1024.py),
checked on the committed run records and on records written here: no training."""
import json
import math
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import fashionmnist_mlp1024 as agg  # noqa: E402
import fmnist_runs as fr  # noqa: E402

RECORDS = Path(fr.OUT)


def _record(cfg: dict, epochs: int, top1=lambda e: 50.0 + e) -> dict:
    hist = [{"epoch": e, "test_top1": top1(e), "val_top1": 40.0 + e, "memorized": 0.0} for e in range(1, epochs + 1)]
    return {"name": fr.name_of(cfg), "config": cfg, "status": "ok", "history": hist, "wall_s": 1.0}


def test_a_longer_constant_run_stands_for_a_shorter_one(tmp_path, monkeypatch):
    monkeypatch.setattr(fr, "OUT", str(tmp_path))
    long = fr.run_config(loss="gce", lr=0.01, noise_rate=0.4, epochs=60, gamma=1.0)
    short = dict(long, epochs=20)
    (tmp_path / (fr.name_of(long) + ".json")).write_text(json.dumps(_record(long, 60)))
    hit = fr.find_record(short)
    assert hit["truncated_from"] == fr.name_of(long) and len(hit["history"]) == 20
    assert hit["history"][-1]["test_top1"] == 70.0 and fr.pending([short]) == []
    # a different seed, lr or schedule is another computation: still pending
    for other in (dict(short, seed=1), dict(short, lr=0.003), dict(short, lr_schedule={"kind": "exponential", "gamma": 0.95})):
        assert fr.find_record(other) is None and fr.pending([other]) == [other]


def test_a_second_runner_skips_a_claimed_run(tmp_path, monkeypatch):
    """A fresh progress file (another runner's claim) keeps the run out of pending() and makes _worker skip it
    before any training."""
    monkeypatch.setattr(fr, "OUT", str(tmp_path))
    cfg = fr.run_config(loss="ce", lr=0.005, noise_rate=0.0, seed=2, epochs=60, gamma=1.0)
    (tmp_path / (fr.name_of(cfg) + ".json.partial")).write_text(json.dumps({"config": cfg, "history": []}))
    assert fr.pending([cfg]) == []
    assert fr._worker((cfg, str(tmp_path), fr.name_of)) == (fr.name_of(cfg), -1.0)
    assert not (tmp_path / (fr.name_of(cfg) + ".json")).exists()
    old = 2 * 600   # a progress file older than 10 minutes is a dead runner's: the run is pending again
    p = tmp_path / (fr.name_of(cfg) + ".json.partial")
    os.utime(p, (p.stat().st_atime - old, p.stat().st_mtime - old))
    assert fr.pending([cfg]) == [cfg]


@pytest.mark.skipif(not RECORDS.is_dir(), reason="no committed real-data records (benchmarks/results/fmnist)")
def test_aggregate_of_the_committed_records(tmp_path):
    """The results file from the committed run records: Table 5 at the refit has every planned row, each with the
    seeds run so far (0-2 when complete) and the paper's number; the ours-vs-paper intervals are Welch's from the
    two s.e.m.s, the claims' paired intervals scipy's, their words the sign rule's; the rankings and MAE*'s per-seed
    rank are recounted here; the README's tables are the file's."""
    from scipy import stats

    assert agg.main(["--out", str(tmp_path / "fm")]) == 0
    res = json.loads((tmp_path / "fm.json").read_text())
    rows = {(r["loss"], r["noise_rate"]): r for r in res["rows"]}
    assert list(rows) == list(fr.PREDICT_CELLS)
    for (label, rate), r in rows.items():
        # a row has the seeds whose runs are in (fmnist_runs.py predict runs them seed-major), 0-2 when complete
        n = len(r["seeds"])
        assert r["seeds"] == [0, 1, 2][:n] and r["complete"] == (n == 3) and r["paper_mean"] == agg.PAPER_T5[label][rate][0]
        assert r["epochs"] == fr.REFIT["epochs"] and r["top1_mean"] == pytest.approx(sum(r["top1_per_seed"]) / n)
        if n < 2:
            assert r["vs_paper"]["ci95"] is None
            continue
        lo, hi = r["vs_paper"]["ci95"]
        se = math.hypot(r["top1_sem"], r["paper_sem"])
        t = stats.ttest_ind_from_stats(r["top1_mean"], r["top1_sem"] * math.sqrt(n), n, r["paper_mean"],
                                       r["paper_sem"] * math.sqrt(5), 5, equal_var=False).statistic
        assert (lo + hi) / 2 == pytest.approx(r["top1_mean"] - r["paper_mean"]) and t == pytest.approx((lo + hi) / 2 / se)
    # a claim is stated once its two rows share two seeds: all of REFIT_CLAIMS that do, and only those
    shared = lambda a, ra, b, rb: len(set(rows[(a, ra)]["seeds"]) & set(rows[(b, rb)]["seeds"]))
    assert len(res["claims"]) == sum(shared(*c[:4]) >= 2 for c in agg.REFIT_CLAIMS)
    for c in res["claims"]:
        a_label, b_label = (part.split(" (")[0] for part in c["claim"].split(" > "))
        a_rate, b_rate = (float(part.split("(")[1].split(" %")[0]) / 100 for part in c["claim"].split(" > "))
        a = dict(zip(rows[(a_label, a_rate)]["seeds"], rows[(a_label, a_rate)]["top1_per_seed"]))
        b = dict(zip(rows[(b_label, b_rate)]["seeds"], rows[(b_label, b_rate)]["top1_per_seed"]))
        ci = stats.ttest_rel([a[s] for s in c["seeds"]], [b[s] for s in c["seeds"]]).confidence_interval()
        assert c["interval"] == "paired" and c["ci95"] == pytest.approx([ci.low, ci.high])
        # "MAE* performed best" is the sentence's direction (+1) even where Table 5's numbers have MAE* below
        direction = 1 if c["basis"] == "Table 5's text" else (1 if c["paper_gap"] >= 0 else -1)
        assert c["paper_direction"] == direction and (c["basis"] == "Table 5's text") == (a_label == "MAE*" and a_rate > 0)
        word = ("not significant" if ci.low <= 0 <= ci.high
                else "reproduced" if (ci.low > 0) == (direction == 1) else "contradicted")
        assert c["wording"] == word
    for k in res["rankings"]:
        robust = [rows[(lab, k["noise_rate"])] for lab in agg.ROBUST]
        assert k["ours"] == [r["loss"] for r in sorted(robust, key=lambda r: -sum(r["top1_per_seed"]) / len(r["seeds"]))]
        assert k["paper"] == [r["loss"] for r in sorted(robust, key=lambda r: -r["paper_mean"])]
        seeds = sorted(set.intersection(*(set(r["seeds"]) for r in robust)))
        assert sorted(map(int, k["mae_star_rank_per_seed"])) == seeds
        for s in seeds:
            mine = dict(zip(rows[("MAE*", k["noise_rate"])]["seeds"], rows[("MAE*", k["noise_rate"])]["top1_per_seed"]))[s]
            others = [dict(zip(r["seeds"], r["top1_per_seed"]))[s] for r in robust]
            assert k["mae_star_rank_per_seed"][str(s)] == 1 + sum(v > mine for v in others)
    assert [k["noise_rate"] for k in res["rankings"]] == [0.4, 0.6]
    # the first fit (two CE numbers) is kept as the record of what its Table 5 used
    first = res["first_fit"]["setup"]["fitted"]
    assert first["best"] == min(first["candidates"], key=lambda c: c["distance"])
    assert (first["best"]["gamma"], first["best"]["epoch"]) == (fr.FIT["gamma"], fr.FIT["report_epoch"])
    # setup.fitted is the refit (five CE cells); it chose REFIT, and the product's preset is that choice
    from robustloss_core import presets

    refit = res["setup"]["fitted"]["best"]
    assert (refit["gamma"], refit["batch"], refit["epoch"]) == (fr.REFIT["gamma"], fr.REFIT["batch"], fr.REFIT["epochs"])
    assert (res["setup"]["batch_size"], res["setup"]["epochs"], res["setup"]["val_fraction"]) == (refit["batch"], refit["epoch"], 0.0)
    setup = presets.MLP1024_SETUP
    assert (setup["lr_schedule"]["kind"] == "constant") == (refit["gamma"] == 1.0)
    assert (setup["batch_size"], setup["epochs"]) == (refit["batch"], refit["epoch"])
    assert len(refit["residuals"]) == 5 and refit["mean_abs_residual"] == pytest.approx(
        sum(map(abs, refit["residuals"].values())) / 5, abs=1e-3)
    # the README's Table 5, claims, rankings and fit tables are the results file's, and so are its run times
    readme = (REPO / "README.md").read_text()
    assert "\n".join(agg.rows_markdown(res["rows"], [])) in readme
    assert "\n".join(agg.claims_markdown(res["claims"])) in readme
    assert "\n".join(agg.rankings_markdown(res["rankings"])) in readme
    assert "\n".join(agg.fit5_markdown(res["setup"]["fitted"])[:-2]) in readme
    late = " / ".join(f"{v:+.2f}" for v in refit["late_mean_residuals"].values())
    assert f"over epochs {refit['late_epochs'][0]}–{refit['late_epochs'][1]} the mean residuals are {late}" in readme
    t = res["run_times"]
    assert t["runs"] == sum(not x for r in res["rows"] for x in r["read_from_longer_run"])
    assert f"{t['runs']} runs, {t['min_s']:.0f}–{t['max_s']:.0f} s each (median {t['median_s']:.0f} s" in readme


def test_fit5_picks_the_group_and_epoch_with_the_least_mean_residual_over_five_cells():
    paper = {0.0: 90.0, 0.1: 86.0, 0.2: 80.0, 0.4: 63.0, 0.6: 46.0}
    runs = []
    # group (γ 1.0, batch 64): test top-1 = paper + |e - 3| at every cell -> residual 0 at epoch 3 of 5 (interior)
    for rate, target in paper.items():
        cfg = fr.run_config(noise_rate=rate, gamma=1.0, batch=64, epochs=5, val_fraction=0.0)
        runs.append(_record(cfg, 5, top1=lambda e, t=target: t + abs(e - 3)))
    # group (γ 0.9, batch 128): 0.5 below the paper everywhere, but one cell missing -> never the pick
    for rate, target in list(paper.items())[:4]:
        cfg = fr.run_config(noise_rate=rate, gamma=0.9, batch=128, epochs=5, val_fraction=0.0)
        runs.append(_record(cfg, 5, top1=lambda e, t=target: t - 0.5))
    # excluded: the 10 % hold-out, another seed, another lr
    bad = fr.run_config(noise_rate=0.4, gamma=0.95, batch=64, epochs=5)
    runs += [_record(bad, 5, top1=lambda e: 63.0), _record(dict(bad, val_fraction=0.0, seed=1), 5, top1=lambda e: 63.0),
             _record(dict(bad, val_fraction=0.0, lr=0.01), 5, top1=lambda e: 63.0)]
    fit = agg.fit5_choice(runs, paper)
    assert [(g["gamma"], g["batch"]) for g in fit["groups"]] == [(0.9, 128), (1.0, 64)]
    partial = fit["groups"][0]
    assert partial["best"] is None and partial["last"]["residuals"] == {0.0: -0.5, 0.1: -0.5, 0.2: -0.5, 0.4: -0.5}
    best = fit["best"]
    assert (best["gamma"], best["batch"], best["epoch"], best["mean_abs_residual"]) == (1.0, 64, 3, 0.0)
    assert fit["groups"][1]["last"]["mean_abs_residual"] == 2.0   # epoch 5: |5 - 3| = 2 at all five cells
    assert best["edge"] == ["γ = 1 is the largest searched", "batch 64 is the smallest searched"]
