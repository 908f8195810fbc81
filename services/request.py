"""``SweepRequest``: what a user asks for, from the CLI, a YAML config or the Python API — one object.

Its fields are the options of ``services.options.OPTIONS`` (one declaration each) plus what follows from them.
``SweepRequest.from_options(**options)`` types the values by one rule (``services.rules.coerce``);
``validated()`` = :meth:`~SweepRequest.check` (every check that needs no file: each option's choices and
range, options that would do nothing, options that contradict each other) then
:meth:`~SweepRequest.resolve` (what follows: the dataset's K and keyword arguments, the grid file's grids and
learning rates — checked by the same rules as the flags — and the learning-rate protocol). Bad input raises
``RequestError``: one line naming the value and what is allowed, before Ray starts.

Learning-rate protocol (``lr_protocol``):
  * ``searched`` (default without ``lr``): the grid searches ``lrs`` × loss parameters; the analytic mode
    searches the same ``lrs`` with its computed parameters (it removes only the loss-parameter dimension)
    and pays for that search;
  * ``shared`` (default when ``lr`` is given): both modes train at one learning rate fixed in advance
    (the paper's WebVision protocol); the grid searches only loss parameters.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import dataclass

from services import options as opts
from services.cluster import starts_embedded
from services.options import BY_NAME, MODES, OPTIONS, SWEEPS, flag  # noqa: F401 (MODES: re-exported)
from services.rules import RequestError, check_value, coerce, read_yaml, unknown_names  # noqa: F401 (re-exported)

RESOLVED = ("num_classes", "dataset_kwargs", "grids", "given")   # set by validated() / from_options, not options
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


def _declare(cls):
    """One dataclass field per ``OPTIONS`` row, before the class's own (resolved) fields."""
    own = dict(cls.__annotations__)
    cls.__annotations__ = {**{o.name: "object" for o in OPTIONS}, **own}
    for o in OPTIONS:
        mutable = isinstance(o.default, (list, dict))
        setattr(cls, o.name, dataclasses.field(default_factory=lambda d=o.default: copy.deepcopy(d)) if mutable
                else dataclasses.field(default=o.default, metadata={"option": o}))
    return cls


@dataclass
@_declare
class SweepRequest:
    """Every option of ``sweeps/run.py`` (``services.options``: same names as the flags, dashes as
    underscores), and what ``resolve`` derives from them."""

    num_classes: int | None = None                            # K of the dataset
    dataset_kwargs: dict = dataclasses.field(default_factory=dict)   # the dataset builder's keyword arguments
    grids: dict = dataclasses.field(default_factory=dict)     # per loss: its parameter grid (grid file)
    given: frozenset = frozenset()   # the options the user set (command line, config file or API keywords)

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def option_names(cls) -> set[str]:
        return set(BY_NAME)

    @classmethod
    def from_options(cls, given=None, **options) -> "SweepRequest":
        """A request from keyword options (the API, the CLI, a config; an option's name or its flag's spelling,
        ``grid=`` for ``--grid``) typed by the one rule (:func:`coerce`); unknown names are a RequestError
        suggesting the nearest. ``given``: the options the user set (default: every keyword passed)."""
        unknown = set(options) - set(opts.SPELLINGS)
        if unknown:
            raise unknown_names(unknown, BY_NAME)
        options = {opts.SPELLINGS[k]: v for k, v in options.items()}
        typed = {k: coerce(k, v, BY_NAME[k].default) for k, v in options.items()}
        given = options if given is None else {opts.SPELLINGS.get(k, k) for k in given}
        return cls(**typed, given=frozenset(given))

    def replace(self, **changes) -> "SweepRequest":
        return dataclasses.replace(self, **changes)

    def record(self) -> dict:
        """What was asked (``robustloss.json``): the options and what follows from them (K, the grids)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "given"}

    # ------------------------------------------------------------------------------ check, then resolve
    def validated(self) -> "SweepRequest":
        """:meth:`check`, then :meth:`resolve`: a resolved copy, or a RequestError."""
        from robustloss_core.datasets import canonical_name

        try:   # the dataset's name is normalised once, here (fmnist -> fashionmnist)
            dataset = canonical_name(self.dataset)
        except ValueError:
            dataset = self.dataset   # check() names it
        typed = {o.name: coerce(o.name, getattr(self, o.name), o.default) for o in OPTIONS}
        r = self.replace(**{**typed, "dataset": dataset})
        if r.lr_protocol is None:
            r.lr_protocol = "shared" if r.lr is not None else "searched"
        r.check()
        return r.resolve()

    def check(self) -> None:
        """Every check that reads no file: each option's choices and range (``services.options``), options that
        would do nothing here, options that contradict each other."""
        for o in OPTIONS:
            check_value(o.name, getattr(self, o.name))
        self.check_no_ops()
        self._check_modes()
        self._check_noise()
        self._check_resources()

    def check_no_ops(self) -> None:
        """Refuse an option the user set that would do nothing here: a mode's option in another mode
        (``Option.modes``), one another option switches off (``Option.needs``), ``--classes`` on a dataset
        whose K is fixed."""
        set_here = {k for k in self.given if k in BY_NAME and getattr(self, k) != BY_NAME[k].default}
        for name in sorted(set_here):
            o = BY_NAME[name]
            if o.modes is not None and self.mode not in o.modes:
                raise RequestError(f"{flag(name)}{_shown(getattr(self, name))} has no effect in --mode {self.mode} "
                                   f"(it is for --mode {' / '.join(o.modes)}); drop it")
        for name in sorted(set_here):
            if BY_NAME[name].needs is not None:
                other, values = BY_NAME[name].needs
                values = values() if callable(values) else values
                if getattr(self, other) not in values:
                    raise RequestError(f"{flag(name)}{_shown(getattr(self, name))} has no effect without "
                                       f"{flag(other)} {' or '.join(values)}")
        if "classes" in self.given and _known_dataset(self.dataset) and not takes_classes(self.dataset):
            raise RequestError(f"--classes {self.classes}: {self.dataset} has a fixed number of classes; --classes "
                               "is for the synthetic datasets")

    def _check_modes(self) -> None:
        from services import search

        if self.mode == "train" and len(self.losses) != 1:
            raise RequestError(f"--mode train takes exactly one loss, got {','.join(self.losses)!r}")
        if self.mode == "compare" and not (self.grid_name and self.analytic_name):
            raise RequestError("--mode compare needs --grid NAME and --analytic NAME")
        if self.resume and not self.name:
            raise RequestError("--resume needs --name of the experiment to continue")
        for name in ("name", "grid_name", "analytic_name"):
            value = getattr(self, name)
            if value is not None and not _NAME.match(str(value)):
                raise RequestError(f"{flag(name)} {value!r}: use letters, digits and . _ = + - (a folder name)")
        if self.val_fraction == 0 and self.mode in SWEEPS and self.selection != "test":
            # a searcher, a scheduler, --pick pilot and --selection val would all choose on test labels
            what = ((search.metric_chooser(self.search, self.scheduler) if self.mode == "grid" else None)
                    or ("--pick pilot" if self.pick == "pilot" else "--selection val"))
            raise RequestError(f"--val-fraction 0 leaves no validation split, so {what} would choose on test labels: "
                               "give --val-fraction > 0, or ask for the oracle by name with --selection test")
        if self.pick == "pilot" and self.val_fraction == 0:
            raise RequestError("--pick pilot keeps the pilot with the best noisy-validation top-1: --val-fraction must be > 0")
        if self.lr_protocol == "shared" and self.lr is None and self.mode in SWEEPS:
            raise RequestError("--lr-protocol shared needs --lr, the one learning rate both modes train at")

    def _check_noise(self) -> None:
        from robustloss_core import noise as noise_mod

        if self.noise == "none" and self.noise_rate > 0:
            raise RequestError(f"--noise-rate {self.noise_rate} needs --noise symmetric or asymmetric")
        if self.noise != "none" and self.noise_rate == 0:
            raise RequestError(f"--noise {self.noise} needs --noise-rate > 0 (at 0 no label is changed: the run would "
                               "be clean; use --noise none for that)")
        if self.noise != "none" and self.noise_variant not in noise_mod.NOISE_VARIANTS[self.noise]:
            raise RequestError(f"--noise-variant {self.noise_variant!r} is not a {self.noise} variant; allowed: "
                               f"{', '.join(noise_mod.NOISE_VARIANTS[self.noise])}")
        if self.noise == "asymmetric":
            try:
                noise_mod.asymmetric_map(self.dataset, self.noise_variant)
            except ValueError as exc:
                raise RequestError(f"--noise asymmetric --dataset {self.dataset}: {exc}") from None

    def _check_resources(self) -> None:
        if self.use_gpu and self.gpus_per_trial < self.num_workers and self.gpus_per_trial > 1:
            raise RequestError(f"--gpus-per-trial {self.gpus_per_trial} must be < 1 (shared) or a multiple of --num-workers")
        cpus = os.cpu_count() or 1
        if starts_embedded(self.address) and self.num_workers * self.cpus_per_trial > cpus:
            # the embedded Ray gets this machine's CPUs: Ray Train would wait for the workers, time out, retry
            raise RequestError(f"--num-workers {self.num_workers} x --cpus-per-trial {self.cpus_per_trial:g} = "
                               f"{self.num_workers * self.cpus_per_trial:g} CPUs per trial, but the embedded Ray has this "
                               f"machine's {cpus}: use fewer, or --address of a cluster with more")
        for cb in self.callbacks:
            try:
                __import__(opts.CALLBACKS[cb])
            except ImportError:
                raise RequestError(f"--callbacks {cb} needs the {opts.CALLBACKS[cb]} package: "
                                   f"pip install 'robustloss[{cb}]'") from None
        if self.dataset == "imagefolder" and not self.data_root:
            raise RequestError("--dataset imagefolder needs --data-root")

    def resolve(self) -> "SweepRequest":
        """A copy with what follows from the options: the dataset's keyword arguments and K, the grid file's grids
        (its learning rates checked as ``--lrs`` is), the learning rates a sweep searches (``services.resolve``);
        then the checks that need these (the loss's parameters, TrainConfig's own)."""
        from robustloss_core.datasets import dataset_num_classes
        from robustloss_core.losses import build_loss
        from services import resolve as rs

        r = self.replace(losses=list(self.losses), callbacks=list(self.callbacks))
        r.dataset_kwargs = {**({"classes": r.classes} if takes_classes(r.dataset) else {}), **r.dataset_args}
        try:
            r.num_classes = dataset_num_classes(r.dataset, root=r.data_root, **r.dataset_kwargs)
        except (ValueError, OSError, TypeError) as exc:
            raise RequestError(str(exc).splitlines()[0]) from None
        grid_lrs = None
        if rs.reads_grid_file(r):
            r.grid_file = os.path.abspath(os.path.expanduser(r.grid_file))   # the record resumes from any folder
            if not r.grids:   # a resumed request holds its stored grids (and lrs): the file is not read again
                r.grids, grid_lrs = load_grids(r.grid_file, r.losses if r.mode != "analytic" else [])
        r.lrs = rs.sweep_lrs(r, grid_lrs)
        try:
            if r.mode == "train":
                build_loss(r.losses[0], r.num_classes, dataset=r.dataset, **r.loss_params)
            if r.mode != "compare":
                r.base_train()   # TrainConfig's own checks (model name, batch size, ...)
        except (ValueError, TypeError) as exc:
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
        """The TrainConfig fields every trial shares (``Fixed.train``), presets filled in (validated by TrainConfig);
        none of the fields a trial's hyperparameters set (loss, lr, seed, ε, loss parameters: ``services.resolve``)."""
        from robustloss_core.config import TrainConfig
        from services.spec import HP_FIELDS

        cfg = TrainConfig.from_dict({
            "dataset": self.dataset, "data_root": self.data_root, "download": self.download,
            "dataset_args": dict(self.dataset_kwargs), "noise": self.noise, "noise_rate": float(self.noise_rate),
            "noise_variant": self.noise_variant, "model": self.model, "batch_size": self.batch_size,
            "val_fraction": float(self.val_fraction), **({"epochs": self.epochs} if self.epochs else {}),
        }).resolved()
        # the relative schedule is expanded per trial, against each trial's own ε (TrainConfig.resolved)
        fields = {k: v for k, v in cfg.to_dict().items() if k not in HP_FIELDS}
        return {**fields, "logit_bias_schedule": self.resolved_bias_schedule(mode)}

    def resources(self):
        from services.spec import Resources

        return Resources(num_workers=self.num_workers, use_gpu=self.use_gpu,
                         gpus_per_worker=self.gpus_per_trial / self.num_workers, cpus_per_worker=self.cpus_per_trial,
                         max_failures=self.max_failures, max_concurrent_trials=self.max_concurrent_trials,
                         checkpoint_every=self.checkpoint_every, checkpoint_seconds=self.checkpoint_seconds,
                         keep_checkpoints=self.keep_checkpoints)


def _shown(value) -> str:
    """' <value>' as typed on a command line ('' for a switch)."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, (list, tuple)):
        return " " + ",".join(map(str, value))
    if isinstance(value, dict):
        return " " + ",".join(f"{k}={v}" for k, v in value.items())
    return f" {value}"


def _known_dataset(name: str) -> bool:
    from robustloss_core.datasets import DATASETS

    return name in DATASETS


def takes_classes(dataset: str) -> bool:
    """Whether ``dataset``'s K is chosen (``--classes``: its K function takes ``classes``) or fixed."""
    import inspect

    from robustloss_core.datasets import spec

    k = spec(dataset).num_classes
    return callable(k) and "classes" in inspect.signature(k).parameters


def load_grids(path: str, losses: list[str]) -> tuple[dict, list[float]]:
    """Per-loss parameter grids and the learning-rate grid from the grid YAML; its learning rates are checked
    as ``--lrs`` is."""
    data = read_yaml(path, "--grid-file") or {}
    grids = data.get("losses") or {}
    missing = [loss for loss in losses if loss not in grids]
    if missing:
        raise RequestError(f"--grid-file {path!r} has no grid for {', '.join(missing)}")
    lrs = coerce("lrs", data.get("lrs") or [])
    if not lrs:
        raise RequestError(f"--grid-file {path!r}: needs a non-empty 'lrs' list")
    check_value("lrs", lrs, shown=f"--grid-file {path!r}: lrs")
    return {loss: {k: list(v) if isinstance(v, list) else [v] for k, v in (grids[loss] or {}).items()} for loss in losses}, lrs
