"""``SweepRequest``: what a user asks for, from the CLI, a YAML config or the Python API — one object.

``SweepRequest(**options).validated()`` runs every check that needs no data, once, before Ray starts,
and raises ``RequestError`` with one line naming the value and what is allowed. It also resolves what
follows from the options: the dataset's number of classes, the dataset's keyword arguments, the grids
and learning rates of a grid sweep, and the learning-rate protocol.

Learning-rate protocol (``lr_protocol``, issue "a comparison a researcher would accept"):
  * ``searched`` (default without ``lr``): the grid searches ``lrs`` × loss parameters; the analytic mode
    searches the same ``lrs`` with its computed parameters (it removes only the loss-parameter dimension)
    and pays for that search;
  * ``shared`` (default when ``lr`` is given): both modes train at one learning rate fixed in advance
    (the paper's WebVision protocol); the grid searches only loss parameters.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from robustloss_core.presets import C_DEFAULT
from services.cluster import starts_embedded

CONFIG_DIR = Path(__file__).resolve().parent.parent / "sweeps" / "configs"
MODES = ("train", "grid", "analytic", "compare", "all")
SEARCHES = ("grid", "optuna")
SELECTIONS = ("val", "test")
LR_PROTOCOLS = ("searched", "shared")
BIAS_SCHEDULES = ("auto", "constant", "weaning", "dynamic")
PICKS = ("curve", "pilot")
# Options that act in some modes only: given (with a value other than the default) in another mode they
# would do nothing, so they are refused. Options needing another option's value are checked in validated().
MODE_OPTIONS = {
    "calibrate_only": ("analytic", "all"), "pick": ("analytic", "all"), "pilots": ("analytic", "all"),
    "pilot_fraction": ("analytic", "all"), "calibration_reference": ("analytic", "all"),
    "loss_params": ("train",), "logit_bias": ("train",),
    "lrs": ("grid", "analytic", "all"), "grid_file": ("grid", "analytic", "all"),
    "search": ("grid",), "num_samples": ("grid",), "optuna_storage": ("grid",),
    "grid_name": ("compare",), "analytic_name": ("compare",),
    "selection": ("grid", "analytic", "compare", "all"),
}
CALLBACKS = {"mlflow": "mlflow", "wandb": "wandb"}   # --callbacks name -> the package it needs
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


class RequestError(ValueError):
    """Bad input: printed as one line, exit status 2, before Ray starts and before anything is stored."""


# ------------------------------------------------------------------------------ one typing rule
# The same rule for the CLI, a YAML config and the API (``SweepRequest.from_options``): a list is a list or a
# comma string (a list of numbers also one number), a mapping a dict or ``k=v,k=v``, a number a number or its
# string; anything else is a RequestError naming the option, the value and the type expected.
LIST_OF_NAMES = ("losses", "callbacks")
LIST_OF_NUMBERS = ("lrs",)
MAPPINGS = ("dataset_args", "loss_params")
INTEGERS = ("classes", "seeds", "epochs", "batch_size", "num_samples", "num_workers", "max_failures",
            "max_concurrent_trials", "pilots", "checkpoint_every", "calibration_reference")
NUMBERS = ("noise_rate", "val_fraction", "bias_c", "pilot_fraction", "lr", "gpus_per_trial", "cpus_per_trial",
           "checkpoint_seconds")
NUMBER_OR_AUTO = ("logit_bias", "sigma")
FLAGS = ("download", "calibrate_only", "use_gpu", "storage_shared", "resume", "quiet", "verbose")
RESOLVED = ("num_classes", "dataset_kwargs", "grids", "given")   # set by validated() / from_options, not options


def flag(name: str) -> str:
    """The CLI flag of option ``name`` (``grid_name`` is ``--grid``)."""
    return {"grid_name": "--grid", "analytic_name": "--analytic"}.get(name, "--" + name.replace("_", "-"))


def _bad(name: str, value, expected: str) -> RequestError:
    return RequestError(f"{flag(name)} {value!r}: expected {expected}")


def _scalar(text: str):
    """'3' -> 3, '0.5' -> 0.5, anything else stays the string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _int(name: str, value):
    if isinstance(value, str):
        value = _scalar(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, value, "an integer (a number or its string)")
    return value


def _float(name: str, value, expected: str = "a number (a number or its string)"):
    if isinstance(value, str):
        value = _scalar(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, value, expected)
    return float(value)


def _items(name: str, value) -> list:
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise _bad(name, value, "a list or a comma string a,b,...")


def _mapping(name: str, value) -> dict:
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, str):
        items = []
        for item in filter(None, (s.strip() for s in value.split(","))):
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise _bad(name, value, f"a mapping (a dict or k=v,k=v); {item!r} is not k=v")
            items.append((key.strip(), text.strip()))
    else:
        raise _bad(name, value, "a mapping (a dict or k=v,k=v)")
    if not all(isinstance(k, str) for k, _ in items):
        raise _bad(name, value, "a mapping with string keys")
    return {k: _scalar(v) if isinstance(v, str) else v for k, v in items}


def coerce(name: str, value, default=None):
    """Option ``name``'s value by the one typing rule; ``None`` stays None where the default is None."""
    if value is None and default is None:
        return None
    if name in LIST_OF_NAMES:
        items = _items(name, value)
        if not all(isinstance(v, str) for v in items):
            raise _bad(name, value, "a list of names or a comma string a,b,...")
        return items
    if name in LIST_OF_NUMBERS:
        one = isinstance(value, (int, float)) and not isinstance(value, bool)   # a lone number: a list of one
        return [_float(name, v, "a list of numbers or a comma string a,b,...") for v in ([value] if one else _items(name, value))]
    if name in MAPPINGS:
        return _mapping(name, value)
    if name in INTEGERS:
        return _int(name, value)
    if name in NUMBERS:
        return _float(name, value)
    if name in NUMBER_OR_AUTO:
        return "auto" if str(value).strip() == "auto" else _float(name, value, "a number or auto")
    if name in FLAGS:
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise _bad(name, value, "true or false")
        return value
    if isinstance(value, os.PathLike):   # a path option given as a pathlib.Path
        value = os.fspath(value)
    if not isinstance(value, str):
        raise _bad(name, value, "a string")
    return value


def unknown_names(unknown, names, what: str = "option") -> RequestError:
    """'unknown option lrz (did you mean lrs, lr?)': the nearest names by difflib, not the whole list."""
    parts = []
    for u in sorted(unknown):
        near = difflib.get_close_matches(str(u), sorted(names), n=3, cutoff=0.6)
        parts.append(f"{u!r}" + (f" (did you mean {', '.join(near)}?)" if near else ""))
    return RequestError(f"unknown {what}{'s' if len(parts) > 1 else ''} {'; '.join(parts)}")


@dataclass
class SweepRequest:
    """Every option of ``sweeps/run.py`` (same names as the flags, dashes as underscores)."""

    mode: str = "all"
    # data
    dataset: str = "synthetic"
    data_root: str | None = None
    download: bool = False
    classes: int = 10
    dataset_args: dict = field(default_factory=dict)
    noise: str = "none"
    noise_rate: float = 0.0
    noise_variant: str = "paper"
    val_fraction: float = 0.1
    # training
    losses: list = field(default_factory=lambda: ["ce", "mae", "gce"])
    loss_params: dict = field(default_factory=dict)
    logit_bias: float | str = 0.0
    bias_c: float = C_DEFAULT
    bias_schedule: str = "auto"
    calibration_reference: int | None = None
    sigma: float | str = 1.0
    pick: str = "curve"
    pilots: int = 4
    pilot_fraction: float = 0.1
    lr: float | None = None
    lrs: list | None = None
    lr_protocol: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    model: str | None = None
    seeds: int = 1
    grid_file: str = str(CONFIG_DIR / "grid.yaml")
    search: str = "grid"
    num_samples: int | None = None
    calibrate_only: bool = False
    selection: str = "val"
    # ray
    num_workers: int = 1
    use_gpu: bool = False
    gpus_per_trial: float = 1.0
    cpus_per_trial: float = 1.0
    max_concurrent_trials: int | None = None
    max_failures: int = 2
    checkpoint_every: int = 0            # also checkpoint every N epochs (0: time rule and the last epoch only)
    checkpoint_seconds: float = 60.0     # checkpoint after an epoch ending >= this long after the previous one
    address: str | None = None
    storage_path: str | None = None      # None: $ROBUSTLOSS_STORAGE, else ~/robustloss_results
    storage_shared: bool = False         # a local path that is a shared mount on every node
    name: str | None = None
    resume: bool = False
    grid_name: str | None = None
    analytic_name: str | None = None
    json_out: str | None = None
    quiet: bool = False
    verbose: bool = False
    callbacks: list = field(default_factory=list)
    optuna_storage: str | None = None
    # paper-table configs (sweeps/configs/paper/): for compare's paper columns
    config: str | None = None
    setting: str | None = None
    row: str | None = None
    # resolved by validated()
    num_classes: int | None = None
    dataset_kwargs: dict = field(default_factory=dict)
    grids: dict = field(default_factory=dict)
    # the options the user set (command line, config file or API keywords), for the no-op and resume checks
    given: frozenset = frozenset()

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def option_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} - set(RESOLVED)

    @classmethod
    def from_options(cls, given=None, **options) -> "SweepRequest":
        """A request from keyword options (the API, the CLI, a config) typed by the one rule (:func:`coerce`);
        unknown names are a RequestError suggesting the nearest. ``given``: the options the user set
        (default: every keyword passed)."""
        names = cls.option_names()
        unknown = set(options) - names
        if unknown:
            raise unknown_names(unknown, names)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        typed = {k: coerce(k, v, defaults.get(k)) for k, v in options.items()}
        return cls(**typed, given=frozenset(options if given is None else given))

    def replace(self, **changes) -> "SweepRequest":
        return dataclasses.replace(self, **changes)

    def record(self) -> dict:
        """What was asked (``robustloss.json``): the options and what follows from them (K, the grids)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "given"}

    # ------------------------------------------------------------------------------ validation
    def validated(self) -> "SweepRequest":
        """Every check that needs no data, in one place; returns a resolved copy."""
        from robustloss_core import noise as noise_mod
        from robustloss_core.datasets import DATASETS, dataset_num_classes
        from robustloss_core.losses import LOSSES, build_loss

        r = dataclasses.replace(self, losses=list(self.losses), callbacks=list(self.callbacks))
        _choice("--mode", r.mode, MODES)
        r.check_no_ops()
        _choice("--dataset", r.dataset, sorted(DATASETS), what="dataset")
        if not r.losses:
            raise RequestError("--losses is empty; choose from " + ", ".join(sorted(LOSSES)))
        for loss in r.losses:
            _choice("--losses", loss, sorted(LOSSES), what="loss")
        if r.mode == "train" and len(r.losses) != 1:
            raise RequestError(f"--mode train takes exactly one loss, got {','.join(r.losses)!r}")
        _choice("--search", r.search, SEARCHES)
        _choice("--selection", r.selection, SELECTIONS)
        _choice("--bias-schedule", r.bias_schedule, BIAS_SCHEDULES)
        _choice("--pick", r.pick, PICKS)
        _number("--pilot-fraction", r.pilot_fraction, lo=0.0, hi=1.0, lo_open=True)
        if r.lr_protocol is None:
            r.lr_protocol = "shared" if r.lr is not None else "searched"
        _choice("--lr-protocol", r.lr_protocol, LR_PROTOCOLS)
        # numbers: finite, in range
        _number("--noise-rate", r.noise_rate, lo=0.0, hi=1.0)
        _number("--val-fraction", r.val_fraction, lo=0.0, hi=1.0, hi_open=True)
        _number("--bias-c", r.bias_c, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        for flag, value in (("--lr", r.lr), ("--gpus-per-trial", r.gpus_per_trial), ("--cpus-per-trial", r.cpus_per_trial)):
            if value is not None:
                _number(flag, value, lo=0.0, lo_open=True)
        r.checkpoint_seconds = _number("--checkpoint-seconds", _as_float("--checkpoint-seconds", r.checkpoint_seconds,
                                                                         "a number of seconds >= 0"), lo=0.0)
        if r.lrs is not None:
            if not r.lrs:
                raise RequestError("--lrs is empty: give positive numbers a,b,...")
            for v in r.lrs:
                _number("--lrs", v, lo=0.0, lo_open=True)
        for flag, value, low in (("--seeds", r.seeds, 1), ("--num-workers", r.num_workers, 1), ("--epochs", r.epochs, 1),
                                 ("--batch-size", r.batch_size, 1), ("--num-samples", r.num_samples, 1),
                                 ("--classes", r.classes, 2), ("--max-failures", r.max_failures, 0),
                                 ("--max-concurrent-trials", r.max_concurrent_trials, 1), ("--pilots", r.pilots, 1),
                                 ("--checkpoint-every", r.checkpoint_every, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise RequestError(f"{flag} {value!r} must be an integer >= {low}")
        if str(r.logit_bias) != "auto":
            r.logit_bias = _number("--logit-bias", _as_float("--logit-bias", r.logit_bias, "a number or auto"))
        if str(r.sigma) != "auto":
            r.sigma = _number("--sigma", _as_float("--sigma", r.sigma, "a number > 0 or auto"), lo=0.0, lo_open=True)
        if r.calibration_reference is not None:
            _choice("--calibration-reference", r.calibration_reference, calibration_references())
        # noise against the dataset's maps
        _choice("--noise", r.noise, noise_mod.NOISE_KINDS)
        if r.noise == "none" and r.noise_rate > 0:
            raise RequestError(f"--noise-rate {r.noise_rate} needs --noise symmetric or asymmetric")
        if r.noise != "none" and r.noise_rate == 0:
            raise RequestError(f"--noise {r.noise} needs --noise-rate > 0 (at 0 no label is changed: the run would "
                               "be clean; use --noise none for that)")
        if r.noise_variant not in noise_mod.NOISE_VARIANTS[r.noise] and r.noise != "none":
            raise RequestError(f"--noise-variant {r.noise_variant!r} is not a {r.noise} variant; allowed: "
                               f"{', '.join(noise_mod.NOISE_VARIANTS[r.noise])}")
        if r.noise == "asymmetric":
            try:
                noise_mod.asymmetric_map(r.dataset, r.noise_variant)
            except ValueError as exc:
                raise RequestError(f"--noise asymmetric --dataset {r.dataset}: {exc}") from None
        # modes and names
        if r.mode == "compare" and not (r.grid_name and r.analytic_name):
            raise RequestError("--mode compare needs --grid NAME and --analytic NAME")
        if r.resume and not r.name:
            raise RequestError("--resume needs --name of the experiment to continue")
        for flag, value in (("--name", r.name), ("--grid", r.grid_name), ("--analytic", r.analytic_name)):
            if value is not None and not _NAME.match(str(value)):
                raise RequestError(f"{flag} {value!r}: use letters, digits and . _ = + - (a folder name)")
        if r.val_fraction == 0 and r.mode in ("grid", "analytic", "all") and r.selection != "test":
            # Optuna's TPE, ASHA's stops, --pick pilot and --selection val would all choose on test labels
            what = {"optuna": "--search optuna (TPE + ASHA)"}.get(r.search) or (
                "--pick pilot" if r.pick == "pilot" else "--selection val")
            raise RequestError(f"--val-fraction 0 leaves no validation split, so {what} would choose on test labels: "
                               "give --val-fraction > 0, or ask for the oracle by name with --selection test")
        if r.pick == "pilot" and r.val_fraction == 0:
            raise RequestError("--pick pilot keeps the pilot with the best noisy-validation top-1: --val-fraction must be > 0")
        if r.lr_protocol == "shared" and r.lr is None and r.mode in ("grid", "analytic", "all"):
            raise RequestError("--lr-protocol shared needs --lr, the one learning rate both modes train at")
        if r.search == "optuna" and r.mode in ("all", "analytic"):
            raise RequestError(f"--search optuna is for --mode grid, not --mode {r.mode}")
        # resources
        if r.use_gpu and r.gpus_per_trial < r.num_workers and r.gpus_per_trial > 1:
            raise RequestError(f"--gpus-per-trial {r.gpus_per_trial} must be < 1 (shared) or a multiple of --num-workers")
        cpus = os.cpu_count() or 1
        if starts_embedded(r.address) and r.num_workers * r.cpus_per_trial > cpus:
            # the embedded Ray gets this machine's CPUs: Ray Train would wait for the workers, time out, retry
            raise RequestError(f"--num-workers {r.num_workers} x --cpus-per-trial {r.cpus_per_trial:g} = "
                               f"{r.num_workers * r.cpus_per_trial:g} CPUs per trial, but the embedded Ray has this "
                               f"machine's {cpus}: use fewer, or --address of a cluster with more")
        for cb in r.callbacks:
            _choice("--callbacks", cb, sorted(CALLBACKS))
            try:
                __import__(CALLBACKS[cb])
            except ImportError:
                raise RequestError(f"--callbacks {cb} needs the {CALLBACKS[cb]} package: pip install 'robustloss[{cb}]'") from None
        if r.dataset == "imagefolder" and not r.data_root:
            raise RequestError("--dataset imagefolder needs --data-root")
        # what follows from the options
        r.dataset_kwargs = {**({"classes": r.classes} if takes_classes(r.dataset) else {}), **r.dataset_args}
        try:
            r.num_classes = dataset_num_classes(r.dataset, root=r.data_root, **r.dataset_kwargs)
        except (ValueError, OSError, TypeError) as exc:
            raise RequestError(str(exc).splitlines()[0]) from None
        if r.mode == "train":
            try:
                build_loss(r.losses[0], r.num_classes, dataset=r.dataset, **r.loss_params)
            except (ValueError, TypeError) as exc:
                raise RequestError(str(exc).splitlines()[0]) from None
        if r.mode in ("grid", "all") or (r.mode == "analytic" and r.lr_protocol == "searched"):
            r.grid_file = os.path.abspath(os.path.expanduser(r.grid_file))   # the record resumes from any folder
            r.grids, grid_lrs = load_grids(r.grid_file, r.losses if r.mode != "analytic" else [])
            r.lrs = list(r.lrs or grid_lrs)
        if r.lr_protocol == "shared" and r.lr is not None:
            r.lrs = [float(r.lr)]
        if r.mode != "compare":
            try:
                r.base_train()   # TrainConfig's own checks (model name, batch size, ...)
            except ValueError as exc:
                raise RequestError(str(exc).splitlines()[0]) from None
        return r

    def check_no_ops(self) -> None:
        """Refuse an option the user set that would do nothing here: a mode's option in another mode
        (``MODE_OPTIONS``), ``--classes`` on a dataset whose K is fixed, an option another one switches off."""
        from robustloss_core.datasets import DATASETS

        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        set_here = {k for k in self.given if k in defaults and getattr(self, k) != defaults[k]}
        for name in sorted(set_here):
            modes = MODE_OPTIONS.get(name)
            if modes is not None and self.mode not in modes:
                raise RequestError(f"{flag(name)}{_shown(getattr(self, name))} has no effect in --mode {self.mode} "
                                   f"(it is for --mode {' / '.join(modes)}); drop it")
        if "classes" in self.given and self.dataset in DATASETS and not takes_classes(self.dataset):
            raise RequestError(f"--classes {self.classes}: {self.dataset} has a fixed number of classes; --classes "
                               "is for the synthetic datasets")
        needs = (("pilots", "pick", "pilot"), ("pilot_fraction", "pick", "pilot"),
                 ("num_samples", "search", "optuna"), ("optuna_storage", "search", "optuna"))
        for name, other, value in needs:
            if name in set_here and getattr(self, other) != value:
                raise RequestError(f"{flag(name)}{_shown(getattr(self, name))} has no effect without {flag(other)} {value}")

    # ------------------------------------------------------------------------------ derived settings
    def resolved_bias_schedule(self, mode: str | None = None) -> dict | None:
        """``--bias-schedule``: weaning = the relative ladder for every trial with ε > 0 (the paper's "**"
        runs); dynamic = ε recomputed each epoch so the biased mean p_y stays at c; constant = none;
        auto = weaning for analytic mode on webvision (Table 3's MAE**), constant otherwise."""
        from robustloss_core.config import WEANING

        kind = self.bias_schedule
        if kind == "auto":
            kind = "weaning" if (mode or self.mode) == "analytic" and self.dataset == "webvision" else "constant"
        return {"weaning": dict(WEANING), "dynamic": {"kind": "dynamic", "c": float(self.bias_c)}}.get(kind)

    def base_train(self, mode: str | None = None) -> dict:
        """The TrainConfig fields every trial shares, presets filled in (validated by TrainConfig)."""
        from robustloss_core.config import TrainConfig

        cfg = TrainConfig.from_dict({
            "dataset": self.dataset, "data_root": self.data_root, "download": self.download,
            "dataset_args": dict(self.dataset_kwargs), "noise": self.noise, "noise_rate": float(self.noise_rate),
            "noise_variant": self.noise_variant, "model": self.model, "batch_size": self.batch_size,
            "val_fraction": float(self.val_fraction), **({"epochs": self.epochs} if self.epochs else {}),
        }).resolved()
        # the relative schedule is expanded per trial, against each trial's own ε (TrainConfig.resolved)
        return {**cfg.to_dict(), "logit_bias_schedule": self.resolved_bias_schedule(mode)}

    def resources(self):
        from services.spec import Resources

        return Resources(num_workers=self.num_workers, use_gpu=self.use_gpu,
                         gpus_per_worker=self.gpus_per_trial / self.num_workers, cpus_per_worker=self.cpus_per_trial,
                         max_failures=self.max_failures, max_concurrent_trials=self.max_concurrent_trials,
                         checkpoint_every=self.checkpoint_every, checkpoint_seconds=self.checkpoint_seconds)


def _shown(value) -> str:
    """' <value>' as typed on a command line ('' for a switch)."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, (list, tuple)):
        return " " + ",".join(map(str, value))
    if isinstance(value, dict):
        return " " + ",".join(f"{k}={v}" for k, v in value.items())
    return f" {value}"


def takes_classes(dataset: str) -> bool:
    """Whether ``dataset``'s K is chosen (``--classes``: its builder takes ``classes``) or fixed."""
    import inspect

    from robustloss_core.datasets import DATASETS

    return "classes" in inspect.signature(DATASETS[dataset]).parameters


def calibration_references() -> list[int]:
    """The K_ref values ``--calibration-reference`` may name: every reference of theory's recipes."""
    from robustloss_core.theory import CALIBRATION_RECIPES

    return sorted({ref.classes for recipe in CALIBRATION_RECIPES.values() for ref in recipe.references})


def _choice(flag: str, value, allowed, *, what: str | None = None) -> None:
    """RequestError unless ``value`` is one of ``allowed``: '<flag> <value> is not one of ...', with the
    nearest allowed names when there are some."""
    if value not in allowed:
        head = f"unknown {what} {value!r}" if what else f"{flag} {value!r} is not one of"
        near = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(near)}?)" if near and len(allowed) > 6 else ""
        raise RequestError(f"{head}{'; choose from' if what else ''} {', '.join(map(str, allowed))}{hint}")


def _as_float(flag: str, value, allowed: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{flag} {value!r} must be {allowed}") from None


def _number(flag: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    """A finite number within [lo, hi] (open ends where asked); RequestError naming the value otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{flag} {value!r} must be a finite number")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise RequestError(f"{flag} {value} must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise RequestError(f"{flag} {value} must be {'<' if hi_open else '<='} {hi}")
    return float(value)


def load_grids(path: str, losses: list[str]) -> tuple[dict, list[float]]:
    """Per-loss parameter grids and the learning-rate grid from the grid YAML."""
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise RequestError(f"--grid-file {path!r}: file not found") from None
    except yaml.YAMLError as exc:
        raise RequestError(f"--grid-file {path!r}: malformed YAML: {str(exc).splitlines()[0]}") from None
    grids = data.get("losses") or {}
    missing = [loss for loss in losses if loss not in grids]
    if missing:
        raise RequestError(f"--grid-file {path!r} has no grid for {', '.join(missing)}")
    lrs = [float(x) for x in data.get("lrs") or []]
    if not lrs:
        raise RequestError(f"--grid-file {path!r}: needs a non-empty 'lrs' list")
    return {loss: {k: list(v) if isinstance(v, list) else [v] for k, v in (grids[loss] or {}).items()} for loss in losses}, lrs
