"""Invariants of robustloss_core.presets: plain data that imports nothing, every table read at run time,
every entry sourced and marked, the values agreeing with reference-params.md, losses, datasets, config."""
import ast
import json
import pathlib
import re

import pytest

from robustloss_core import config, datasets, models, noise, presets
from robustloss_core.losses import LOSSES, build_loss

ROOT = pathlib.Path(__file__).resolve().parents[2]
PRESETS_PY = ROOT / "robustloss_core" / "presets.py"
REFERENCE_MD = pathlib.Path(__file__).resolve().parents[3] / "shared" / "reference-params.md"   # ../shared beside the checkout
RUNTIME = [p for d in ("robustloss_core", "services", "sweeps") for p in (ROOT / d).rglob("*.py") if p != PRESETS_PY]
# every dataset name there is: the preset columns, the one alias map's names, the registered datasets
ALL_NAMES = sorted({*presets.COLUMNS, *presets.DATASET_ALIASES, *datasets.DATASETS})


def test_imports_nothing_from_the_package():
    tree = ast.parse(PRESETS_PY.read_text())
    imported = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.level == 0 and n.module == "__future__"
               or isinstance(n, ast.Import) and [a.name for a in n.names] == ["copy"] for n in imported)


def test_every_public_name_is_read_at_run_time():
    """No dead tables: each public name is used by run-time code outside presets (tests excluded),
    directly or through a presets function that is."""
    tree = ast.parse(PRESETS_PY.read_text())
    public = {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
              for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if not t.id.startswith("_")}
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    public |= {f for f in funcs if not f.startswith("_")}
    source = "\n".join(p.read_text() for p in RUNTIME)
    used = {name for name in public if re.search(rf"presets\.{name}\b|from \S*presets import [^\n]*\b{name}\b", source)}
    while True:   # names read inside the functions used so far
        more = {n.id for f in used & set(funcs) for n in ast.walk(funcs[f]) if isinstance(n, ast.Name)} & public
        if more <= used:
            break
        used |= more
    assert public - used == set()


def test_one_definition_of_c():
    """Eq. 4's c = 0.25 is written once: no default of a c-like parameter repeats the literal."""
    pattern = re.compile(r"\b\w*c\w*\s*(?::\s*float\s*)?=\s*0\.25\b")
    assert [str(p) for p in RUNTIME if pattern.search(p.read_text())] == []
    assert re.findall(r"^C_DEFAULT = (\S+)", PRESETS_PY.read_text(), re.M) == [repr(presets.C_DEFAULT)]


def test_loss_entries_are_sourced_and_marked():
    assert set(presets.LOSS_PRESETS) == set(LOSSES)
    for loss, row in presets.LOSS_PRESETS.items():
        assert tuple(row) == presets.COLUMNS, loss
        for ds, entry in row.items():
            assert set(entry) == {"params", "source", "reconstructed"}, (loss, ds)
            assert isinstance(entry["source"], str) and entry["source"] and isinstance(entry["reconstructed"], bool)
            assert set(entry["params"]) <= set(LOSSES[loss].param_names), (loss, ds)
            if "reconstructed" in entry["source"]:
                assert entry["reconstructed"], (loss, ds)


@pytest.mark.parametrize("ds", [*ALL_NAMES, None])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_preset_builds_as_the_default(loss, ds):
    k = presets.NUM_CLASSES.get(presets.resolve_dataset(ds), 10)   # synthetic: its default K
    want = presets.loss_preset(loss, ds)["params"]
    assert {p: v for p, v in build_loss(loss, k, dataset=ds).params.items() if p in want} == want


def test_num_classes_agree_with_datasets():
    assert set(presets.NUM_CLASSES) == set(presets.COLUMNS) - {"synthetic"}   # synthetic: K is chosen
    assert {ds: datasets.dataset_num_classes(ds) for ds in presets.NUM_CLASSES} == presets.NUM_CLASSES


def _md_loss_table() -> dict:
    """reference-params.md's "Loss hyperparameters per dataset" table: {loss: {column: cell}, "_source": ...}."""
    text = REFERENCE_MD.read_text()
    block = text.split("## Loss hyperparameters per dataset")[1].split("\n## ")[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    table = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        names = re.match(r"(\w+)(?: \(([^)]*)\))?", cells[0])
        table[names.group(1)] = {"keys": names.group(2), **dict(zip(head[1:], cells[1:]))}
    return table


GREEK = {"α": "alpha", "β": "beta", "γ": "gamma"}
MD_COLUMNS = {"Fashion-MNIST": "fashionmnist", "CIFAR-10": "cifar10", "CIFAR-100": "cifar100", "WebVision": "webvision"}


@pytest.mark.skipif(not REFERENCE_MD.exists(), reason="reference-params.md is not on this machine")
def test_values_and_marks_agree_with_reference_params_md():
    """Every numeric cell of the table equals the preset, and a cell is reconstructed in presets exactly
    when the document says so (its cell or its source column) or has no value ("—": carried over)."""
    checked = 0
    for loss, row in _md_loss_table().items():
        if loss not in LOSSES or row["keys"] is None:
            continue
        keys = [GREEK.get(k.strip(), k.strip()) for k in row["keys"].split(",")]
        for col, ds in MD_COLUMNS.items():
            cell, entry = row[col], presets.loss_preset(loss, ds)
            marked = "reconstructed" in cell or "reconstructed" in row["source"] or cell == "—"
            assert entry["reconstructed"] is marked, (loss, ds, cell)
            if cell != "—":
                numbers = re.findall(r"[−-]?\d+(?:\.\d+)?", cell.split("(rec")[0])
                values = [float(v.replace("−", "-")) for v in numbers]
                assert [entry["params"][k] for k in keys] == values, (loss, ds, cell)
                checked += 1
    assert checked >= 20


def test_training_setups_feed_config_and_models():
    for name, setup in {**presets.TRAINING_SETUPS, "mlp1024": presets.training_setup("cifar10", "mlp1024")}.items():
        assert setup["source"] and isinstance(setup["reconstructed"], list)
        for path in setup["reconstructed"]:   # each mark names a field of the setup
            node = setup
            for part in path.split("."):
                node = node[part]
        assert setup["model"] in models.MODELS
        config.validate_lr_schedule(setup["lr_schedule"])
        if name in presets.TRAINING_SETUPS:
            cfg = config.TrainConfig(dataset=name, epochs=setup["epochs"]).resolved()
            assert (cfg.model, cfg.lr, cfg.weight_decay, cfg.batch_size) == (
                setup["model"], setup["optimizer"]["lr"], setup["optimizer"]["weight_decay"], setup["batch_size"])


# ----------------------------------------------------------------------------- one dataset -> column map
def test_one_map_onto_the_columns():
    """Every preset column has a loss-parameter column and a training setup; the one map sends a name
    straight to a column (no chains, no column renamed)."""
    assert tuple(presets.TRAINING_SETUPS) == presets.COLUMNS
    assert all(tuple(row) == presets.COLUMNS for row in presets.LOSS_PRESETS.values())
    assert set(presets.DATASET_ALIASES.values()) <= set(presets.COLUMNS)
    assert not set(presets.DATASET_ALIASES) & set(presets.COLUMNS)
    # the decision of DATASET_ALIASES' comment: imagefolder reads WebVision's column for everything
    assert presets.resolve_dataset("imagefolder") == "webvision" and models.default_model("imagefolder") == "wrn101"
    assert presets.loss_preset("sce", "imagefolder") == presets.loss_preset("sce", "webvision")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_decision_reads_the_same_column(name):
    """Loss parameters, training setup (presets and TrainConfig.resolved), default model, MLP1024 rates,
    asymmetric noise map and the builders' name: all from the one resolved column."""
    col = presets.resolve_dataset(name)
    assert col in presets.COLUMNS and datasets.preset_dataset(name) == col
    for loss, row in presets.LOSS_PRESETS.items():
        assert presets.loss_preset(loss, name) == row[col], loss
    setup = presets.TRAINING_SETUPS[col]
    assert presets.training_setup(name) == setup and models.default_model(name) == setup["model"]
    cfg = config.TrainConfig(dataset=name, epochs=setup["epochs"]).resolved()
    assert (cfg.model, cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.augment) == (
        setup["model"], setup["optimizer"]["lr"], setup["optimizer"]["weight_decay"], setup["batch_size"],
        setup["augment"])
    assert presets.resolve_dataset(cfg.dataset) == col and cfg.dataset in datasets.DATASETS
    if col in presets.MLP_LR:
        assert presets.mlp_lr("ce", name) == presets.MLP_LR[col]["lrs"]["ce"]
    else:
        with pytest.raises(ValueError, match="no MLP1024 learning rates"):
            presets.mlp_lr("ce", name)

    def class_map(ds):
        try:
            return noise.asymmetric_map(ds)
        except ValueError as e:
            assert "has none" in str(e)
            return None

    assert class_map(name) == class_map(col)
    if name in presets.DATASET_ALIASES and name in datasets.DATASETS:   # a dataset of its own, another's presets:
        assert class_map(name) is None                                   # it must not borrow a class map
    built = datasets.canonical_name(name)   # what the builders build for the name uses the same column
    assert presets.resolve_dataset(built) == col
    if name not in datasets.DATASETS:   # another spelling: builds the dataset it stands for
        assert built == col and datasets.dataset_num_classes(name) == datasets.dataset_num_classes(col)


@pytest.mark.parametrize("lookup", [
    presets.resolve_dataset, lambda n: presets.loss_preset("gce", n), presets.training_setup,
    lambda n: presets.mlp_lr("ce", n), models.default_model, datasets.preset_dataset, noise.asymmetric_map,
    datasets.canonical_name, datasets.dataset_num_classes, lambda n: config.TrainConfig(dataset=n).resolved(),
], ids=["resolve", "loss", "setup", "mlp_lr", "model", "preset_dataset", "noise", "canonical", "num_classes",
        "config"])
def test_unknown_dataset_raises_naming_the_allowed_values(lookup):
    with pytest.raises(ValueError) as e:
        lookup("svhn")
    msg = str(e.value)
    assert "'svhn'" in msg and "\n" not in msg
    assert all(name in msg for name in presets.COLUMNS), msg


def test_mlp_learning_rates_are_sourced():
    for ds, table in presets.MLP_LR.items():
        assert table["source"] and table["reconstructed"] is False
        assert presets.mlp_lr("mae", ds, logit_bias=True) == table["lrs"]["mae*"]


@pytest.mark.parametrize("fn,fragment", [
    (lambda: presets.loss_preset("focal", "cifar10"), "'focal'"),
    (lambda: presets.loss_preset("gce", "svhn"), "'svhn'"),
    (lambda: presets.training_setup("svhn"), "'svhn'"), (lambda: presets.mlp_lr("ce", "cifar100"), "'cifar100'"),
    (lambda: presets.mlp_lr("nce_agce", "cifar10"), "'nce_agce'"),
])
def test_bad_lookups(fn, fragment):
    with pytest.raises(ValueError, match=fragment) as err:
        fn()
    assert "\n" not in str(err.value)


def test_accessors_return_copies_and_json():
    presets.loss_preset("gce", "cifar10")["params"]["q"] = 0.1
    presets.training_setup("cifar10")["optimizer"]["lr"] = 9.0
    assert presets.loss_preset("gce", "cifar10")["params"]["q"] != 0.1
    assert presets.training_setup("cifar10")["optimizer"]["lr"] != 9.0
    json.dumps([presets.LOSS_PRESETS, presets.TRAINING_SETUPS, presets.MLP_LR])
