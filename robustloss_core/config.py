"""``TrainConfig``: everything one training run needs, as a JSON-serialisable dataclass.

Fields left ``None`` (model, lr, weight_decay, lr_schedule, batch_size) mean "the paper's setup for this
dataset": :meth:`TrainConfig.resolved` fills them from ``presets.training_setup(dataset, model)``
(Appendix A.1; MLP1024 gets the appendix MLP setup: no weight decay, no augmentation, the LR decay factor
and epochs fitted on the real Fashion-MNIST: presets.MLP1024_SETUP).

Learning-rate schedules (stepped once per epoch; epoch e counts from 0)::

    {"kind": "multistep", "milestones": [100, 150], "gamma": 0.1}   # lr·γ^#{m ≤ e}   (alias "step")
    {"kind": "exponential", "gamma": 0.95}                          # lr·γ^e          (alias "exp")
    {"kind": "constant"}                                             # lr

Shortened runs: when the schedule comes from the preset and ``epochs`` is smaller than the paper's
number of epochs, the milestones are scaled by epochs / paper_epochs (rounded, at least 1), so e.g. a
20-epoch CIFAR-10 run drops the LR at epochs 10 and 15 as the 200-epoch run does at 100 and 150. An
explicit ``lr_schedule`` is never rescaled.

Logit-bias schedule (Appendix A.2, the "**" runs): ``{"values": [ε0, …, ε5], "hold": 11}``: epoch e
(from 0) trains with ε = values[(e // hold) % len(values)] (6 × 11 = 66 epochs per cycle, repeating at
the LR drops). Or, relative to the run's own ``logit_bias`` ε: ``{"kind": "weaning", "steps": 6,
"hold": 11}`` = values linspace(ε, ε/steps, steps) (:func:`weaning_values`; endpoints reconstructed),
expanded by :meth:`TrainConfig.resolved` (to no schedule when ε = 0), so one spec serves every ε of a
grid. Without a schedule every epoch uses ``logit_bias``. The bias only enters the training loss;
evaluation uses the raw logits.

Dynamic logit bias: ``{"kind": "dynamic", "c": 0.25}`` starts at ``logit_bias`` and after every epoch
the engine re-solves ε so that the epoch's mean training p_y with the bias equals c (Eq. 4's target,
measured on the network instead of assumed at initialisation), clamped at ε ≥ 0; kept as is by
:meth:`TrainConfig.resolved`, see ``engine.next_dynamic_bias``.

Validation hold-out: ``val_fraction`` f (0 ≤ f < 1, default 0.1; 0 disables) of the training set,
stratified by clean class and carrying noisy labels, is held out of training and evaluated beside the
test set (``engine`` module docstring).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from numbers import Integral, Real

from .noise import NOISE_KINDS   # the noise module owns the kinds

__all__ = ["TrainConfig", "LR_SCHEDULE_KINDS", "WEANING", "lr_at", "logit_bias_at", "scale_milestones",
           "validate_lr_schedule", "validate_logit_bias_schedule", "weaning_values"]

# canonical kind -> accepted spellings
LR_SCHEDULE_KINDS = {"multistep": ("multistep", "step"), "exponential": ("exponential", "exp"),
                     "constant": ("constant",)}
_KIND_OF = {alias: kind for kind, aliases in LR_SCHEDULE_KINDS.items() for alias in aliases}
_SCHEDULE_KEYS = {"multistep": {"kind", "milestones", "gamma"}, "exponential": {"kind", "gamma"},
                  "constant": {"kind"}}
_BIAS_SCHEDULE_META = {"source", "reconstructed"}   # documentation keys a preset ladder may carry
WEANING = {"kind": "weaning", "steps": 6, "hold": 11}   # App. A.2: 6 values x 11 epochs (values reconstructed)


def _is_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(float(v))


def validate_lr_schedule(s: dict) -> dict:
    """Check an LR schedule dict; returns a copy with the canonical ``kind``."""
    if not isinstance(s, dict) or s.get("kind") not in _KIND_OF:
        raise ValueError(f"lr_schedule={s!r} is invalid: need a dict with kind in "
                         f"{', '.join(_KIND_OF)}")
    kind = _KIND_OF[s["kind"]]
    extra = set(s) - _SCHEDULE_KEYS[kind]
    missing = _SCHEDULE_KEYS[kind] - set(s)
    if extra or missing:
        raise ValueError(f"lr_schedule {kind} takes keys {', '.join(sorted(_SCHEDULE_KEYS[kind]))}; "
                         f"got {', '.join(sorted(s))}")
    if "gamma" in s and not (_is_real(s["gamma"]) and s["gamma"] > 0):
        raise ValueError(f"lr_schedule gamma={s['gamma']!r} must be a finite number > 0")
    if kind == "multistep":
        ms = s["milestones"]
        if not isinstance(ms, (list, tuple)) or not all(_is_int(m) and m >= 0 for m in ms) \
                or list(ms) != sorted(ms):
            raise ValueError(f"lr_schedule milestones={ms!r} must be a sorted list of epochs >= 0")
    out = copy.deepcopy(s)
    out["kind"] = kind
    if kind == "multistep":
        out["milestones"] = [int(m) for m in s["milestones"]]
    return out


def weaning_values(eps: float, steps: int = 6, low: float | None = None) -> list[float]:
    """The weaning ladder's values: ``steps`` evenly spaced from ``eps`` down to ``low`` (default
    eps / steps), i.e. linspace(eps, eps/6, 6) for the paper's 6 steps (endpoints reconstructed)."""
    low = eps / steps if low is None else float(low)
    if steps == 1:
        return [float(eps)]
    return [float(eps + (low - eps) * i / (steps - 1)) for i in range(steps)]


def validate_logit_bias_schedule(s: dict) -> dict:
    """Check ``{"values": [...], "hold": n}`` (plus optional "source"/"reconstructed"), the relative
    ``{"kind": "weaning", "steps": n, "hold": n}`` or ``{"kind": "dynamic", "c": c}`` (0 < c < 1);
    returns a copy."""
    if isinstance(s, dict) and s.get("kind") == "dynamic":
        if set(s) != {"kind", "c"}:
            raise ValueError(f"logit_bias_schedule={s!r} is invalid: the dynamic form is {{'kind': 'dynamic', 'c': c}}")
        if not (_is_real(s["c"]) and 0.0 < s["c"] < 1.0):
            raise ValueError(f"logit_bias_schedule c={s['c']!r} must be a number in (0, 1) (target mean p_y)")
        return {"kind": "dynamic", "c": float(s["c"])}
    if isinstance(s, dict) and s.get("kind") is not None:
        if s.get("kind") != "weaning" or set(s) != {"kind", "steps", "hold"}:
            raise ValueError(f"logit_bias_schedule={s!r} is invalid: the relative form is "
                             f"{{'kind': 'weaning', 'steps': n, 'hold': n}} (or {{'kind': 'dynamic', 'c': c}})")
        for key in ("steps", "hold"):
            if not (_is_int(s[key]) and s[key] >= 1):
                raise ValueError(f"logit_bias_schedule {key}={s[key]!r} must be an integer >= 1")
        return {"kind": "weaning", "steps": int(s["steps"]), "hold": int(s["hold"])}
    if not isinstance(s, dict) or not {"values", "hold"} <= set(s) or set(s) - {"values", "hold"} - _BIAS_SCHEDULE_META:
        raise ValueError(f"logit_bias_schedule={s!r} is invalid: need a dict with keys values, hold")
    vals = s["values"]
    if not isinstance(vals, (list, tuple)) or not vals or not all(_is_real(v) for v in vals):
        raise ValueError(f"logit_bias_schedule values={vals!r} must be a non-empty list of finite numbers")
    if not (_is_int(s["hold"]) and s["hold"] >= 1):
        raise ValueError(f"logit_bias_schedule hold={s['hold']!r} must be an integer >= 1 (epochs per value)")
    return {**copy.deepcopy(s), "values": [float(v) for v in vals], "hold": int(s["hold"])}


def lr_at(base_lr: float, schedule: dict | None, epoch: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based) under ``schedule`` (None = constant)."""
    if schedule is None:
        return float(base_lr)
    kind = _KIND_OF[schedule["kind"]]
    if kind == "multistep":
        return float(base_lr) * schedule["gamma"] ** sum(1 for m in schedule["milestones"] if m <= epoch)
    if kind == "exponential":
        return float(base_lr) * schedule["gamma"] ** epoch
    return float(base_lr)


def logit_bias_at(logit_bias: float, schedule: dict | None, epoch: int) -> tuple[float, int | None]:
    """(ε of epoch ``epoch`` (0-based), index into the schedule's values or None without a schedule).
    A dynamic schedule depends on training, not on the epoch: ValueError (the engine computes it)."""
    if schedule is not None and schedule.get("kind") == "dynamic":
        raise ValueError("logit_bias_schedule kind 'dynamic' has no fixed value per epoch; the engine solves it "
                         "from the training margins (engine.next_dynamic_bias)")
    if schedule is None:
        return float(logit_bias), None
    i = (epoch // schedule["hold"]) % len(schedule["values"])
    return float(schedule["values"][i]), i


def scale_milestones(schedule: dict, epochs: int, paper_epochs: int) -> dict:
    """Multistep milestones × epochs / paper_epochs (rounded, ≥ 1) when epochs < paper_epochs."""
    s = copy.deepcopy(schedule)
    if _KIND_OF.get(s.get("kind")) == "multistep" and 0 < epochs < paper_epochs:
        s["milestones"] = [max(1, round(m * epochs / paper_epochs)) for m in s["milestones"]]
    return s


@dataclass
class TrainConfig:
    """One training run. ``None`` fields are filled by :meth:`resolved` from the dataset's preset."""

    dataset: str = "synthetic"
    data_root: str | None = None
    download: bool = False
    dataset_args: dict = field(default_factory=dict)     # e.g. {"classes": 1000}; "seed" here fixes the data seed
    noise: str = "none"                                   # none | symmetric | asymmetric
    noise_rate: float = 0.0
    noise_variant: str = "paper"                          # symmetric: paper | flip; asymmetric: paper | blocks
    model: str | None = None
    loss: str = "ce"
    loss_params: dict = field(default_factory=dict)
    logit_bias: float = 0.0
    logit_bias_schedule: dict | None = None               # {"values": [...], "hold": 11} | weaning | dynamic
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    lr_schedule: dict | None = None
    epochs: int = 10
    batch_size: int | None = None                         # global batch (split over DDP ranks)
    seed: int = 0
    device: str = "auto"                                  # auto | cpu | cuda | cuda:N
    grad_clip: float | None = None                        # max gradient norm (off by default, as in the paper)
    eval_every: int = 1                                   # test every n epochs and after the last one
    loader_workers: int = 0                               # DataLoader worker processes (file-based datasets)
    val_fraction: float = 0.1                             # noisy-labelled hold-out of the training set (0: none)
    augment: bool | None = None                           # train-batch augmentation (None: the setup's; MLP1024: off)

    # ----------------------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        return copy.deepcopy(dataclasses.asdict(self))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a dict (missing keys take defaults); unknown keys are a ValueError. Validated."""
        if isinstance(d, cls):
            return copy.deepcopy(d)
        if not isinstance(d, dict):
            raise ValueError(f"TrainConfig.from_dict needs a dict, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s) {', '.join(unknown)}; valid: {', '.join(cls.field_names())}")
        cfg = cls(**copy.deepcopy(d))
        cfg.validate()
        return cfg

    # ----------------------------------------------------------------------------------- validation
    def validate(self) -> "TrainConfig":
        """Raise ValueError (one line) on the first invalid field; ``None`` preset fields are allowed."""

        def bad(name, allowed):
            raise ValueError(f"{name}={getattr(self, name)!r} is invalid: {allowed}")

        if not isinstance(self.dataset, str) or not self.dataset:
            bad("dataset", "need a dataset name")
        if self.data_root is not None and not isinstance(self.data_root, str):
            bad("data_root", "need a path string or None")
        if not isinstance(self.download, bool):
            bad("download", "need true or false")
        for name in ("dataset_args", "loss_params"):
            if not isinstance(getattr(self, name), dict):
                bad(name, "need a dict")
        if self.noise not in NOISE_KINDS:
            bad("noise", f"allowed: {', '.join(NOISE_KINDS)}")
        if not (_is_real(self.noise_rate) and 0.0 <= self.noise_rate <= 1.0):
            bad("noise_rate", "need a number in [0, 1]")
        if self.noise == "none" and self.noise_rate != 0:
            bad("noise_rate", "must be 0 with noise 'none' (choose noise symmetric or asymmetric)")
        if not isinstance(self.noise_variant, str):
            bad("noise_variant", "need a string (paper, flip, blocks)")
        if self.model is not None:
            from .models import MODELS

            if self.model not in MODELS:
                bad("model", f"allowed: {', '.join(sorted(MODELS))} or None (dataset preset)")
        from .losses import LOSSES

        if self.loss not in LOSSES:
            bad("loss", f"allowed: {', '.join(sorted(LOSSES))}")
        if not _is_real(self.logit_bias):
            bad("logit_bias", "need a finite number")
        if self.logit_bias_schedule is not None:
            validate_logit_bias_schedule(self.logit_bias_schedule)
        if self.lr is not None and not (_is_real(self.lr) and self.lr > 0):
            bad("lr", "need a finite number > 0 or None (dataset preset)")
        if not (_is_real(self.momentum) and 0.0 <= self.momentum < 1.0):
            bad("momentum", "need a number in [0, 1)")
        if self.weight_decay is not None and not (_is_real(self.weight_decay) and self.weight_decay >= 0):
            bad("weight_decay", "need a number >= 0 or None (dataset preset)")
        if self.lr_schedule is not None:
            validate_lr_schedule(self.lr_schedule)
        if not (_is_int(self.epochs) and self.epochs >= 1):
            bad("epochs", "need an integer >= 1")
        if self.batch_size is not None and not (_is_int(self.batch_size) and self.batch_size >= 1):
            bad("batch_size", "need an integer >= 1 or None (dataset preset)")
        if not (_is_int(self.seed) and self.seed >= 0):
            bad("seed", "need an integer >= 0")
        dev = self.device
        if not isinstance(dev, str) or not (dev in ("auto", "cpu", "cuda")
                                            or (dev.startswith("cuda:") and dev[5:].isdigit())):
            bad("device", "allowed: auto, cpu, cuda, cuda:N")
        if self.grad_clip is not None and not (_is_real(self.grad_clip) and self.grad_clip > 0):
            bad("grad_clip", "need a number > 0 or None (no clipping)")
        if not (_is_int(self.eval_every) and self.eval_every >= 1):
            bad("eval_every", "need an integer >= 1")
        if not (_is_int(self.loader_workers) and self.loader_workers >= 0):
            bad("loader_workers", "need an integer >= 0")
        if not (_is_real(self.val_fraction) and 0.0 <= self.val_fraction < 1.0):
            bad("val_fraction", "need a number in [0, 1) (0: no validation hold-out)")
        if self.augment is not None and not isinstance(self.augment, bool):
            bad("augment", "need true, false or null (null: the training setup's)")
        return self

    # ------------------------------------------------------------------------------------ presets
    def resolved(self) -> "TrainConfig":
        """A validated copy with model, lr, weight_decay, lr_schedule, batch_size and augment filled from
        ``presets.training_setup`` for the dataset's preset column (milestones scaled for shortened runs,
        see module docstring). The column is the one every preset decision uses (``presets.resolve_dataset``:
        imagefolder -> webvision, synthetic-easy -> synthetic); another spelling of a dataset's name (fmnist)
        is replaced by the registered name (``datasets.canonical_name``)."""
        from . import presets
        from .datasets import canonical_name
        from .models import default_model

        self.validate()
        cfg = copy.deepcopy(self)
        cfg.dataset = canonical_name(cfg.dataset)
        model = cfg.model or default_model(cfg.dataset)
        setup = presets.training_setup(cfg.dataset, model=model)
        cfg.model = model
        if cfg.lr is None:
            cfg.lr = float(setup["optimizer"]["lr"])
        if cfg.weight_decay is None:
            cfg.weight_decay = float(setup["optimizer"]["weight_decay"])
        if cfg.batch_size is None:
            cfg.batch_size = int(setup["batch_size"])
        if cfg.augment is None:
            cfg.augment = bool(setup.get("augment", True))
        if cfg.lr_schedule is None:
            sched = validate_lr_schedule(setup["lr_schedule"]) if setup.get("lr_schedule") else {"kind": "constant"}
            cfg.lr_schedule = scale_milestones(sched, cfg.epochs, int(setup["epochs"]))
        else:
            cfg.lr_schedule = validate_lr_schedule(cfg.lr_schedule)
        if cfg.logit_bias_schedule is not None:
            sched = validate_logit_bias_schedule(cfg.logit_bias_schedule)
            if sched.get("kind") == "weaning":   # relative ladder -> this run's values
                sched = None if cfg.logit_bias == 0 else {
                    "values": weaning_values(float(cfg.logit_bias), sched["steps"]), "hold": sched["hold"],
                    "source": "weaning from logit_bias"}
            cfg.logit_bias_schedule = sched
        return cfg.validate()
