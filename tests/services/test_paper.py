"""Paper configs (sweeps/configs/paper/): they parse, name only known CLI flags/losses/datasets, hold the
paper's numbers, and pair with reproduced rows."""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services import paper as P

REPO = Path(__file__).resolve().parents[2]
PAPER_DIR = REPO / "sweeps" / "configs" / "paper"
EXPECTED_FILES = {
    "table2_cifar10_symmetric.yaml", "table2_cifar10_asymmetric.yaml", "table2_cifar100_symmetric.yaml",
    "table2_fashionmnist_symmetric.yaml", "table2_fashionmnist_asymmetric.yaml", "table3_webvision.yaml",
    "table5_cifar10_mlp.yaml", "table5_fashionmnist_mlp.yaml", "table6_cifar10_mlp_lr.yaml",
    "table6_fashionmnist_mlp_lr.yaml",
}
# The CLI flags the brief names (YAML keys = flag names with "_").
BRIEF_KEYS = {"mode", "dataset", "data_root", "classes", "losses", "loss_params", "logit_bias", "lr", "lrs", "noise",
              "noise_rate", "noise_variant", "epochs", "batch_size", "model", "seeds", "search", "num_workers",
              "use_gpu", "gpus_per_trial", "storage_path", "name", "grid_file",
              "bias_schedule"}   # not in the brief: added so Table 3's NF-MAE** / genCE** rows can run
ALL_LOSSES = {"ce", "mae", "gce", "sce", "nce", "nfl", "agce", "nce_mae", "nfl_mae", "nce_agce", "bitemp"}
DATASETS = {"synthetic", "cifar10", "cifar100", "fashionmnist", "webvision", "mini-webvision", "imagefolder"}


def _cli():
    """sweeps/run.py as a module (the editable install may predate the ``sweeps`` package)."""
    try:
        import sweeps.run as run
    except ImportError:
        import importlib.util

        spec = importlib.util.spec_from_file_location("_paper_test_cli", REPO / "sweeps" / "run.py")
        run = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(run)
    return run


def cfg(name):
    return P.load_paper_config(PAPER_DIR / name)


def all_configs():
    return [P.load_paper_config(p) for p in P.paper_configs()]


def top1(c, setting, label):
    return P.reported_for(c, setting, label)["top1"]


# ----------------------------------------------------------------------------- files parse, flags known
def test_every_paper_file_parses():
    paths = P.paper_configs()
    assert {p.name for p in paths} == EXPECTED_FILES
    for path in paths:
        c = P.load_paper_config(path)
        assert c.table in {"Table 2", "Table 3", "Table 5", "Table 6"} and c.description and c.path == path
        assert c.base["seeds"] == 5
        for setting in c.reported:
            assert setting in c.settings


def test_every_file_under_paper_dir_is_a_config_or_grid():
    files = [p for p in PAPER_DIR.rglob("*") if p.is_file()]
    grids = set(P.grid_files())
    assert grids, "the paper configs need their one-configuration grid files"
    for path in files:
        assert path in set(P.paper_configs()) | grids, f"unexpected file {path}"


def test_grid_files_are_valid_grids_with_published_values():
    from services.request import load_grids

    for path in P.grid_files():
        data = yaml.safe_load(path.read_text())
        assert set(data) == {"lrs", "losses"}
        assert set(data["losses"]) <= ALL_LOSSES
        grids, lrs = load_grids(str(path), list(data["losses"]))
        assert lrs == [0.1]
        for loss, grid in grids.items():  # one configuration per loss: no search
            assert all(len(v) == 1 for v in grid.values()), (path.name, loss)
    presets = pytest.importorskip("robustloss_core.presets")
    for fname, dataset in (("published-k10.yaml", "cifar10"), ("published-k10.yaml", "fashionmnist"),
                           ("published-cifar100.yaml", "cifar100"), ("published-webvision.yaml", "webvision")):
        data = yaml.safe_load((PAPER_DIR / "grids" / fname).read_text())
        for loss, grid in data["losses"].items():
            grid = dict(grid or {})
            assert grid.pop("logit_bias", [0.0]) == [0.0]
            want = presets.loss_preset(loss, dataset)["params"]
            assert {k: v[0] for k, v in grid.items()} == pytest.approx(want), (fname, dataset, loss)
    from robustloss_core import theory

    eps_1000 = theory.logit_bias(1000)   # Eq. 4, c = 0.25: the grids carry it rounded
    star = yaml.safe_load((PAPER_DIR / "grids" / "webvision-mae-star.yaml").read_text())
    assert star["losses"]["mae"]["logit_bias"] == [pytest.approx(eps_1000, abs=0.005)]
    weaned = yaml.safe_load((PAPER_DIR / "grids" / "webvision-star-star.yaml").read_text())
    for loss, grid in weaned["losses"].items():   # NF-MAE** / genCE**: published params + ε(1000)
        grid = dict(grid)
        assert grid.pop("logit_bias") == [pytest.approx(eps_1000, abs=0.005)]
        assert {k: v[0] for k, v in grid.items()} == pytest.approx(presets.loss_preset(loss, "webvision")["params"])
    t3 = cfg("table3_webvision.yaml")
    for label in ("NF-MAE**", "genCE**"):
        assert P.row_flags(t3, "webvision", label)["bias_schedule"] == "weaning"


def _all_invocation_flags():
    for c in all_configs():
        for setting in c.settings:
            yield c, setting, P.setting_flags(c, setting)
            for inv in P.invocations(c, setting):
                yield c, setting, inv["flags"]


def test_merged_flags_name_only_known_cli_keys_losses_and_datasets():
    try:
        from robustloss_core.losses import LOSSES
        losses = set(LOSSES)
    except ImportError:
        losses = ALL_LOSSES
    for c, setting, flags in _all_invocation_flags():
        where = f"{c.path.name}:{setting}"
        assert set(flags) <= BRIEF_KEYS, (where, set(flags) - BRIEF_KEYS)
        assert flags["dataset"] in DATASETS, where
        assert flags["mode"] in {"analytic", "grid"}, where
        assert flags["model"] in {"resnet32", "resnet34", "wrn101", "mlp1024"}, where
        assert flags["losses"] and set(flags["losses"]) <= losses, where
        assert flags["noise"] in {"none", "symmetric", "asymmetric"}, where
        assert flags["seeds"] in (1, 5), where
        if flags["noise"] == "none":
            assert flags.get("noise_rate", 0.0) == 0.0, where
        if flags["mode"] == "grid":
            grid_file = REPO / flags["grid_file"]
            assert grid_file.is_file(), (where, grid_file)
            assert set(flags["losses"]) <= set(yaml.safe_load(grid_file.read_text())["losses"]), where
    for c in all_configs():
        for label, spec in c.row_losses.items():
            assert spec["loss"] in losses, (c.path.name, label)


def test_flags_are_cli_parser_options(tmp_path):
    try:
        parser = _cli().build_parser()
    except ImportError as exc:  # the CLI's own dependencies are not there yet
        pytest.skip(f"sweeps/run.py parser unavailable: {exc}")
    dests = {a.dest for a in parser._actions}
    path = tmp_path / "invocation.yaml"
    for c, setting, flags in _all_invocation_flags():
        assert set(flags) <= dests, (c.path.name, setting, set(flags) - dests)
        path.write_text(yaml.safe_dump(flags))
        loaded = _cli()._load_config(str(path), parser)  # the CLI's own --config reader accepts it
        assert loaded["dataset"] == flags["dataset"] and loaded["losses"] == list(flags["losses"])


def test_settings_cover_the_paper_columns():
    for c in all_configs():
        if c.table == "Table 2":
            kind = c.base["noise"]
            prefix = "sym" if kind == "symmetric" else "asym"
            assert list(c.settings) == [f"{prefix}-{r}" for r in (0, 10, 20, 40, 60)]
            assert P.setting_flags(c, f"{prefix}-0")["noise"] == "none"
            assert P.setting_flags(c, f"{prefix}-40") == {**c.base, "noise_rate": 0.4}
            assert c.base["epochs"] == 200 and c.base["lr"] == 0.1
            assert c.base["model"] == ("resnet34" if c.base["dataset"] == "cifar100" else "resnet32")
            n = 10 if c.base["dataset"] == "cifar100" else 9
            assert all(len(rows) == n for rows in c.reported.values())
        elif c.table == "Table 6":
            assert len(c.settings) == 9 and c.base["mode"] == "grid" and c.base["model"] == "mlp1024"
            lrs = [P.setting_flags(c, s)["lrs"] for s in c.settings]
            assert lrs == [[x] for x in (5e-4, 8e-4, 1e-3, 3e-3, 5e-3, 8e-3, 0.01, 0.03, 0.05)]
            assert all(len(rows) == 7 for rows in c.reported.values())
        elif c.table == "Table 5":
            assert len(c.settings) == 5 and c.base["model"] == "mlp1024"
            assert all(len(rows) == 8 for rows in c.reported.values())
        else:
            assert c.base["dataset"] == "webvision" and c.base["epochs"] == 198 and c.base["model"] == "wrn101"
            assert len(c.reported["webvision"]) == 11


def test_invocations_produce_every_runnable_row():
    for c in all_configs():
        for setting in c.settings:
            invs = P.invocations(c, setting)
            assert invs[0]["name"] == f"{c.path.stem}-{setting}"
            labels = [label for inv in invs for label in inv["labels"]]
            runnable = [label for label in c.reported[setting] if c.row_losses[label].get("runnable", True)]
            assert sorted(labels) == sorted(runnable)
            for inv in invs:  # each invocation trains exactly the losses its rows need
                assert set(inv["flags"]["losses"]) == {c.row_losses[label]["loss"] for label in inv["labels"]}
            assert len({inv["name"] for inv in invs}) == len(invs)


# ----------------------------------------------------------------------------- transcribed numbers
PAPER_TEXT = REPO.parent / "shared" / "paper" / "enhancing-noise-robust-losses.txt"


@pytest.mark.skipif(not PAPER_TEXT.exists(), reason="the paper's text lives in ../shared beside the checkout")
def test_every_transcribed_number_is_in_the_paper():
    """Each reported (mean, sem) in the paper configs appears in the paper's own text as 'mean sem' (the
    tables' layout), so a mistyped or invented number fails here."""
    import re

    text = PAPER_TEXT.read_text()
    pairs = set(re.findall(r"(\d+\.\d\d)\s*(?:±\s*)?(\d+\.\d\d)?", text))
    singles = {m for m, _ in pairs} | {s for _, s in pairs if s}
    checked = 0
    for f in sorted(PAPER_DIR.glob("table*.yaml")):
        for setting, rows in cfg(f.name).reported.items():
            for label, rep in rows.items():
                for kind in ("top1", "top5"):
                    if not rep.get(kind):
                        continue
                    mean, sem = rep[kind]
                    m = f"{mean:.2f}"
                    if sem is None:
                        assert m in singles, (f.name, setting, label, kind, m)
                    else:
                        assert (m, f"{sem:.2f}") in pairs, (f.name, setting, label, kind, m, sem)
                    checked += 1
    assert checked > 200


def test_table5_learning_rates_reproduce_table6_and_presets():
    """row_lr was derived by matching Table 5's 0 % column to Table 6: check the derivation and presets."""
    key = {"CE": "ce", "MAE": "mae", "MAE*": "mae*", "genCE": "gce", "NF-MAE": "nfl_mae", "NCE-MAE": "nce_mae",
           "biTemp": "bitemp"}
    for ds in ("cifar10", "fashionmnist"):
        t5, t6 = cfg(f"table5_{ds}_mlp.yaml"), cfg(f"table6_{ds}_mlp_lr.yaml")
        assert set(t5.row_lr) == set(t5.reported["sym-0"])
        for label, lr in t5.row_lr.items():
            if label == "symCE":  # not in Table 6: lr reconstructed
                assert t5.row_losses[label].get("reconstructed")
                continue
            setting = next(s for s in t6.settings if P.setting_flags(t6, s)["lrs"] == [lr])
            assert top1(t6, setting, label)[0] == top1(t5, "sym-0", label)[0], (ds, label)
            assert P.expected_lr(t5, "sym-10", label) == lr
        try:
            from robustloss_core import presets
        except ImportError:
            continue
        for label, k in key.items():
            assert presets.mlp_lr(k.rstrip("*"), ds, logit_bias=k.endswith("*")) == t5.row_lr[label]


def test_row_params_match_presets():
    presets = pytest.importorskip("robustloss_core.presets")
    for c in all_configs():
        for label, spec in c.row_losses.items():
            if spec.get("params") and not spec.get("calibrated"):
                want = presets.loss_preset(spec["loss"], c.base["dataset"])["params"]
                assert spec["params"] == pytest.approx({k: want[k] for k in spec["params"]}), (c.path.name, label)


# ----------------------------------------------------------------------------- pairing
def row(loss, mode, top, sem=0.1, *, bias=0.0, params=None, lr=None, top5=None):
    r = {"loss": loss, "mode": mode, "params": params or {}, "logit_bias": bias, "top1_mean": top, "top1_sem": sem}
    if lr is not None:
        r["lr"] = lr
    if top5 is not None:
        r.update(top5_mean=top5, top5_sem=0.2)
    return r


def test_match_rows_table2():
    c = cfg("table2_cifar10_symmetric.yaml")
    rows = [
        row("mae", "analytic", 86.0, bias=1.272, lr=0.1),                  # MAE*
        row("ce", "analytic", 66.0, lr=0.1),
        row("mae", "grid", 70.0, bias=0.0, lr=0.1),                        # MAE
        row("gce", "analytic", 85.0, params={"q": 0.7}, lr=0.1),
        row("nce_agce", "analytic", float("nan"), params={"alpha": 1.0, "beta": 4.0, "a": 6.0, "q": 1.5}),  # not run
        row("sce", "analytic", 50.0),                                      # no such paper row
        row("agce", "analytic", 80.0, params={"a": 1.8, "q": 3.0}),         # other parameters: not AGCE
    ]
    m = P.match_rows(c, "sym-40", rows)
    assert [x["label"] for x in m] == ["CE", "MAE", "MAE*", "genCE"]  # paper order, missing skipped
    by = {x["label"]: x for x in m}
    assert by["MAE*"]["paper_top1"] == 87.33 and by["MAE*"]["paper_sem"] == 0.07
    assert by["MAE*"]["ours_top1"] == 86.0 and by["MAE*"]["delta"] == pytest.approx(86.0 - 87.33)
    assert by["MAE"]["ours_top1"] == 70.0 and by["MAE"]["paper_top1"] == 74.08
    assert by["CE"]["ours_sem"] == 0.1 and by["CE"]["paper_top5"] is None
    # a row at another learning rate is not the paper's configuration
    assert P.match_rows(c, "sym-40", [row("ce", "analytic", 66.0, lr=0.01)]) == []
    assert P.match_rows(c, "sym-40", []) == []


def test_match_rows_webvision_distinguishes_star_plus_and_double_star():
    c = cfg("table3_webvision.yaml")
    rows = [
        row("gce", "analytic", 64.0, params={"q": 0.48}, top5=80.0),        # genCE+
        row("gce", "grid", 12.0, params={"q": 0.7}, top5=14.0),             # genCE
        row("mae", "analytic", 62.0, bias=6.09, top5=81.0),                 # MAE** (analytic: ladder)
        row("mae", "grid", 58.0, bias=6.09, top5=79.0),                     # MAE* (constant ε)
        row("nce_agce", "analytic", 63.0, params={"alpha": 10.0, "beta": 0.1, "a": 18.2, "q": 3.0}),
        row("nfl_mae", "analytic", 2.0, params={"alpha": 80.0, "beta": 1.0, "gamma": 0.5}),  # calibrated α: no paper row
    ]
    by = {x["label"]: x for x in P.match_rows(c, "webvision", rows)}
    assert set(by) == {"genCE", "genCE+", "MAE*", "MAE**", "NCE-AGCE+"}
    assert by["genCE+"]["ours_top1"] == 64.0 and by["genCE+"]["paper_top5"] == 80.93
    assert by["genCE+"]["ours_top5"] == 80.0 and by["genCE+"]["delta_top5"] == pytest.approx(80.0 - 80.93)
    assert by["genCE"]["ours_top1"] == 12.0 and by["genCE"]["paper_sem"] is None
    assert by["MAE**"]["ours_top1"] == 62.0 and by["MAE*"]["ours_top1"] == 58.0
    table = P.format_paper_table(list(by.values()))
    assert "top-5" in table and "64.85 ± 0.04" in table and "13.28 |" in table


def test_match_rows_table5_uses_per_row_learning_rates():
    c = cfg("table5_cifar10_mlp.yaml")
    rows = [row("mae", "grid", 40.0, bias=0.0, lr=0.003),    # plain MAE at MAE*'s lr: not the paper's MAE
            row("mae", "grid", 45.0, bias=0.0, lr=0.0008),
            row("mae", "analytic", 49.0, bias=1.27, lr=0.003),
            row("sce", "analytic", 25.0, params={"alpha": 0.1, "beta": 1.0, "A": -4.0}, lr=0.001)]
    by = {x["label"]: x for x in P.match_rows(c, "sym-60", rows)}
    assert by["MAE"]["ours_top1"] == 45.0 and by["MAE*"]["ours_top1"] == 49.0 and by["symCE"]["paper_top1"] == 25.23


def test_match_rows_table6_per_learning_rate():
    c = cfg("table6_cifar10_mlp_lr.yaml")
    rows = [row("bitemp", "grid", 55.5, lr=0.005), row("bitemp", "grid", 54.0, lr=0.001),
            row("mae", "analytic", 40.0, bias=1.27, lr=0.005)]
    m = P.match_rows(c, "lr-0.005", rows)
    assert [(x["label"], x["ours_top1"]) for x in m] == [("MAE*", 40.0), ("biTemp", 55.5)]
    assert m[1]["paper_top1"] == 56.02 and m[1]["paper_sem"] == 0.24


def test_format_paper_table_markdown():
    c = cfg("table2_cifar100_symmetric.yaml")
    m = P.match_rows(c, "sym-0", [row("ce", "analytic", 75.0, 0.2, lr=0.1)])
    text = P.format_paper_table(m)
    lines = text.strip().splitlines()
    assert lines[0].startswith("| paper row |") and "top-5" not in text
    assert lines[2] == "| CE | ce (analytic) | 75.88 ± 0.15 | 75.00 ± 0.20 | -0.88 |"
    assert "no reproduced rows" in P.format_paper_table([])


# ----------------------------------------------------------------------------- errors
GOOD = """\
table: "Table 2"
description: test
base: {mode: analytic, dataset: cifar10, model: resnet32, losses: [ce, mae], seeds: 5, noise: symmetric}
settings:
  sym-0: {noise: none, noise_rate: 0.0}
  sym-10: {noise_rate: 0.1}
row_losses:
  CE: {loss: ce}
  "MAE*": {loss: mae, logit_bias: auto}
reported:
  sym-0: {CE: [91.30, 0.33], "MAE*": [91.27, 0.13]}
"""


@pytest.mark.parametrize("text, needle", [
    (GOOD.replace("base:", "bass:"), "unknown key"),
    ("\n".join(line for line in GOOD.splitlines() if not line.startswith("base:")), "missing 'base'"),
    ("\n".join(line for line in GOOD.splitlines() if not line.startswith("settings:") and not line.startswith("  sym-")
               ) + "\n", "missing 'settings'"),
    (GOOD.replace("  sym-0: {CE", "  sym-99: {CE"), "'sym-99' is not in settings"),
    (GOOD.replace("{loss: ce}", "{loss: focal}"), "unknown loss 'focal'"),
    (GOOD.replace("losses: [ce, mae]", "losses: [ce, xyz]"), "unknown loss 'xyz'"),
    (GOOD.replace("seeds: 5,", "seeds: 5, colour: red,"), "unknown CLI key"),
    (GOOD.replace("dataset: cifar10", "dataset: imagenet"), "dataset 'imagenet'"),
    (GOOD.replace("[91.30, 0.33]", "[91.30]"), "expected [mean, sem]"),
    (GOOD.replace('"MAE*": [91.27, 0.13]', '"MAE": [84.9, 1.86]'), "has no row_losses entry"),
    (GOOD.replace("{noise_rate: 0.1}", "{noise: none, noise_rate: 0.1}"), "needs noise"),
    (GOOD + "  sym-10: [oops\n", "malformed YAML"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_bad_file_is_a_one_line_value_error(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as exc:
        P.load_paper_config(path)
    msg = str(exc.value)
    assert "\n" not in msg and needle in msg and "bad.yaml" in msg


def test_good_minimal_file_and_lookup_errors(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(GOOD)
    c = P.load_paper_config(path)
    assert P.setting_flags(c, "sym-10")["noise_rate"] == 0.1
    assert P.reported_for(c, "sym-0", "MAE*") == {"top1": (91.27, 0.13), "top5": None}
    assert P.reported_for(c, "sym-0", "MAE") is None
    with pytest.raises(ValueError, match=r"unknown setting 'sym-40'; valid: sym-0, sym-10"):
        P.setting_flags(c, "sym-40")
    with pytest.raises(ValueError, match="file not found"):
        P.load_paper_config(tmp_path / "missing.yaml")


def test_import_has_no_side_effects():
    code = ("import sys; import services.paper as p; "
            "assert not [m for m in ('ray', 'torch') if m in sys.modules], sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"PYTHONPATH": str(REPO), "PATH": ""})
