"""Train + evaluate one configuration; single process or ``torch.distributed`` (DDP), CPU or GPU.

``train(config, on_epoch=None, resume_state=None) -> dict`` runs ``config.epochs`` epochs of SGD
(momentum, weight decay, per-epoch LR schedule) on the noisy training labels and returns the last
epoch's metrics plus ``"history"`` (all epochs). After every epoch ``on_epoch(metrics, get_state)`` is
called; ``get_state()`` returns a full checkpoint that ``train(..., resume_state=state)`` continues from.

Per-epoch metrics (epoch counts from 1; accuracies in percent, ``memorized`` and p_y fractions):
  train_loss       mean training loss (with the logit bias ε, as optimised) over the epoch's batches
  train_acc_noisy  accuracy of the training-batch predictions against the noisy labels they were trained on
  train_acc_clean  the same predictions against the clean labels
  memorized        fraction of the noisy-labelled examples seen this epoch predicted as their noisy label
  mean_py_biased   mean over the epoch's training examples of p_y with the bias, softmax(z + ε·e_y)_y at
                   the noisy target (= σ(m + ε), margin m = z_y − logsumexp_{j≠y} z_j)
  test_top1/top5   test accuracy (top-min(5, K)); None in epochs skipped by ``eval_every``
  val_top1         top-1 on the validation hold-out against its noisy labels (what a practitioner sees)
  val_top1_clean   the same predictions against the clean labels (analysis only: unknown in practice)
  best_epoch       early stopping so far: the evaluated epoch with the highest val_top1 (earliest on ties),
  val_top1_best    its val_top1 and
  test_top1_at_best  its test_top1. The five val fields are None with ``val_fraction`` 0, the first two
                   also in epochs skipped by ``eval_every`` (the running best is carried through them)
  epoch_time       wall seconds of the epoch (train + eval; max over ranks)
  samples_per_sec  training examples (all ranks) / training seconds
  lr, logit_bias   the values used this epoch; noise_rate_actual  realised fraction of flipped labels
                   (over the whole training set, hold-out included)
The training accuracies, ``memorized`` and ``mean_py_biased`` come from the training forward pass itself
(augmented inputs, the weights changing during the epoch; raw logits without ε except for
mean_py_biased), not from a separate pass: they cost nothing and are the usual "train accuracy" of the
literature. Evaluation uses the raw logits: ε only enters the training loss.

Validation hold-out (``val_fraction`` f, default 0.1): after the label noise is applied to the whole
training set, ``datasets.holdout_split`` takes round(f·n_c) examples (at least 1, at most n_c − 1) of
every class c out of training, so they carry noisy labels at the configured rate. It is stratified by
the *clean* class: every class is represented and the choice is independent of which labels the noise
flipped, so the hold-out's noise is an unbiased sample of the training set's (stratifying by the noisy
label would tie the split to the noise draw). The split has its own random stream (seed, stream 3),
independent of the noise, the batch order and the augmentation; it is evaluated with the test
transform whenever the test set is, sharded over ranks like it.

Dynamic logit bias (``logit_bias_schedule={"kind": "dynamic", "c": c}``): the first epoch uses
``logit_bias``; every epoch records the margins m_i of its training examples, and the next epoch's ε
solves mean_i σ(m_i + ε) = c (:func:`next_dynamic_bias`), clamped at ε ≥ 0, so the bias fades once the
network alone reaches mean p_y ≥ c. Checkpoints store the next ε.

Reproducibility: ``seed`` fixes the data (synthetic data seed, unless ``dataset_args["seed"]`` is
given), the label noise (``noise.apply_label_noise(seed=seed)``), the initialisation
(``torch.manual_seed(seed)`` before ``models.build_model``) and, per epoch, the batch order and
augmentation: the epoch's permutation comes from a generator seeded by (seed, epoch), augmentation by
(seed, epoch, rank), so a resumed run repeats an uninterrupted one exactly (bit for bit on CPU; cuDNN
autotuning makes GPU runs close, not identical); the running best is rebuilt from the history.

Data paths:
  * in-memory datasets (``bundle.tensors``: synthetic, cifar10/100, fashionmnist): the whole training
    and test set live on the training device (uint8 images: 150 MB for CIFAR); every step gathers a
    batch by index, augments it there (``datasets.augment_batch`` with a device generator) and
    normalises it (``datasets.normalize_batch``). No DataLoader, no host→device copies per step.
  * file datasets (webvision, imagefolder): a ``DataLoader`` (``loader_workers`` processes, pinned memory on CUDA)
    over the rank's slice of the epoch permutation; the dataset's own transforms augment.
On CUDA the forward pass runs under bfloat16 autocast (the loss is computed in float32), conv nets use
channels_last, and cuDNN autotuning is on.

Distributed: if ``torch.distributed`` is initialised (Ray Train, torchrun), every rank trains on a
disjoint slice of the same epoch permutation (n // world examples each, so equal step counts),
``batch_size`` is the global batch (batch_size // world per rank), the model is wrapped in DDP, BN
buffers are broadcast from rank 0 before evaluation, the test and validation sets are sharded, and
metric sums are all-reduced, so every rank returns the same metrics. This module never imports ray.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from . import datasets, losses, models, noise
from .config import TrainConfig, logit_bias_at, lr_at

__all__ = ["train", "train_one_epoch", "evaluate", "state_dict", "restore_state", "NonFiniteLossError",
           "save_checkpoint", "load_checkpoint", "METRIC_KEYS", "STATE_FORMAT", "epoch_seed", "resolve_device", "holdout_indices", "next_dynamic_bias", "target_margins"]

METRIC_KEYS = ("epoch", "train_loss", "train_acc_noisy", "train_acc_clean", "memorized", "mean_py_biased",
               "test_top1", "test_top5", "val_top1", "val_top1_clean", "best_epoch", "val_top1_best",
               "test_top1_at_best", "epoch_time", "samples_per_sec", "lr", "logit_bias", "noise_rate_actual")
STATE_FORMAT = "robustloss-engine/1"
# config keys that must agree between a checkpoint and the run resuming it
_IDENTITY_KEYS = ("dataset", "dataset_args", "noise", "noise_rate", "noise_variant", "model", "loss", "loss_params",
                  "seed", "batch_size", "momentum", "val_fraction")
_IDENTITY_MISSING = {"val_fraction": 0.0}   # checkpoints from before the key trained on the whole set
_SHUFFLE, _AUGMENT, _HOLDOUT = 1, 2, 3   # random streams derived from the seed


class NonFiniteLossError(RuntimeError):
    """The mean training loss of an epoch was NaN or infinite (diverged run)."""


def epoch_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """A 63-bit seed for (run seed, epoch, stream, rank), independent across its arguments."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(stream), int(rank)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def holdout_indices(clean_labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of a run with this ``seed`` and ``val_fraction``: the
    stratified ``datasets.holdout_split`` of the clean labels on the run's hold-out stream."""
    return datasets.holdout_split(clean_labels, fraction, epoch_seed(seed, 0, _HOLDOUT))


def target_margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """m_i = z_{i,y_i} − logsumexp_{j≠y_i} z_ij, so that p_y with bias ε is σ(m_i + ε)."""
    z = logits.float()
    others = z.scatter(1, y[:, None], float("-inf"))
    return z.gather(1, y[:, None]).squeeze(1) - others.logsumexp(1)


def next_dynamic_bias(margins: torch.Tensor, c: float, eps: float = 0.0,
                      reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t, tol: float = 1e-9) -> float:
    """The ε ≥ 0 with mean_i σ(m_i + ε) = c over ``margins`` (Eq. 4's condition E[p_y] = c on measured
    margins); 0 when mean_i σ(m_i) ≥ c already. Safeguarded Newton from ``eps`` on a bracket; ``reduce``
    sums the partial sums over ranks (all-reduce), so every rank gets the same ε."""
    m = margins.detach().double().flatten()

    def mean_and_slope(e: float) -> tuple[float, float]:
        s = torch.sigmoid(m + e)
        tot, slope, n = reduce(torch.stack([s.sum(), (s * (1 - s)).sum(), m.new_tensor(float(m.numel()))])).tolist()
        return (tot / n, slope / n) if n else (c, 1.0)

    if mean_and_slope(0.0)[0] >= c:
        return 0.0
    lo, hi = 0.0, max(1.0, float(eps))
    while mean_and_slope(hi)[0] < c:      # mean σ(m + ε) increases to 1: doubling brackets the root
        lo, hi = hi, 2.0 * hi
    x = min(max(float(eps), lo), hi)
    for _ in range(100):
        f, slope = mean_and_slope(x)
        if abs(f - c) <= tol or hi - lo <= tol:
            break
        lo, hi = (x, hi) if f < c else (lo, x)
        x_new = x - (f - c) / slope if slope > 0 else lo
        x = x_new if lo < x_new < hi else 0.5 * (lo + hi)
    return float(x)


# ---------------------------------------------------------------------------------- device / dist
class _Dist:
    def __init__(self):
        self.enabled = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.enabled else 0
        self.world = dist.get_world_size() if self.enabled else 1
        self.backend = dist.get_backend() if self.enabled else None

    def all_reduce(self, t: torch.Tensor, op=None) -> torch.Tensor:
        if not self.enabled:
            return t
        op = dist.ReduceOp.SUM if op is None else op
        if self.backend == "nccl" or t.device.type == "cpu":
            dist.all_reduce(t, op=op)
            return t
        cpu = t.cpu()
        dist.all_reduce(cpu, op=op)
        return cpu.to(t.device)

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (BN running statistics) to every rank."""
        if not self.enabled:
            return
        for b in module.buffers():
            if self.backend == "nccl" or b.device.type == "cpu":
                dist.broadcast(b, 0)
            else:
                cpu = b.cpu()
                dist.broadcast(cpu, 0)
                b.copy_(cpu)

    def barrier(self):
        if self.enabled:
            dist.barrier()


def resolve_device(spec: str = "auto") -> torch.device:
    """"auto" → cuda if available (the rank's GPU under torch.distributed), else cpu."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available; use device cpu or auto")
        if spec == "cuda":
            idx = torch.cuda.current_device()
            local = os.environ.get("LOCAL_RANK")
            if dist.is_available() and dist.is_initialized() and local is not None and idx == 0 \
                    and torch.cuda.device_count() > 1:
                idx = int(local) % torch.cuda.device_count()
            spec = f"cuda:{idx}"
        dev = torch.device(spec)
        torch.cuda.set_device(dev)
        return dev
    return torch.device(spec)


# ------------------------------------------------------------------------------------------ data
class _TensorFeeder:
    """In-memory data held on the training device; batches gathered, augmented and normalised there.
    ``train_idx`` / ``val_idx`` split the training set (training part, validation hold-out)."""

    def __init__(self, bundle, noisy: np.ndarray, clean: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
                 device, d: _Dist, batch: int, channels_last: bool, seed: int, augment: bool = True):
        t = bundle.tensors
        self.device, self.d, self.batch, self.seed = device, d, batch, seed
        self.channels_last = channels_last
        noisy, clean = torch.as_tensor(noisy, dtype=torch.long), torch.as_tensor(clean, dtype=torch.long)
        tr, va = torch.as_tensor(train_idx, dtype=torch.long), torch.as_tensor(val_idx, dtype=torch.long)
        whole = va.numel() == 0     # no hold-out: no copy of the training images
        self.train_x = (t.train_x if whole else t.train_x[tr]).to(device)
        self.noisy, self.clean = noisy[tr].to(device), clean[tr].to(device)
        self.val_x = t.train_x[va].to(device)
        self.val_noisy, self.val_clean = noisy[va].to(device), clean[va].to(device)
        self.test_x, self.test_y = t.test_x.to(device), t.test_y.to(device)
        self.mean, self.std = t.mean, t.std
        self.augment = t.augment if augment else None   # None: train batches only normalised
        self.n = self.train_x.shape[0]
        self.n_val = self.val_x.shape[0]
        self.per_rank = self.n // d.world

    def _prep(self, x, gen=None):
        if gen is not None:
            x = datasets.augment_batch(x, self.augment, gen)
        x = datasets.normalize_batch(x, self.mean, self.std)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_batches(self, epoch: int):
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, epoch, _SHUFFLE)))
        mine = perm[self.d.rank * self.per_rank:(self.d.rank + 1) * self.per_rank].to(self.device)
        gen = torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, epoch, _AUGMENT, self.d.rank))
        for i in range(0, self.per_rank, self.batch):
            idx = mine[i:i + self.batch]
            yield self._prep(self.train_x[idx], gen), self.noisy[idx], self.clean[idx]

    def test_batches(self, batch: int):
        idx_all = torch.arange(self.d.rank, self.test_x.shape[0], self.d.world, device=self.device)
        for i in range(0, idx_all.numel(), batch):
            idx = idx_all[i:i + batch]
            yield self._prep(self.test_x[idx]), self.test_y[idx]

    def val_batches(self, batch: int):
        idx_all = torch.arange(self.d.rank, self.n_val, self.d.world, device=self.device)
        for i in range(0, idx_all.numel(), batch):
            idx = idx_all[i:i + batch]
            yield self._prep(self.val_x[idx]), self.val_noisy[idx], self.val_clean[idx]


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i][0], i


class _LoaderFeeder:
    """File-based data: DataLoader over the rank's slice of the seeded epoch permutation; the hold-out
    is read with the evaluation transform (``datasets.holdout_dataset``)."""

    def __init__(self, bundle, noisy: np.ndarray, clean: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
                 device, d: _Dist, batch: int, channels_last: bool, seed: int, augment: bool,
                 num_workers: int):
        self.bundle, self.device, self.d, self.batch, self.seed = bundle, device, d, batch, seed
        self.channels_last, self.num_workers = channels_last, num_workers
        noisy, clean = torch.as_tensor(noisy, dtype=torch.long), torch.as_tensor(clean, dtype=torch.long)
        tr, va = torch.as_tensor(train_idx, dtype=torch.long), torch.as_tensor(val_idx, dtype=torch.long)
        if augment:
            self.train_ds = bundle.train if va.numel() == 0 else torch.utils.data.Subset(bundle.train, tr.tolist())
        else:   # training examples with the evaluation transform (normalisation only)
            self.train_ds = datasets.holdout_dataset(bundle, train_idx)
        self.noisy, self.clean = noisy[tr], clean[tr]
        self.val_ds = datasets.holdout_dataset(bundle, val_idx)
        self.val_noisy, self.val_clean = noisy[va], clean[va]
        self.n = len(self.train_ds)
        self.per_rank = self.n // d.world
        self.pin = device.type == "cuda"

    def _loader(self, ds, indices, batch, gen):
        return torch.utils.data.DataLoader(ds, batch_size=batch, sampler=indices, num_workers=self.num_workers,
                                           pin_memory=self.pin, generator=gen, drop_last=False,
                                           persistent_workers=False)

    def _to(self, x):
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def train_batches(self, epoch: int):
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, epoch, _SHUFFLE)))
        mine = perm[self.d.rank * self.per_rank:(self.d.rank + 1) * self.per_rank].tolist()
        aug_seed = epoch_seed(self.seed, epoch, _AUGMENT, self.d.rank)
        torch.manual_seed(aug_seed)  # transforms in the main process (num_workers=0) draw from the global RNG
        loader = self._loader(_Indexed(self.train_ds), mine, self.batch, torch.Generator().manual_seed(aug_seed))
        for x, idx in loader:
            yield (self._to(x), self.noisy[idx].to(self.device, non_blocking=True),
                   self.clean[idx].to(self.device, non_blocking=True))

    def test_batches(self, batch: int):
        indices = list(range(self.d.rank, len(self.bundle.test), self.d.world))
        for x, y in self._loader(self.bundle.test, indices, batch, torch.Generator().manual_seed(0)):
            yield self._to(x), torch.as_tensor(y).to(self.device, non_blocking=True)

    def val_batches(self, batch: int):
        indices = list(range(self.d.rank, len(self.val_ds), self.d.world))
        for x, idx in self._loader(_Indexed(self.val_ds), indices, batch, torch.Generator().manual_seed(0)):
            yield (self._to(x), self.val_noisy[idx].to(self.device, non_blocking=True),
                   self.val_clean[idx].to(self.device, non_blocking=True))


# ----------------------------------------------------------------------------------- checkpoints
def _to_cpu(obj):
    """Deep copy with every tensor detached, cloned and moved to the CPU."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def save_checkpoint(state: dict, path) -> None:
    """Write ``state`` (from ``get_state()``) with torch.save, atomically (temp file + rename)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU. It holds numpy/python RNG
    states, so it is unpickled in full (``weights_only=False``): load only checkpoints you wrote."""
    state = torch.load(os.fspath(path), map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a robustloss engine checkpoint (expected format {STATE_FORMAT})")
    return state


def _rng_state() -> dict:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": cuda}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _check_resume(state: dict, cfg: TrainConfig) -> None:
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"resume_state is not an engine state (expected format {STATE_FORMAT})")
    old, new = state["config"], cfg.to_dict()
    was = {k: old.get(k, _IDENTITY_MISSING.get(k)) for k in _IDENTITY_KEYS}
    diff = [f"{k}: {was[k]!r} != {new[k]!r}" for k in _IDENTITY_KEYS if was[k] != new[k]]
    if diff:
        raise ValueError(f"resume_state comes from a different run ({'; '.join(diff)})")


# ----------------------------------------------------------------------------------------- train
# The run is split the way torchvision's classification reference script is: ``_setup`` builds data,
# model, loss and optimiser; ``train_one_epoch`` and ``evaluate`` are one epoch's two halves;
# ``state_dict`` / ``restore_state`` are the checkpoint; ``train`` is the short loop over them.
def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class _Run:
    """What one training run holds between epochs (built once by :func:`_setup`)."""

    cfg: TrainConfig
    d: _Dist
    device: torch.device
    K: int
    raw: nn.Module            # the model itself: checkpointed and evaluated
    model: nn.Module          # ``raw``, or its DDP wrapper: trained
    loss_fn: nn.Module
    opt: torch.optim.Optimizer
    feeder: object            # _TensorFeeder or _LoaderFeeder
    noise_rate: float         # the realised fraction of flipped labels
    has_val: bool
    batch: int                # per rank
    autocast: Callable
    sync: Callable

    @property
    def dynamic(self) -> bool:
        sched = self.cfg.logit_bias_schedule
        return sched is not None and sched.get("kind") == "dynamic"


def _setup(cfg: TrainConfig, resume_state: dict | None) -> tuple[_Run, int, list, float]:
    """(the run, its first epoch, its history so far, the first epoch's dynamic ε): data and label noise
    (rank 0 downloads first if asked), hold-out, model, loss, optimiser, restored from ``resume_state``."""
    d = _Dist()
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    _seed_all(cfg.seed)

    dargs = dict(cfg.dataset_args)
    data_seed = dargs.pop("seed", cfg.seed)

    def build():
        # cached per process: the trials a reused Ray worker runs share the data instead of rebuilding it
        return datasets.build_dataset(cfg.dataset, cfg.data_root, download=cfg.download, seed=data_seed, cache=True,
                                      **dargs)

    if d.enabled and cfg.download:
        bundle = build() if d.rank == 0 else None
        d.barrier()
        bundle = bundle or build()
    else:
        bundle = build()
    K = bundle.num_classes
    labels = noise.apply_label_noise(bundle.train_targets, K, kind=cfg.noise, rate=cfg.noise_rate, seed=cfg.seed,
                                     variant=cfg.noise_variant, dataset=cfg.dataset)
    train_idx, val_idx = holdout_indices(labels.clean, cfg.val_fraction, cfg.seed)   # after the noise

    torch.manual_seed(cfg.seed)
    raw = models.build_model(cfg.model, K, bundle.input_shape)
    channels_last = cuda and len(bundle.input_shape) == 3
    raw = raw.to(device, memory_format=torch.channels_last) if channels_last else raw.to(device)
    loss_fn = losses.build_loss(cfg.loss, K, logit_bias=cfg.logit_bias, dataset=datasets.preset_dataset(cfg.dataset),
                                **cfg.loss_params)
    opt = torch.optim.SGD(raw.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    start, history, eps = 0, [], float(cfg.logit_bias)
    if resume_state is not None:   # before DDP wraps the model: every rank starts from the saved weights
        start, history, eps = restore_state(resume_state, raw, opt, cfg)
    model = nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if cuda else None) if d.enabled else raw

    batch = max(1, cfg.batch_size // d.world)
    split = (bundle, labels.noisy, labels.clean, train_idx, val_idx, device, d, batch, channels_last, cfg.seed,
             cfg.augment)
    feeder = _TensorFeeder(*split) if bundle.tensors is not None else _LoaderFeeder(*split, cfg.loader_workers)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    run = _Run(cfg=cfg, d=d, device=device, K=K, raw=raw, model=model, loss_fn=loss_fn, opt=opt, feeder=feeder,
               noise_rate=labels.rate, has_val=val_idx.size > 0, batch=batch, autocast=autocast, sync=sync)
    return run, start, history, eps


def train_one_epoch(run: _Run, epoch: int, lr: float, eps: float) -> dict:
    """One pass over the epoch's training batches at learning rate ``lr`` and logit bias ``eps``.

    Returns the epoch's training metrics summed over ranks (train_loss, train_acc_noisy, train_acc_clean,
    memorized, mean_py_biased; see the module docstring), ``n`` (examples, all ranks), ``train_seconds``
    and, with the dynamic bias, ``margins`` (this rank's target margins). Raises NonFiniteLossError if
    the mean loss is not finite."""
    cfg, d, device = run.cfg, run.d, run.device
    for g in run.opt.param_groups:
        g["lr"] = lr
    run.loss_fn.logit_bias = eps
    t0 = time.perf_counter()
    run.model.train()
    # loss_sum, correct vs noisy, correct vs clean, memorised, noisy seen, Σ p_y(ε) (on device: no sync per step)
    stats = torch.zeros(6, dtype=torch.float64, device=device)
    n_local, margins = 0, []
    for x, y_noisy, y_clean in run.feeder.train_batches(epoch):
        with run.autocast():
            logits = run.model(x)
        loss = run.loss_fn(logits.float(), y_noisy)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(run.raw.parameters(), cfg.grad_clip)
        run.opt.step()
        with torch.no_grad():
            pred = logits.argmax(1)
            hit_noisy, is_noisy = pred == y_noisy, y_noisy != y_clean
            margin = target_margins(logits, y_noisy)
            if run.dynamic:
                margins.append(margin)
            nb = y_noisy.numel()
            n_local += nb
            stats += torch.stack([loss.detach().double() * nb, hit_noisy.sum().double(),
                                  (pred == y_clean).sum().double(), (hit_noisy & is_noisy).sum().double(),
                                  is_noisy.sum().double(), torch.sigmoid(margin.double() + eps).sum()])
    run.sync()
    train_seconds = time.perf_counter() - t0
    stats = torch.cat([stats, torch.tensor([float(n_local)], dtype=torch.float64, device=device)])
    loss_sum, c_noisy, c_clean, mem, n_noisy, py_sum, n = d.all_reduce(stats).tolist()
    train_loss = loss_sum / n
    if not math.isfinite(train_loss):
        raise NonFiniteLossError(f"non-finite training loss ({train_loss}) in epoch {epoch + 1} at lr {lr:g}; "
                                 f"lower the learning rate or set grad_clip")
    return {"train_loss": train_loss, "train_acc_noisy": 100.0 * c_noisy / n, "train_acc_clean": 100.0 * c_clean / n,
            "memorized": mem / n_noisy if n_noisy else 0.0, "mean_py_biased": py_sum / n, "n": n,
            "train_seconds": train_seconds, "margins": margins}


def _accuracies(model: nn.Module, batches, targets: int, K: int, autocast, d: _Dist, device) -> list[float]:
    """Accuracies (percent) over ``batches`` of (x, y_1, …, y_targets), summed over ranks:
    [top-1 vs y_1, top-min(5, K) vs y_1, top-1 vs y_2, …]; NaN for an empty set."""
    model.eval()
    k5 = min(5, K)
    counts = torch.zeros(2 * targets + 1, dtype=torch.float64, device=device)   # top1, top5 hits per target, n
    with torch.no_grad():
        for x, *ys in batches:
            with autocast():
                logits = model(x)
            top = logits.float().topk(k5, dim=1).indices
            hits = []
            for y in ys:
                hit = top == y[:, None]
                hits += [hit[:, 0].sum().double(), hit.any(1).sum().double()]
            counts += torch.stack(hits + [torch.tensor(float(ys[0].numel()), dtype=torch.float64, device=device)])
    *c, n = d.all_reduce(counts).tolist()
    return [100.0 * v / n if n else float("nan") for v in c]


def evaluate(run: _Run, epoch: int) -> dict:
    """Test top-1/top-5 and validation top-1 (noisy and clean labels) of the raw logits after ``epoch``
    (0-based); all None in epochs ``eval_every`` skips (the last epoch is always evaluated)."""
    cfg, d = run.cfg, run.d
    out = {"test_top1": None, "test_top5": None, "val_top1": None, "val_top1_clean": None}
    if (epoch + 1) % cfg.eval_every != 0 and epoch + 1 != cfg.epochs:
        return out
    d.broadcast_buffers(run.raw)  # every rank evaluates the weights rank 0 checkpoints
    out["test_top1"], out["test_top5"] = _accuracies(run.raw, run.feeder.test_batches(2 * run.batch), 1, run.K,
                                                     run.autocast, d, run.device)
    if run.has_val:
        out["val_top1"], _, out["val_top1_clean"], _ = _accuracies(run.raw, run.feeder.val_batches(2 * run.batch), 2,
                                                                   run.K, run.autocast, d, run.device)
    return out


def _running_best(history: list[dict]) -> dict:
    """Early-stopping fields from the history: the first epoch with the highest val_top1."""
    best = None
    for m in history:
        v = m.get("val_top1")
        if v is not None and (best is None or v > best["val_top1"]):
            best = m
    if best is None:
        return {"best_epoch": None, "val_top1_best": None, "test_top1_at_best": None}
    return {"best_epoch": best["epoch"], "val_top1_best": best["val_top1"], "test_top1_at_best": best["test_top1"]}


def state_dict(run: _Run, epoch: int, lr: float, eps_dynamic: float, history: list[dict]) -> dict:
    """The full state after ``epoch`` (0-based) that :func:`restore_state` continues from: weights,
    optimiser, LR and ε schedule positions, RNG states, the config and the history (its last entry is
    the epoch's metrics). Tensors are copied to the CPU."""
    cfg, bias_sched, nxt = run.cfg, run.cfg.logit_bias_schedule, epoch + 1
    eps_next, idx_next = (eps_dynamic, None) if run.dynamic else logit_bias_at(cfg.logit_bias, bias_sched, nxt)
    return {"format": STATE_FORMAT, "epoch": nxt, "model": _to_cpu(run.raw.state_dict()),
            "optimizer": _to_cpu(run.opt.state_dict()),
            "scheduler": {"base_lr": cfg.lr, "schedule": copy.deepcopy(cfg.lr_schedule),
                          "last_epoch": epoch, "last_lr": lr, "next_lr": lr_at(cfg.lr, cfg.lr_schedule, nxt)},
            "logit_bias_schedule": {"schedule": copy.deepcopy(bias_sched),
                                    "next_epoch": nxt, "index": idx_next, "value": eps_next},
            "rng": _rng_state(), "config": cfg.to_dict(), "history": copy.deepcopy(history),
            "metrics": dict(history[-1])}


def restore_state(state: dict, model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig) -> tuple[int, list, float]:
    """Load a :func:`state_dict` into ``model`` and ``opt`` and set the RNGs; returns (the next epoch,
    the history, the next epoch's dynamic ε — ``cfg.logit_bias`` for the other schedules)."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"])
    sched = cfg.logit_bias_schedule
    dynamic = sched is not None and sched.get("kind") == "dynamic"
    eps = float(state["logit_bias_schedule"]["value"]) if dynamic else float(cfg.logit_bias)
    return int(state["epoch"]), copy.deepcopy(state.get("history", [])), eps


def _print_epoch(m: dict, epochs: int) -> None:
    t1, v1 = ("-" if v is None else f"{v:.2f}" for v in (m["test_top1"], m["val_top1"]))
    print(f"epoch {m['epoch']}/{epochs} loss {m['train_loss']:.4f} train(noisy) {m['train_acc_noisy']:.2f} "
          f"train(clean) {m['train_acc_clean']:.2f} memorized {m['memorized']:.3f} top1 {t1} "
          f"val(noisy) {v1} lr {m['lr']:.3g} eps {m['logit_bias']:.3g} p_y {m['mean_py_biased']:.3f} "
          f"{m['epoch_time']:.1f}s", flush=True)


def train(config: TrainConfig | dict, *, on_epoch: Callable[[dict, Callable[[], dict]], None] | None = None,
          resume_state: dict | None = None, verbose: bool = False) -> dict:
    """Train ``config`` (a TrainConfig or its dict; presets fill None fields); see the module docstring.

    Raises NonFiniteLossError if an epoch's mean training loss is not finite (before ``on_epoch``).
    ``verbose=True`` prints one line per epoch on rank 0; otherwise nothing is printed or written.
    """
    cfg = (config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)).resolved()
    if resume_state is not None:
        _check_resume(resume_state, cfg)
    run, start, history, eps = _setup(cfg, resume_state)   # eps: the dynamic ε of the next epoch
    metrics = history[-1] if history else None
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        lr = lr_at(cfg.lr, cfg.lr_schedule, epoch)
        if not run.dynamic:
            eps, _ = logit_bias_at(cfg.logit_bias, cfg.logit_bias_schedule, epoch)
        train_m = train_one_epoch(run, epoch, lr, eps)
        eps_used = eps
        if run.dynamic:   # next epoch's ε: mean σ(m_i + ε) = c on this epoch's margins
            margins = train_m["margins"]
            m_all = torch.cat(margins) if margins else torch.zeros(0, device=run.device)
            eps = next_dynamic_bias(m_all, cfg.logit_bias_schedule["c"], eps, reduce=run.d.all_reduce)
        eval_m = evaluate(run, epoch)
        run.sync()
        times = run.d.all_reduce(torch.tensor([time.perf_counter() - t0, train_m["train_seconds"]],
                                              dtype=torch.float64, device=run.device), op=dist.ReduceOp.MAX)
        epoch_time, train_seconds = times.tolist()
        metrics = {"epoch": epoch + 1, **{k: train_m[k] for k in METRIC_KEYS if k in train_m}, **eval_m,
                   "epoch_time": epoch_time,
                   "samples_per_sec": train_m["n"] / train_seconds if train_seconds > 0 else float("inf"), "lr": lr,
                   "logit_bias": eps_used, "noise_rate_actual": run.noise_rate}
        metrics.update(_running_best(history + [metrics]))
        metrics = {k: metrics[k] for k in METRIC_KEYS}
        history.append(metrics)
        if verbose and run.d.rank == 0:
            _print_epoch(metrics, cfg.epochs)
        if on_epoch is not None:
            on_epoch(dict(metrics), lambda epoch=epoch, lr=lr, eps=eps, n=len(history):
                     state_dict(run, epoch, lr, eps, history[:n]))

    if metrics is None:  # nothing to train and no history (epochs <= checkpoint epoch without history)
        raise ValueError(f"resume_state is at epoch {start} >= epochs={cfg.epochs} and holds no history")
    return {**metrics, "history": copy.deepcopy(history)}
