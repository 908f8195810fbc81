"""The unit every sweep is made of: a ``TrialSpec`` = the hyperparameters Tune sees + the fixed settings.

Tune's ``param_space`` (grid) or searcher (Optuna) hands each trial a *flat* dict of hyperparameters::

    {"loss": "gce", "lr": 0.1, "seed": 0, "logit_bias": 0.0, "q": 0.7}

(``HP_KEYS`` plus the loss's own parameters, e.g. ``q``, ``a``, ``alpha``, ``beta``, ``gamma``, ``A``,
``t1``, ``t2``), all decided by ``services.resolve``. Everything else a trial needs — dataset, noise, model,
epochs, batch size, bias schedule, validation split (``fixed``: the other TrainConfig fields, never one the
hyperparameters set, ``HP_FIELDS``) and Ray resources — is the same for the whole experiment and reaches the
trial through ``tune.with_parameters`` as a ``Fixed``. The trial trains ``TrainConfig(**fixed.train, **config)``
(the loss's parameters grouped as ``loss_params``: :meth:`TrialSpec.train_config`), as Ray's Tune examples
build a model from ``config``. Grid, sampled (optuna, random) and analytic trials all have this one shape.

A learning rate's path from ``--lrs`` to the optimizer, hop by hop (6):

1. ``sweeps/run.py --lrs 0.03,0.1`` → ``SweepRequest.lrs`` (typed by ``rules.coerce``; the grid file's lrs,
   checked by the same rule, where no ``--lrs`` is given: ``resolve.sweep_lrs``);
2. ``resolve.resolve(req, loss, fixed.train)`` → ``Setting.lrs`` (``resolve.learning_rates``: ``--lr``, the
   searched lrs or the preset);
3. ``Setting.hparams`` / ``resolve.grid_hparams`` → each trial's flat dict ``{"lr": 0.1, ...}``, which
   ``services.search`` hands Tune as the trial's config;
4. Tune → ``trainer.run_trial(config, fixed)``: ``config["lr"]``;
5. ``TrainConfig(**fixed.train, **config)`` → ``cfg.lr``;
6. ``engine.train(cfg)`` → ``torch.optim.SGD(lr=cfg.lr)`` (each epoch's rate ``lr_at(cfg.lr, cfg.lr_schedule)``).

A trial's identity is ``TrialSpec.key``: a hash of everything that decides what it computes — its
hyperparameters and the fixed TrainConfig fields (``Fixed.train``), which together are exactly the config
``engine.train`` runs (``train_config``) — stable across runs and processes; resume
(``services.salvage``) matches checkpoints to trials by it. A trial that trains differently (a pilot's
shorter ``epochs``) has its own ``Fixed.train``, so its own key. What does not change the computation is
record, not identity: the role ("main" or "pilot"), the resources and checkpoint policy, the experiment
name, and the per-trial ``extras`` (where to resume from, a test's fault injection). Experiments stored
before ``Fixed.train`` lost the hyperparameters' fields keep their keys (:func:`keyed_train`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field

HP_KEYS = ("loss", "lr", "seed", "logit_bias")   # hyperparameters every trial has; others are loss parameters
HP_FIELDS = HP_KEYS + ("loss_params",)            # the TrainConfig fields a trial's hyperparameters set


@dataclass(frozen=True)
class Resources:
    """Ray resources of one training run, how many run at once, and how often a run checkpoints.

    Checkpoint policy (:meth:`checkpoint_due`): a run saves its state after its last epoch, after every
    ``checkpoint_every``-th epoch (0: no epoch rule), after each epoch in ``checkpoint_epochs`` (the
    epochs where ASHA may stop a trial), and after any epoch that ends ``checkpoint_seconds`` or
    more after the run's previous checkpoint (or its start). A killed or failed run therefore repeats at
    most the epochs of the last ``checkpoint_seconds`` (one epoch, if epochs are longer); a short trial
    writes one checkpoint, not one per epoch. None of this changes what a run computes (not in the key).
    """

    num_workers: int = 1
    use_gpu: bool = False
    gpus_per_worker: float = 1.0
    cpus_per_worker: float = 1.0
    max_failures: int = 2
    max_concurrent_trials: int | None = None
    checkpoint_every: int = 0
    checkpoint_seconds: float = 60.0
    checkpoint_epochs: tuple = ()
    keep_checkpoints: str = "last"       # what an ended trial keeps (services.checkpoint.prune)

    def checkpoint_due(self, epoch: int, last_epoch: int, seconds_since: float) -> bool:
        """Whether a run saves its state after ``epoch`` (see the class docstring)."""
        return (epoch >= last_epoch
                or (self.checkpoint_every > 0 and epoch % self.checkpoint_every == 0)
                or epoch in tuple(self.checkpoint_epochs)
                or seconds_since >= self.checkpoint_seconds)

    @property
    def gpus(self) -> float:
        """GPUs one trial holds."""
        return self.num_workers * self.gpus_per_worker if self.use_gpu else 0.0

    def trial_resources(self) -> dict:
        """Resources Tune reserves per trial. Multi-worker trials are drivers: the Ray Train workers reserve
        their own CPUs/GPUs, so the driver holds no CPU (any fraction of one would leave the workers short of
        a whole CPU on a cluster that has exactly theirs). Tune refuses a request of nothing at all, so the
        driver holds one byte of Ray's ``memory`` resource instead."""
        if self.num_workers > 1:
            return {"cpu": 0, "memory": 1}
        res = {"cpu": self.cpus_per_worker}
        if self.use_gpu:
            res["gpu"] = self.gpus_per_worker
        return res

    def concurrency(self, capacity: dict) -> int:
        """``max_concurrent_trials`` matching the cluster: as many trials as CPUs (and GPUs) allow."""
        if self.max_concurrent_trials:
            return self.max_concurrent_trials
        limits = [capacity["CPU"] / (self.num_workers * self.cpus_per_worker)]
        if self.use_gpu and self.gpus_per_worker > 0:
            if capacity["GPU"] == 0:
                print("warning: no GPU in the cluster yet (autoscaling?): running one trial at a time; "
                      "set --max-concurrent-trials to the GPUs the cluster can grow to")
            limits.append(capacity["GPU"] / (self.num_workers * self.gpus_per_worker))
        return max(1, int(math.floor(min(limits) + 1e-9)))


@dataclass(frozen=True)
class Fixed:
    """What every trial of one sweep shares: TrainConfig fields (``train``, none of ``HP_FIELDS``), resources
    and the trials' role."""

    train: dict
    resources: Resources = Resources()
    experiment: str = ""
    # per-trial settings that do not change what a trial computes, by TrialSpec.key:
    # {"resume_from": path, "fault_injection": {...}} (EXTRA_KEYS)
    extras: dict = field(default_factory=dict)
    role: str = "main"                  # "pilot": charged to cost, never a selection candidate


EXTRA_KEYS = ("fault_injection", "resume_from")
# spec.json's format: a pilot's epochs are part of Fixed.train (and so of the key). Its ``train`` has since lost
# the hyperparameters' fields, with the same keys (keyed_train), so the format stays.
SPEC_FORMAT = 2


def split_hparams(hp: dict) -> tuple[dict, dict]:
    """(the HP_KEYS part, the loss parameters) of a flat hyperparameter dict."""
    return {k: hp[k] for k in HP_KEYS if k in hp}, {k: v for k, v in hp.items() if k not in HP_KEYS}


def _plain(v):
    """JSON-stable scalars: ints stay ints, floats are floats (numpy values from searchers included)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, bool) or isinstance(v, (int, str)) or v is None:
        return v
    return float(v)


@dataclass(frozen=True)
class TrialSpec:
    """One training run: flat hyperparameters over fixed settings."""

    hparams: dict
    fixed: Fixed
    role: str = "main"                  # "pilot": charged to cost, never a selection candidate
    fault_injection: dict | None = None  # {"epoch": k, "marker": path}: fail once after epoch k (tests)
    resume_from: str | None = None       # a checkpoint to start from (services/salvage.py)

    @classmethod
    def from_hparams(cls, fixed: Fixed, hp: dict) -> "TrialSpec":
        clash = sorted(set(HP_FIELDS) & set(fixed.train))
        if clash:   # one source for what a trial trains with: its config (services.resolve)
            raise ValueError(f"Fixed.train holds the hyperparameter field(s) {', '.join(clash)}: they belong in the "
                             "trial's config")
        hp = {k: _plain(v) for k, v in hp.items()}
        hp.setdefault("seed", 0)
        hp.setdefault("logit_bias", 0.0)
        hp["seed"], hp["logit_bias"], hp["lr"] = int(hp["seed"]), float(hp["logit_bias"]), float(hp["lr"])
        spec = cls(hparams=hp, fixed=fixed, role=fixed.role)
        extra = fixed.extras.get(spec.key, {})
        unknown = sorted(set(extra) - set(EXTRA_KEYS))
        if unknown:   # anything else would change the computation: it belongs in hparams or Fixed.train
            raise ValueError(f"per-trial extras {unknown} are not allowed; allowed: {', '.join(EXTRA_KEYS)}")
        return dataclasses.replace(spec, **extra)

    # ---------------------------------------------------------------------------- derived views
    @property
    def loss(self) -> str:
        return self.hparams["loss"]

    @property
    def loss_params(self) -> dict:
        return split_hparams(self.hparams)[1]

    @property
    def resources(self) -> Resources:
        return self.fixed.resources

    @property
    def num_workers(self) -> int:
        return self.fixed.resources.num_workers

    def train_config(self) -> dict:
        """The TrainConfig dict ``robustloss_core.engine.train`` runs: ``{**fixed.train, **hparams}``, the loss's
        own parameters grouped as ``loss_params`` (a spec stored before held base values of the hyperparameters'
        fields in ``train``: the hyperparameters win)."""
        main, params = split_hparams(self.hparams)
        return {**self.fixed.train, **main, "loss_params": params}

    @property
    def key(self) -> str:
        """Stable identity: a hash of the two inputs of ``train_config`` (hyperparameters + fixed TrainConfig),
        so of everything the trial computes; stored keys depend on this formula staying as it is."""
        return spec_key(self.hparams, self.fixed.train)

    @property
    def run_name(self) -> str:
        """A multi-worker trial's Ray Train run name and folder (``train/<run_name>``): ``dirname()_key``."""
        return f"{self.dirname()}_{self.key}"

    def dirname(self, varied: list[str] | None = None) -> str:
        """Readable folder stem: loss, each of the loss's own parameters (an analytic trial's computed q too:
        ``gce_q0.261_lr0.1_s0``), ε (where not 0, or where it is among the ``varied``), lr, seed."""
        _, params = split_hparams(self.hparams)
        parts = [self.loss] + [f"{k}{_short(params[k])}" for k in sorted(params)]
        if self.hparams.get("logit_bias") or (varied and "logit_bias" in varied):
            parts.append(f"eps{_short(self.hparams['logit_bias'])}")
        parts += [f"lr{_short(self.hparams['lr'])}", f"s{self.hparams['seed']}"]
        return "_".join(parts)

    # ---------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        """JSON form (``spec.json`` in every checkpoint)."""
        return {"hparams": self.hparams, "train": self.fixed.train,
                "resources": dataclasses.asdict(self.fixed.resources), "experiment": self.fixed.experiment,
                "role": self.role, "key": self.key, "format": SPEC_FORMAT}

    @classmethod
    def from_dict(cls, d: dict) -> "TrialSpec":
        role = d.get("role", "main")
        fixed = Fixed(train=d["train"], resources=Resources(**d.get("resources", {})), experiment=d.get("experiment", ""),
                      role=role)
        return cls(hparams=dict(d["hparams"]), fixed=fixed, role=role)


def spec_key(hparams: dict, train: dict) -> str:
    """The 12-hex-digit identity of a trial training ``train`` (fixed TrainConfig fields) with ``hparams``."""
    text = json.dumps({"hp": hparams, "train": keyed_train(train)}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


# What Fixed.train held for the hyperparameters' fields before it lost them (and the trial's own values
# replaced): TrainConfig's defaults of then, and the preset lr (:func:`_stored_lr`).
STORED_BASE = {"loss": "ce", "loss_params": {}, "logit_bias": 0.0, "seed": 0}


def keyed_train(train: dict) -> dict:
    """``train`` as the key hashes it: the key's formula is the one experiments were stored with, when
    ``Fixed.train`` still held every TrainConfig field, the hyperparameters' at base values (``STORED_BASE``,
    the preset lr). Those values are put back here, for the hash only — nothing trains with them — so a stored
    experiment's keys (in its checkpoints, summary and stopped list) still name its trials on ``--resume``.
    A spec stored then (its ``train`` has the fields) is hashed as it is."""
    if all(k in train for k in HP_FIELDS):
        return train
    out = {**STORED_BASE, **train}
    out.setdefault("lr", _stored_lr(train.get("dataset", "synthetic"), train.get("model")))
    return out


@functools.lru_cache(maxsize=64)
def _stored_lr(dataset, model) -> float | None:
    """The preset lr ``Fixed.train`` held (``resolve.preset_lr``); None where no preset applies (a config that
    cannot train: still a distinct key)."""
    from services.resolve import preset_lr

    try:
        return preset_lr({"dataset": dataset, "model": model})
    except (ValueError, KeyError, TypeError):
        return None


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def varied_keys(specs: list[TrialSpec]) -> list[str]:
    """Hyperparameters that take more than one value over ``specs`` (what TensorBoard HParams and the
    folder names show)."""
    values: dict = {}
    for s in specs:
        for k, v in s.hparams.items():
            values.setdefault(k, set()).add(json.dumps(v))
    return sorted(k for k, vs in values.items() if len(vs) > 1)
