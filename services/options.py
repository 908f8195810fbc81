"""Every option of the CLI, the YAML configs and the Python API, declared once (``OPTIONS``).

Add a flag here: one ``Option(...)`` row. ``SweepRequest`` gets a field of that name, ``sweeps/run.py`` a
flag, and the typing, range/choice check, no-op check (``modes``, ``needs``), ``--resume`` check (``resume``)
and the paper configs' check (``paper``) follow from the row.

An option's ``kind`` is its type under the one typing rule (:func:`services.request.coerce`):
``str``, ``bool`` (a switch), ``int``, ``float``, ``auto`` (a number or the word auto), ``names`` (a list or
a comma string), ``numbers`` (a list of numbers, a comma string or one number), ``mapping`` (a dict or
``k=v,k=v``). ``choices`` is a tuple or a function returning one (imports the module that owns the names
only when asked); ``lo``/``hi`` bound numbers (``open`` names the ends that are excluded: "lo", "hi").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from robustloss_core.presets import C_DEFAULT

CONFIG_DIR = Path(__file__).resolve().parent.parent / "sweeps" / "configs"
SWEEPS = ("grid", "analytic", "all")   # the modes that train a sweep


@dataclass(frozen=True)
class Option:
    name: str                            # the SweepRequest field (the flag with dashes as underscores)
    kind: str = "str"
    default: Any = None
    help: str | Callable[[], str] = ""
    group: str = "training"              # the --help section: main, data, training, ray
    choices: tuple | Callable[[], tuple] | None = None
    what: str | None = None              # 'unknown <what> x; choose from ...' instead of '--flag x is not one of ...'
    lo: float | None = None
    hi: float | None = None
    open: tuple = ()                     # "lo" / "hi": that bound is excluded
    modes: tuple | None = None           # the modes it acts in (None: every mode); set elsewhere it is refused
    needs: tuple | None = None           # (option, values or a function of them): acts only when option is one of these
    resume: bool = False                 # a --resume may change it (it changes neither the trials nor what they compute)
    paper: bool = False                  # a paper-table config (sweeps/configs/paper/) may set it
    flag: str | None = None              # the CLI flag when it is not --<name with dashes>

    @property
    def cli(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def allowed(self) -> tuple | None:
        return self.choices() if callable(self.choices) else self.choices

    def help_text(self) -> str:
        return self.help() if callable(self.help) else self.help


# ------------------------------------------------------------------------------ choices owned elsewhere
def _datasets():
    from robustloss_core.datasets import DATASETS

    return tuple(sorted(DATASETS))


def _losses():
    from robustloss_core.losses import LOSSES

    return tuple(sorted(LOSSES))


def _noise_kinds():
    from robustloss_core.noise import NOISE_KINDS

    return NOISE_KINDS


def _searches():
    from services import search

    return tuple(search.STRATEGIES)


def _schedulers():
    from services import search

    return tuple(search.SCHEDULERS)


def _sampling_searches():
    from services import search

    return tuple(name for name, s in search.STRATEGIES.items() if s.samples)


def calibration_references() -> tuple:
    """The K_ref values ``--calibration-reference`` may name: every reference of theory's recipes."""
    from robustloss_core.theory import CALIBRATION_RECIPES

    return tuple(sorted({ref.classes for recipe in CALIBRATION_RECIPES.values() for ref in recipe.references}))


CALLBACKS = {"mlflow": "mlflow", "wandb": "wandb"}   # --callbacks name -> the package it needs


# ------------------------------------------------------------------------------ help texts built from the registries
def _search_help() -> str:
    from services import search

    return "; ".join(f"{name}: {s.help}" for name, s in search.STRATEGIES.items())


def _presets_line() -> str:
    from robustloss_core.datasets import DATASETS, preset_dataset
    from robustloss_core.models import default_model

    by_model: dict = {}
    for name in sorted(DATASETS):
        by_model.setdefault(default_model(preset_dataset(name)), []).append(name)
    return "; ".join(f"{m} for {', '.join(names)}" for m, names in by_model.items())


def _data_root_help() -> str:
    import os

    from robustloss_core.datasets import DATASET_SPECS, default_root

    system = "; ".join(f"{s.name}: also {s.system_root} when that is installed" for s in DATASET_SPECS.values()
                       if s.system_root is not None)
    return (f"folder holding the dataset files (not needed for synthetic; default: $ROBUSTLOSS_DATA_ROOT, else "
            f"{os.path.abspath(default_root('cifar10'))}; {system})")


# ------------------------------------------------------------------------------ the table: add a flag here
OPTIONS: tuple[Option, ...] = (
    Option("mode", default="all", group="main", choices=("train", "grid", "analytic", "compare", "all"), paper=True,
           help="train: one Ray Train run; grid: baseline Tune sweep; analytic: the paper's training-free "
                "parameters, then train; compare: report; all: grid + analytic + compare"),
    Option("config", group="main", resume=True, help="YAML file with any of these flags (command line overrides), "
           "or a paper table config from sweeps/configs/paper/ together with --setting"),
    Option("setting", group="main", resume=True, help="paper config: which setting (e.g. sym-40) to run; compare: "
           "also print the paper's reported numbers beside ours"),
    Option("row", group="main", resume=True, help="paper config: run the companion invocation that produces this "
           "paper row instead of the setting's own (e.g. 'NF-MAE**', 'MAE*'; see the config's row_losses)"),
    # data
    Option("dataset", default="synthetic", group="data", choices=_datasets, what="dataset", paper=True,
           help="dataset name (list below)"),
    Option("data_root", group="data", paper=True, help=_data_root_help),
    Option("download", "bool", False, group="data", help="download CIFAR/Fashion-MNIST into --data-root if absent"),
    Option("classes", "int", 10, group="data", lo=2, paper=True,
           help="number of classes K of the synthetic datasets (the others have a fixed K: refused there)"),
    Option("dataset_args", "mapping", {}, group="data",
           help="extra dataset options k=v,... (e.g. train_per_class=20,sigma=1)"),
    Option("noise", default="none", group="data", choices=_noise_kinds, paper=True,
           help="label noise added to the training labels of any dataset (needs --noise-rate > 0)"),
    Option("noise_rate", "float", 0.0, group="data", lo=0.0, hi=1.0, paper=True,
           help="label-noise rate in [0, 1] (needs --noise)"),
    Option("noise_variant", default="paper", group="data", paper=True,
           help="symmetric: paper = random label (may stay correct), flip = always another class; asymmetric: "
                "paper = the dataset's class map, blocks = APL's CIFAR-100 index blocks"),
    Option("val_fraction", "float", 0.1, group="data", lo=0.0, hi=1.0, open=("hi",),
           help="stratified, seeded hold-out of the training set, carved after label noise (noisy labels); "
                "selects configurations; 0 = none"),
    # training
    Option("losses", "names", ["ce", "mae", "gce"], choices=_losses, what="loss", paper=True,
           help="comma-separated loss names (one for --mode train; list below)"),
    Option("loss_params", "mapping", {}, modes=("train",), paper=True,
           help="train: loss hyperparameters k=v,... (q, a, alpha, beta, gamma, A, t1, t2)"),
    Option("logit_bias", "auto", 0.0, modes=("train",), paper=True,
           help="train: ε added to the target logit, a number or auto (Eq. 4 for the dataset's K)"),
    Option("bias_c", "float", C_DEFAULT, lo=0.0, hi=1.0, open=("lo", "hi"), paper=True,
           help="Eq. 4 constant c = E[p_y] after the bias (reconstructed)"),
    Option("bias_schedule", default="auto", choices=("auto", "constant", "weaning", "dynamic"), paper=True,
           help="logit bias over epochs: weaning = the paper's '**' ladder, 6 values from ε down to ε/6, 11 epochs "
                "each, repeating (values reconstructed); dynamic = ε recomputed every epoch so the biased mean p_y "
                "stays at c (fades as the network learns); constant = ε throughout; auto = weaning for analytic "
                "mode on webvision, else constant"),
    Option("calibration_reference", "int", choices=calibration_references, modes=("analytic", "all"), paper=True,
           help="analytic: K_ref of the setting the '+' losses are calibrated from, for every loss (default: each "
                "recipe's own reference)"),
    Option("sigma", "auto", 1.0, lo=0.0, open=("lo",),
           help="σ of the initial logits in Eq. 3/4: a number (the paper: 1) or auto = measured on the model that "
                "will train"),
    Option("pick", default="curve", choices=("curve", "pilot"), modes=("analytic", "all"),
           help="analytic: which member of a loss's calibrated solution set trains: curve = the recipe's "
                "deterministic rule; pilot = train the --pilots most different ones for --pilot-fraction of the "
                "epochs and keep the best on noisy validation (Fig. 6)"),
    Option("pilots", "int", 4, lo=1, modes=("analytic", "all"), needs=("pick", ("pilot",)),
           help="analytic --pick pilot: candidates per loss"),
    Option("pilot_fraction", "float", 0.1, lo=0.0, hi=1.0, open=("lo",), modes=("analytic", "all"),
           needs=("pick", ("pilot",)), help="analytic --pick pilot: a pilot's share of --epochs"),
    Option("lr", "float", lo=0.0, open=("lo",), paper=True, help="one learning rate fixed in advance (implies "
           "--lr-protocol shared; default: the dataset/loss preset for --mode train)"),
    Option("lrs", "numbers", lo=0.0, open=("lo",), modes=SWEEPS, paper=True,
           help="learning rates a,b,... searched by grid and analytic modes (default: the grid file's); under "
                "--search optuna or random their range [min, max] is searched continuously (log scale)"),
    Option("lr_protocol", choices=("searched", "shared"), help="searched: both modes search --lrs (analytic pays "
           "for it); shared: both train at --lr (default: shared if --lr is given, else searched)"),
    Option("epochs", "int", lo=1, paper=True, help="epochs per trial (default: the dataset preset)"),
    Option("batch_size", "int", lo=1, paper=True, help="global batch size (default: the dataset preset)"),
    Option("model", paper=True, help=lambda: f"model name (default: the dataset preset: {_presets_line()}). On a "
           "CPU the presets' ResNets are slow (measured epoch times: benchmarks/README.md)"),
    Option("seeds", "int", 1, lo=1, paper=True, help="seeds per configuration (0..N-1)"),
    Option("grid_file", default=str(CONFIG_DIR / "grid.yaml"), modes=SWEEPS, paper=True,
           help="YAML with the default grids per loss and the lrs"),
    Option("search", default="grid", choices=_searches, modes=("grid",), paper=True, help=_search_help),
    Option("scheduler", default="auto", choices=lambda: ("auto",) + _schedulers(), modes=("grid",),
           help="trial scheduler: asha = Tune's ASHA stops weak trials at its rungs (grid, random or optuna "
                "search); none = every trial runs all --epochs; auto = the search's own (optuna: asha, else none)"),
    Option("num_samples", "int", lo=1, modes=("grid",), needs=("search", _sampling_searches),
           help="optuna, random: trials (default: the grid's size)"),
    Option("optuna_storage", modes=("grid",), needs=("search", _sampling_searches),
           help="optuna, random: a database URL for the study (default: <storage>/<name>/optuna.journal)"),
    Option("calibrate_only", "bool", False, modes=("analytic", "all"),
           help="analytic: compute and store the parameters, do not train"),
    Option("selection", default="val", choices=("val", "test"),   # services.compare.SELECTIONS's keys modes=("grid", "analytic", "compare", "all"),
           help="compare: pick each mode's best configuration by noisy-validation top-1 (val) or by test top-1 "
                "(test = the paper's oracle; also what lets --val-fraction 0 run a grid, analytic or Optuna sweep, "
                "choosing on test labels)"),
    # ray
    Option("num_workers", "int", 1, group="ray", lo=1, paper=True, help="Ray Train workers per run (DDP when > 1)"),
    Option("use_gpu", "bool", False, group="ray", paper=True, help="train on GPUs"),
    Option("gpus_per_trial", "float", 1.0, group="ray", lo=0.0, open=("lo",), resume=True, paper=True,
           help="GPUs per trial, fractional allowed (e.g. 0.25)"),
    Option("cpus_per_trial", "float", 1.0, group="ray", lo=0.0, open=("lo",), resume=True, help="CPUs per worker"),
    Option("max_concurrent_trials", "int", group="ray", lo=1, resume=True,
           help="default: as many as the cluster's CPUs/GPUs allow"),
    Option("max_failures", "int", 2, group="ray", lo=0, resume=True,
           help="retries of a failed trial from its last checkpoint"),
    Option("checkpoint_every", "int", 0, group="ray", lo=0, resume=True,
           help="also save a trial's state every N epochs (0: only by --checkpoint-seconds and after the last "
                "epoch; a killed or failed trial repeats the epochs since its last checkpoint)"),
    Option("checkpoint_seconds", "float", 60.0, group="ray", lo=0.0, resume=True, help="save a trial's state after "
           "an epoch that ends this long after its previous checkpoint (0: every epoch)"),
    Option("keep_checkpoints", default="last", group="ray", choices=("last", "all", "none"), resume=True,
           help="what a trial keeps once it has ended: last = its newest checkpoint (weights, optimizer, RNG); "
                "all = every checkpoint it saved; none = no weights (metrics only, enough for --resume and compare)"),
    Option("dry_run", "bool", False, group="main", resume=True,
           help="print the trials each phase would run (per loss), their trial-epochs and the estimate, then "
                "exit: starts no Ray, writes nothing"),
    Option("address", group="ray", resume=True,
           help="Ray cluster: auto or host:port (default: an embedded local Ray)"),
    Option("storage_path", group="ray", resume=True, paper=True,
           help="local/NFS folder, s3://bucket/prefix[?endpoint_override=h:p&scheme=http] or gs://bucket/prefix "
                "(default: $ROBUSTLOSS_STORAGE, else ~/robustloss_results; a relative path is relative to the "
                "launch directory, and refused inside `ray job submit --working-dir`)"),
    Option("storage_shared", "bool", False, group="ray", resume=True, help="the local --storage-path is a shared "
           "mount on every node (a multi-node cluster refuses a node-local path otherwise)"),
    Option("name", group="ray", resume=True, paper=True,
           help="experiment name (folder under --storage-path; default: mode-dataset-K-time)"),
    Option("resume", "bool", False, group="ray", resume=True,
           help="continue the experiment --name as it was asked (its robustloss.json): other flags may only change "
                "resources or output (--max-concurrent-trials, --quiet, ...; under --search optuna or random also "
                "--num-samples); a flag that would change the trials is refused"),
    Option("grid_name", flag="--grid", group="ray", modes=("compare",), help="compare: grid experiment name"),
    Option("analytic_name", flag="--analytic", group="ray", modes=("compare",),
           help="compare: analytic experiment name"),
    Option("json_out", group="ray", resume=True, help="write a machine-readable summary here"),
    Option("callbacks", "names", [], group="ray", choices=lambda: tuple(sorted(CALLBACKS)), resume=True,
           help=f"experiment trackers beside TensorBoard, comma-separated: {', '.join(CALLBACKS)} (extras "
                f"robustloss[mlflow], robustloss[wandb]; each adds per-trial start-up time)"),
    Option("quiet", "bool", False, group="ray", resume=True, help="no Tune progress table"),
    Option("verbose", "bool", False, group="ray", resume=True, help="Ray's, Tune's and Train's own INFO logs"),
)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
# every spelling of an option in a config file or an API keyword: its name and its flag without dashes
SPELLINGS: dict[str, str] = {**{o.cli[2:].replace("-", "_"): o.name for o in OPTIONS}, **{o.name: o.name for o in OPTIONS}}
MODES = BY_NAME["mode"].choices
MAY_CHANGE_ON_RESUME = frozenset(o.name for o in OPTIONS if o.resume)
PAPER_KEYS = frozenset(o.name for o in OPTIONS if o.paper)


def flag(name: str) -> str:
    """The CLI flag of option ``name`` (``grid_name`` is ``--grid``)."""
    return BY_NAME[name].cli if name in BY_NAME else "--" + name.replace("_", "-")
