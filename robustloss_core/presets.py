"""Published hyperparameters and training setups, with their sources (plain data, JSON-serialisable).

Every entry carries ``source`` (where the number comes from) and ``reconstructed`` (True where no
primary source gives it: the value is our default, exposed as a parameter, and must be called a
reconstruction in docs and ``--help``). Origin: ../shared/reference-params.md.

Sources (repo@commit): APL = HanxunH/Active-Passive-Losses@04bce53 (mini-WebVision configs and
standalone nfl.yaml read at @2d18de6); ALFs = hitcszx/ALFs@61245e9;
SCE = YisenWang/symmetric_cross_entropy_for_noisy_labels@ec778df; BiT = google/bi-tempered-loss@1c65c77;
akamaster = akamaster/pytorch_resnet_cifar10@d5489e8; weiaicunzai = weiaicunzai/pytorch-cifar100@11d8418;
paper = Staats, Thamm & Rosenow, "Enhancing noise-robust losses for large-scale noisy data" (AAAI 2025).

Preset columns (``COLUMNS``): the five published datasets and ``synthetic``. Every dataset name resolves to
one column through ONE map, ``DATASET_ALIASES`` (:func:`resolve_dataset`), and every decision keyed by a
dataset reads that column: loss parameters, training setup, default model, MLP1024 learning rates, the
asymmetric noise map, and the builders' spellings. ``synthetic`` has a setup of its own and CIFAR-10's loss
parameters carried over (K ≤ 10 style hyperparameters, the paper's convention for Fashion-MNIST);
``imagefolder`` uses the WebVision column (reason at ``DATASET_ALIASES``). For many classes the paper's point
is that these values do not transfer: calibrate them (theory.default_calibration) or add a logit bias.

The module imports nothing from the package: plain data and small accessors, read by losses (defaults),
config (training setups), models (default model), datasets and noise (the dataset map), theory (C_DEFAULT,
calibration references) and the CLI; so every module can import it without a cycle, which is why it owns
the dataset map.
"""
from __future__ import annotations

import copy

_PUBLISHED = ("fashionmnist", "cifar10", "cifar100", "webvision", "mini-webvision")   # the paper's datasets
COLUMNS = (*_PUBLISHED, "synthetic")   # every preset column: a loss-parameter column and a training setup each

# Dataset name -> preset column, for every registered name and alias whose column is not its own name (fmnist ->
# fashionmnist, synthetic-easy and glyphs -> synthetic, imagefolder -> webvision), and K of the columns with a fixed
# number of classes. Filled by datasets.register_dataset from each dataset's one declaration (its facts live there);
# resolve_dataset reads it, so loss parameters, training setup, default model, MLP1024 learning rates and the
# asymmetric noise map all use the same column for a name.
DATASET_ALIASES: dict[str, str] = {}
NUM_CLASSES: dict[str, int] = {}

_APL = "APL (HanxunH/Active-Passive-Losses@04bce53)"
_APL_2D = "APL (HanxunH/Active-Passive-Losses@2d18de6)"
_ALFS = "ALFs (hitcszx/ALFs@61245e9) lnl/config.py"
_SCE = "SCE (YisenWang/symmetric_cross_entropy_for_noisy_labels@ec778df) train_models.py"
_PAPER_T4 = "paper Table 4 (original papers' values; Fashion-MNIST takes CIFAR-10's, WebVision CIFAR-100's)"


def _e(params: dict, source: str, reconstructed: bool = False) -> dict:
    return {"params": params, "source": source, "reconstructed": reconstructed}


def _row(fm, c10, c100, wv, mwv) -> dict:
    return {**dict(zip(_PUBLISHED, (fm, c10, c100, wv, mwv))), "synthetic": _carried_to_synthetic(c10)}


def _carried_to_synthetic(c10: dict) -> dict:
    """The synthetic column's entry: CIFAR-10's carried over. No paper gives values for this project's
    dataset, so a carried-over hyperparameter is a reconstruction (our default)."""
    return _e(dict(c10["params"]), f"CIFAR-10 value carried over to synthetic: {c10['source']}",
              c10["reconstructed"] or bool(c10["params"]))


_NOPARAM = _e({}, "no hyperparameters")
_BITEMP = _e({"t1": 0.8, "t2": 1.2}, "reconstructed (no published per-dataset value for this paper)", True)

# ONE table: loss -> dataset -> {"params", "source", "reconstructed"}.
LOSS_PRESETS: dict[str, dict[str, dict]] = {
    "ce": _row(*[_NOPARAM] * 5),
    "mae": _row(*[_NOPARAM] * 5),  # MAE* = mae + the Eq. 4 logit bias (theory.logit_bias)
    "nce": _row(*[_NOPARAM] * 5),
    "gce": _row(
        _e({"q": 0.7}, f"{_APL} configs/cifar10/*/gce.yaml via {_PAPER_T4}"),
        _e({"q": 0.7}, f"{_APL} configs/cifar10/*/gce.yaml"),
        _e({"q": 0.7}, f"{_APL} configs/cifar100/*/gce.yaml"),
        _e({"q": 0.7}, f"{_APL} configs/cifar100/*/gce.yaml via {_PAPER_T4}"),
        _e({"q": 0.7}, f"{_APL_2D} configs/webvision_mini/gce.yaml"),
    ),
    "sce": _row(
        _e({"alpha": 0.1, "beta": 1.0, "A": -4.0}, f"{_SCE} via {_PAPER_T4}"),
        _e({"alpha": 0.1, "beta": 1.0, "A": -4.0}, _SCE),
        _e({"alpha": 6.0, "beta": 0.1, "A": -4.0}, f"{_APL} configs/cifar100/*/sce.yaml"),
        _e({"alpha": 6.0, "beta": 0.1, "A": -4.0},
           "not run on WebVision in the paper: CIFAR-100 value carried over", True),
        _e({"alpha": 10.0, "beta": 1.0, "A": -4.0},
           f"{_APL_2D} configs/webvision_mini/sce.yaml (their code's A is ln 1e-4; A = -4 per paper)"),
    ),
    "agce": _row(
        _e({"a": 0.6, "q": 0.6}, f"{_ALFS} via {_PAPER_T4}"),
        _e({"a": 0.6, "q": 0.6}, _ALFS),
        _e({"a": 0.6, "q": 0.6}, f"{_ALFS} (doubtful for CIFAR-100)", True),
        _e({"a": 0.6, "q": 0.6}, "not run on WebVision in the paper: CIFAR-100 value carried over", True),
        _e({"a": 0.6, "q": 0.6}, "no mini-WebVision value published: CIFAR-100 value carried over", True),
    ),
    "nfl": _row(
        _e({"gamma": 0.5}, f"{_APL_2D} configs/cifar10/sym/nfl.yaml (without _APL's scale factor)"),
        _e({"gamma": 0.5}, f"{_APL_2D} configs/cifar10/sym/nfl.yaml (without _APL's scale factor)"),
        _e({"gamma": 0.5}, f"{_APL_2D} configs/cifar100/sym/nfl.yaml (without _APL's scale factor)"),
        _e({"gamma": 0.5}, "gamma of _APL's nfl configs carried over", True),
        _e({"gamma": 0.5}, "gamma of _APL's nfl configs carried over", True),
    ),
    "nce_mae": _row(
        _e({"alpha": 1.0, "beta": 1.0}, f"{_APL} configs/cifar10 via {_PAPER_T4}"),
        _e({"alpha": 1.0, "beta": 1.0}, f"{_APL} configs/cifar10/*/nce+mae.yaml"),
        _e({"alpha": 10.0, "beta": 1.0}, f"{_APL} configs/cifar100/*/nce+mae.yaml"),
        _e({"alpha": 10.0, "beta": 1.0}, f"{_APL} configs/cifar100 via {_PAPER_T4}"),
        _e({"alpha": 50.0, "beta": 1.0}, f"{_APL_2D} configs/webvision_mini/nce+mae.yaml"),
    ),
    "nfl_mae": _row(
        _e({"alpha": 1.0, "beta": 1.0, "gamma": 0.5}, f"{_APL} configs/cifar10 via {_PAPER_T4}"),
        _e({"alpha": 1.0, "beta": 1.0, "gamma": 0.5}, f"{_APL} configs/cifar10/*/nfl+mae.yaml"),
        _e({"alpha": 10.0, "beta": 1.0, "gamma": 0.5}, f"{_APL} configs/cifar100/*/nfl+mae.yaml"),
        _e({"alpha": 10.0, "beta": 1.0, "gamma": 0.5}, f"{_APL} configs/cifar100 via {_PAPER_T4}"),
        _e({"alpha": 50.0, "beta": 1.0, "gamma": 0.5}, f"{_APL_2D} configs/webvision_mini/nfl+mae.yaml"),
    ),
    "nce_agce": _row(
        _e({"alpha": 1.0, "beta": 4.0, "a": 6.0, "q": 1.5}, f"{_ALFS} (cifar10) via {_PAPER_T4}"),
        _e({"alpha": 1.0, "beta": 4.0, "a": 6.0, "q": 1.5}, f"{_ALFS} (cifar10)"),
        _e({"alpha": 10.0, "beta": 0.1, "a": 1.8, "q": 3.0}, f"{_ALFS} (cifar100)"),
        _e({"alpha": 10.0, "beta": 0.1, "a": 1.8, "q": 3.0}, f"{_ALFS} (cifar100) via {_PAPER_T4}"),
        _e({"alpha": 50.0, "beta": 0.1, "a": 2.5, "q": 3.0}, f"{_ALFS} (webvision, ALFs-style)"),
    ),
    "bitemp": _row(*[_BITEMP] * 5),
}


def resolve_dataset(dataset: str | None) -> str:
    """The preset column (COLUMNS) of ``dataset``: itself, or its DATASET_ALIASES entry; None -> cifar10.
    The one resolution every preset lookup uses; ValueError naming the allowed names for any other."""
    if dataset is None:
        return "cifar10"
    name = DATASET_ALIASES.get(dataset, dataset) if isinstance(dataset, str) else dataset
    if name not in COLUMNS:
        allowed = ", ".join((*COLUMNS, *DATASET_ALIASES))
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {allowed}")
    return name


def loss_preset(loss: str, dataset: str | None = None) -> dict:
    """Published hyperparameters of ``loss`` for ``dataset``: {"params", "source", "reconstructed"} (a copy)."""
    if loss not in LOSS_PRESETS:
        raise ValueError(f"unknown loss {loss!r} for presets; allowed: {', '.join(sorted(LOSS_PRESETS))}")
    return copy.deepcopy(LOSS_PRESETS[loss][resolve_dataset(dataset)])


# ----------------------------------------------------------------------------- logit bias (Eq. 4)

# Eq. 4 constant: E[p_y] = c after the bias (reconstructed: the paper's value did not survive extraction).
C_DEFAULT = 0.25

# ----------------------------------------------------------------------------- training setups

_AKAMASTER = "akamaster/pytorch_resnet_cifar10@d5489e8"
_WEIAICUNZAI = "weiaicunzai/pytorch-cifar100@11d8418"


def _setup(model, lr, weight_decay, lr_schedule, epochs, batch_size, source, reconstructed=(), augment=True):
    return {"model": model, "optimizer": {"lr": lr, "weight_decay": weight_decay}, "lr_schedule": lr_schedule,
            "epochs": epochs, "batch_size": batch_size, "augment": augment, "source": source,
            "reconstructed": list(reconstructed)}


# Training setups per preset column (COLUMNS; paper App. A.1 + reference repos), the fields TrainConfig.resolved
# reads. SGD momentum 0.9 everywhere (TrainConfig.momentum). ``augment``: whether training batches get the
# dataset's augmentation (which one is the dataset's: datasets.AUGMENTATIONS); the ResNet setups do.
TRAINING_SETUPS: dict[str, dict] = {
    "fashionmnist": _setup("resnet32", 0.1, 1e-4, {"kind": "multistep", "milestones": [100, 150], "gamma": 0.1},
                           200, 128, f"paper A.1; {_AKAMASTER}"),
    "cifar10": _setup("resnet32", 0.1, 1e-4, {"kind": "multistep", "milestones": [100, 150], "gamma": 0.1},
                      200, 128, f"paper A.1; {_AKAMASTER}"),
    "cifar100": _setup("resnet34", 0.1, 5e-4, {"kind": "multistep", "milestones": [60, 120, 160], "gamma": 0.2},
                       200, 128, f"paper A.1; {_WEIAICUNZAI}"),
    "webvision": _setup("wrn101", 0.1, 5e-4, {"kind": "multistep", "milestones": [66, 132], "gamma": 0.1},
                        198, 256, "paper A.1 (wide_resnet101_2, LR drops at 66, 132, 198 epochs)",
                        ("optimizer.weight_decay", "batch_size")),
    # Not run in the paper; _APL used resnet50, lr 0.4, wd 3e-5, nesterov, x0.97/epoch, batch 512, 250 epochs.
    "mini-webvision": _setup("wrn101", 0.1, 5e-4, {"kind": "multistep", "milestones": [66, 132], "gamma": 0.1},
                             198, 256, "WebVision setup carried over (the paper did not train on mini-WebVision)",
                             ("model", "optimizer", "lr_schedule", "epochs", "batch_size")),
    "synthetic": _setup("mlp1024", 0.01, 0.0, {"kind": "exponential", "gamma": 0.95}, 10, 128,
                        "project default for the synthetic dataset (lr to be tuned)", ("optimizer.lr", "epochs")),
}

# MLP1024 appendix setup (Fashion-MNIST / CIFAR-10): SGD, no weight decay, an exponential LR decay per epoch,
# images only normalised (paper A.1: no augmentation). The decay factor, epoch count and batch size are lost in the
# paper's text: fitted on the real Fashion-MNIST (all 60 000 training images) to CE's five Table 5 cells (0-60 %
# symmetric noise) over γ ∈ {0.9, 0.95, 0.97, 1.0} × batch {64, 128} × E ≤ 100: γ = 1.0 (no decay: a departure from
# the paper's stated schedule; every γ < 1 keeps CE from memorising as far as the paper's CE did), batch 64, E = 68,
# mean |residual| 0.97 points (benchmarks/results/fashionmnist_mlp1024.json, `setup.fitted`). Momentum 0.9 kept (reconstructed).
MLP1024_SETUP = _setup("mlp1024", 1e-3, 0.0, {"kind": "constant"}, 68, 64,
                       "paper A.1 (MLP1024: SGD, no weight decay, exponential LR decay, normalise only); decay factor "
                       "1.0, batch 64 and 68 epochs fitted to CE's five Table 5 cells on the real Fashion-MNIST "
                       "(benchmarks/fashionmnist_mlp1024.py)",
                       ("batch_size", "lr_schedule", "epochs"), augment=False)

# Learning rates the paper picked for MLP1024 ("mae*" = mae with the Eq. 4 logit bias).
_T5_T6 = "derived: paper Table 5 matched to the bold entries of Table 6"
MLP_LR = {
    "cifar10": {"lrs": {"ce": 1e-3, "mae": 8e-4, "mae*": 3e-3, "gce": 5e-3, "nfl_mae": 1e-3, "nce_mae": 8e-4,
                        "bitemp": 5e-3}, "source": _T5_T6, "reconstructed": False},
    "fashionmnist": {"lrs": {"ce": 5e-3, "mae": 8e-4, "mae*": 3e-3, "gce": 0.01, "nfl_mae": 1e-3, "nce_mae": 1e-3,
                             "bitemp": 0.01}, "source": _T5_T6, "reconstructed": False},
}


def training_setup(dataset: str, model: str | None = None) -> dict:
    """Training setup of ``dataset``'s preset column (resolve_dataset; a copy); ``model="mlp1024"`` on a
    column whose setup trains another network gives the MLP1024 appendix setup."""
    setup = TRAINING_SETUPS[resolve_dataset(dataset)]
    if model == "mlp1024" and setup["model"] != "mlp1024":
        setup = MLP1024_SETUP
    return copy.deepcopy(setup)


def mlp_lr(loss: str, dataset: str, *, logit_bias: bool = False) -> float:
    """The paper's MLP1024 learning rate for ``loss`` on ``dataset`` (its column: cifar10 or fashionmnist)."""
    key = f"{loss}*" if logit_bias else loss
    column = resolve_dataset(dataset)
    if column not in MLP_LR:
        raise ValueError(f"no MLP1024 learning rates for dataset {dataset!r}; allowed: {', '.join(MLP_LR)}")
    table = MLP_LR[column]["lrs"]
    if key not in table:
        raise ValueError(f"no MLP1024 learning rate for loss {key!r}; allowed: {', '.join(table)}")
    return table[key]


# ----------------------------------------------------------------------------- time estimates

# Measured throughput per (model, device): examples of the training split per second of an epoch
# (training plus its evaluation passes), one trial at a time per CPU thread or per GPU. The CLI's time
# estimate before a sweep reads it; a model/device missing here gets no estimate. Numbers from the
# named benchmark on the named machine; another machine differs, which the estimate says.
THROUGHPUT = {
    ("mlp1024", "cpu"): {"examples_per_second": 9500, "per": "CPU thread", "machine": "a 2-core x86 VM",
                         "source": "benchmarks/sweep_overhead.py (8x2s, 4x30s), 2026-12-01"},
}
# Fixed costs of a sweep on that machine (same source): the embedded Ray's start and stop, and a worker's
# first trial (process start, imports, torch's lazy start-up) before its first epoch.
SWEEP_FIXED_SECONDS = {"ray": 12.0, "first_trial": 4.0}
# A multi-worker trial is a Ray Train run: its controller, worker group and process group cost this much
# start-up and teardown per trial (benchmarks/README.md §3: 18.3-19.2 s on that machine, idle; 22-32 s
# per trial in a 5-trial 2-worker grid on it, 2026-12-02). No DDP speed-up is assumed on top: 2 workers
# on its 2 cores trained slower than 1 (same section).
TRAIN_RUN_SECONDS = 19.0

# Training / test examples of the datasets with a fixed size (filled by datasets.register_dataset).
DATASET_EXAMPLES: dict[str, tuple[int, int]] = {}
