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
CALLBACKS = {"mlflow": "mlflow", "wandb": "wandb"}   # --callbacks name -> the package it needs
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


class RequestError(ValueError):
    """Bad input: printed as one line, exit status 2, before Ray starts and before anything is stored."""


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

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_options(cls, **options) -> "SweepRequest":
        """A request from keyword options (the API); unknown names are a RequestError naming them."""
        names = {f.name for f in dataclasses.fields(cls)} - {"num_classes", "dataset_kwargs", "grids"}
        unknown = sorted(set(options) - names)
        if unknown:
            raise RequestError(f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
        if isinstance(options.get("losses"), str):
            options["losses"] = [s.strip() for s in options["losses"].split(",") if s.strip()]
        if isinstance(options.get("callbacks"), str):
            options["callbacks"] = [s.strip() for s in options["callbacks"].split(",") if s.strip()]
        return cls(**options)

    def replace(self, **changes) -> "SweepRequest":
        return dataclasses.replace(self, **changes)

    def record(self) -> dict:
        """What was asked (``robustloss.json``): the options, without the resolved grids."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("grids",)}

    # ------------------------------------------------------------------------------ validation
    def validated(self) -> "SweepRequest":
        """Every check that needs no data, in one place; returns a resolved copy."""
        from robustloss_core import noise as noise_mod
        from robustloss_core.datasets import DATASETS, dataset_num_classes
        from robustloss_core.losses import LOSSES, build_loss

        r = dataclasses.replace(self, losses=list(self.losses), callbacks=list(self.callbacks))
        _choice("--mode", r.mode, MODES)
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
        if r.calibration_reference is not None and r.calibration_reference not in (10, 100):
            raise RequestError(f"--calibration-reference {r.calibration_reference!r} is not one of 10, 100")
        # noise against the dataset's maps
        _choice("--noise", r.noise, noise_mod.NOISE_KINDS)
        if r.noise == "none" and r.noise_rate > 0:
            raise RequestError(f"--noise-rate {r.noise_rate} needs --noise symmetric or asymmetric")
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
        if r.selection == "val" and r.val_fraction == 0 and r.mode in ("all",):
            raise RequestError("--selection val needs a validation split: --val-fraction > 0 (or --selection test, the oracle)")
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
        r.dataset_kwargs = {**({"classes": r.classes} if r.dataset.startswith("synthetic") else {}), **r.dataset_args}
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

    def lr_for(self, base: dict):
        """The one learning rate of a loss when none is searched: ``lr``, else the paper's MLP1024 rate for
        the loss (``presets.mlp_lr``; ``mae*`` when biased) where the dataset has one, else the preset's."""
        from robustloss_core import presets

        def pick(loss: str, biased: bool = False) -> float:
            if self.lr:
                return float(self.lr)
            if base.get("model") == "mlp1024":
                try:
                    return presets.mlp_lr(loss, self.dataset, logit_bias=biased)
                except ValueError:
                    pass
            return float(base["lr"])

        return pick


def _choice(flag: str, value, allowed, *, what: str | None = None) -> None:
    """RequestError unless ``value`` is one of ``allowed``: '<flag> <value> is not one of ...'."""
    if value not in allowed:
        head = f"unknown {what} {value!r}" if what else f"{flag} {value!r} is not one of"
        raise RequestError(f"{head}{'; choose from' if what else ''} {', '.join(map(str, allowed))}")


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
