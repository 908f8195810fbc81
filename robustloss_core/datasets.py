"""Dataset registry and loaders: CIFAR-10/100, Fashion-MNIST, WebVision (full / mini), ImageFolder, synthetic, glyphs.

``build_dataset(name, root, download=..., seed=..., **kwargs) -> DataBundle``. Every bundle holds torch
Datasets ``train`` / ``test`` yielding ``(x float tensor, clean label)`` with the paper's preprocessing
(Appendix A.1, reference-params.md) and ``train_targets`` (clean int64 labels aligned with ``train``).
Label noise is applied by the caller (``noise.apply_label_noise``) to ``train_targets``.

Every fact of a dataset is declared once, in its :func:`register_dataset` call (:class:`DatasetSpec`): K (or
how K follows from its arguments), the preset column, other spellings, example counts, its augmentation
(:mod:`robustloss_core.augment`), the system folder and install command of a Debian package that ships it, and
a file check that builds nothing (:func:`data_available`). The preset maps are filled from there.

Datasets that fit in memory (cifar10/100, fashionmnist, synthetic, glyphs) also fill ``tensors``: raw uint8
NCHW images (or float features), labels, the normalisation mean/std and the augmentation name, so the engine
can keep everything on the accelerator and augment there (same transforms as the CPU ``train`` dataset).

On-disk formats are torchvision's: ``<root>/cifar-10-batches-py`` (pickles ``data_batch_1..5``,
``test_batch``), ``<root>/cifar-100-python`` (``train``, ``test``), ``<root>/FashionMNIST/raw`` (idx files,
``.gz`` or not); the folder itself may also be given as root. Files are read directly (no checksum, so
subsets work); ``download=True`` fetches missing CIFAR/Fashion-MNIST files through torchvision — never
implicitly. Missing files raise :class:`DataRootError` with one line: the path, what was expected there,
and the remedy. ``root=None`` means ``$ROBUSTLOSS_DATA_ROOT`` or ``./data``, else the dataset's system folder
(Fashion-MNIST: ``/usr/share/datasets/fashion-mnist`` from Debian's ``dataset-fashion-mnist``; glyphs: the CJK
fonts under ``/usr/share/fonts``), so an installed copy is used with no flag.

Validation hold-out: :func:`holdout_split` (stratified, seeded) picks the examples and
:func:`holdout_dataset` serves them with the evaluation transform (the engine's ``val_fraction``).
"""
from __future__ import annotations

import gzip
import inspect
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from numbers import Real

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from . import glyphs, presets
from ._checks import int_arg
from .augment import (AUGMENTATIONS, augment_batch, normalize_batch, random_crop, random_flip,  # noqa: F401
                      random_rotate, rotate_batch)
from .synthetic import SYNTHETIC_DEFAULTS, SYNTHETIC_MAX_CLASSES, synthetic_arrays, synthetic_oracle_top1  # noqa: F401

__all__ = ["DATASETS", "DataBundle", "TensorData", "DataRootError", "build_dataset", "dataset_num_classes",
           "register_dataset", "canonical_name", "preset_dataset", "augment_batch", "normalize_batch", "random_crop",
           "random_flip", "random_rotate", "rotate_batch", "holdout_split", "holdout_dataset",
           "AUGMENTATIONS", "IMAGENET_MEAN", "IMAGENET_STD", "synthetic_arrays", "synthetic_oracle_top1"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
WEBVISION_URL = "https://data.vision.ee.ethz.ch/cvl/webvision/download.html"


class DataRootError(ValueError):
    """Dataset files are missing or unreadable; the message is one line: path, expectation, remedy."""


@dataclass
class TensorData:
    """In-memory data for the on-device path: images uint8 [N, C, H, W] (or float features [N, D])."""

    train_x: torch.Tensor
    train_y: torch.Tensor       # int64
    test_x: torch.Tensor
    test_y: torch.Tensor        # int64
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    augment: str | None         # key of AUGMENTATIONS or None


@dataclass
class DataBundle:
    name: str
    num_classes: int
    input_shape: tuple[int, ...]          # (C, H, W) or (D,)
    train: Dataset                        # (x float tensor, clean label), train augmentation
    test: Dataset                         # (x, y), eval transform
    train_targets: np.ndarray             # clean int64 labels aligned with train
    tensors: TensorData | None = None
    info: dict = field(default_factory=dict)   # JSON-serialisable description (paths, generator settings)


# ----------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class DatasetSpec:
    """Every fact of one dataset, declared once at :func:`register_dataset`; the rest of the package reads it."""

    name: str
    build: Callable[..., DataBundle]                # fn(root, *, download, seed, **kwargs) -> DataBundle
    num_classes: int | Callable[..., int]           # K, or K from (root=..., **kwargs) without loading data
    column: str                                     # the preset column (presets.COLUMNS) every preset lookup reads
    aliases: tuple[str, ...] = ()                   # other spellings of the name
    examples: tuple[int, int] | Callable[..., tuple[int, int]] | None = None   # (train, test), or from kwargs
    augment: str | None = None                      # AUGMENTATIONS key for the ResNet setups' train batches
    system_root: Path | None = None                 # where a system package installs the files
    install: str | None = None                      # the command that installs them
    files_present: Callable[[Path], bool] | None = None   # whether a root holds the files, without building


DATASET_SPECS: dict[str, DatasetSpec] = {}
DATASETS: dict[str, Callable[..., DataBundle]] = {}   # name -> builder (derived from DATASET_SPECS)


def register_dataset(name: str, num_classes: int | Callable[..., int], *, column: str | None = None,
                     aliases: tuple[str, ...] = (), examples=None, augment: str | None = None,
                     system_root: str | Path | None = None, install: str | None = None, files_present=None):
    """Register builder ``fn(root, *, download, seed, **kwargs) -> DataBundle`` with its facts (:class:`DatasetSpec`;
    ``column`` defaults to the name). The preset maps (``presets.DATASET_ALIASES``, ``presets.NUM_CLASSES``,
    ``presets.DATASET_EXAMPLES``) are filled from here."""

    def deco(fn):
        taken = set(DATASET_SPECS) | set(presets.DATASET_ALIASES)
        clash = sorted({name, *aliases} & taken)
        if clash:
            raise ValueError(f"dataset name {', '.join(map(repr, clash))} is already registered")
        spec = DatasetSpec(name, fn, num_classes, column or name, tuple(aliases), examples, augment,
                           Path(system_root) if system_root else None, install, files_present)
        if spec.column not in presets.COLUMNS:
            raise ValueError(f"dataset {name!r}: column {spec.column!r} is not a preset column "
                             f"({', '.join(presets.COLUMNS)})")
        if augment is not None and augment not in AUGMENTATIONS:
            raise ValueError(f"dataset {name!r}: augment {augment!r} is not one of {', '.join(AUGMENTATIONS)}")
        DATASET_SPECS[name], DATASETS[name] = spec, fn
        if spec.column != name:
            presets.DATASET_ALIASES[name] = spec.column
        for alias in aliases:
            presets.DATASET_ALIASES[alias] = spec.column
            _SPELLINGS[alias] = name
        if isinstance(num_classes, int) and name in presets.COLUMNS:
            presets.NUM_CLASSES[name] = num_classes
        if isinstance(examples, tuple):
            presets.DATASET_EXAMPLES[name] = examples
        return fn

    return deco


_SPELLINGS: dict[str, str] = {}   # alias -> registered name (filled by register_dataset)


def canonical_name(name: str) -> str:
    """The registered dataset ``name`` stands for: itself, or the dataset one of its aliases names (fmnist)."""
    if isinstance(name, str) and name in DATASETS:
        return name
    if isinstance(name, str) and name in _SPELLINGS:
        return _SPELLINGS[name]
    raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(sorted(DATASETS))} "
                     f"(or another spelling: {', '.join(sorted(_SPELLINGS))})")


def spec(name: str) -> DatasetSpec:
    """The facts of dataset ``name`` (or of the dataset an alias names)."""
    return DATASET_SPECS[canonical_name(name)]


def preset_dataset(name: str) -> str:
    """The preset column whose presets (training setup, default model, loss parameters, asymmetric noise
    map) ``name`` uses: its spec's ``column`` (synthetic-easy, glyphs -> synthetic; imagefolder -> webvision)."""
    return presets.resolve_dataset(name)


def dataset_examples(name: str, **kwargs) -> tuple[int, int] | None:
    """(train, test) examples of ``name`` with these builder keyword arguments, without loading data."""
    ex = spec(name).examples
    return ex(**kwargs) if callable(ex) else ex


def data_available(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether ``name``'s files are where ``build_dataset`` would read them (no data is built); True for
    generated data and datasets that declare no file check."""
    s = spec(name)
    if s.files_present is None:
        return True
    return bool(s.files_present(_resolve_root(root) if root is not None else default_root(s.name)))


def _own_kwargs(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p not in ("root", "download", "seed")]


CACHE_BYTES = 1 << 30   # in-memory bundles build_dataset(cache=True) keeps per process, by their tensors' size
_cache: dict[str, DataBundle] = {}   # insertion order = least recently used first


def build_dataset(name: str, root: str | os.PathLike | None = None, *, download: bool = False, seed: int = 0,
                  cache: bool = False, **kwargs) -> DataBundle:
    """Build dataset ``name`` (see ``DATASETS``). ``seed`` is the data seed of generated datasets.

    ``cache=True``: an in-memory bundle (``tensors`` set: synthetic, CIFAR, Fashion-MNIST) built before in
    this process with the same arguments is returned again instead of rebuilt, so the trials a reused Ray
    worker runs share one copy; at most ``CACHE_BYTES`` of tensors are kept, least recently used dropped.
    Callers must not modify a cached bundle (the engine only reads it: label noise, splits and batches
    are copies)."""
    name = canonical_name(name)
    fn = DATASETS[name]
    allowed = _own_kwargs(fn)
    bad = sorted(set(kwargs) - set(allowed))
    if bad:
        raise ValueError(f"dataset {name!r} does not take {', '.join(bad)}; allowed: {', '.join(allowed) or 'none'}")
    path = _resolve_root(root) if root is not None else default_root(name)
    key = repr((name, str(path), seed, sorted(kwargs.items())))
    if cache and key in _cache:
        _cache[key] = _cache.pop(key)   # most recently used
        return _cache[key]
    bundle = fn(path, download=bool(download), seed=seed, **kwargs)
    if cache and bundle.tensors is not None:
        _cache[key] = bundle
        while len(_cache) > 1 and sum(_tensor_bytes(b) for b in _cache.values()) > CACHE_BYTES:
            _cache.pop(next(iter(_cache)))
    return bundle


def _tensor_bytes(bundle: DataBundle) -> int:
    t = bundle.tensors
    return sum(x.numel() * x.element_size() for x in (t.train_x, t.train_y, t.test_x, t.test_y))


def dataset_num_classes(name: str, root: str | os.PathLike | None = None, **kwargs) -> int:
    """K for ``name`` without loading data (imagefolder counts class folders under ``root/train``)."""
    k = spec(name).num_classes
    return int(k(root=root, **kwargs) if callable(k) else k)


def _resolve_root(root) -> Path:
    return Path(root if root is not None else os.environ.get("ROBUSTLOSS_DATA_ROOT", "data")).expanduser()


def default_root(name: str) -> Path:
    """The folder ``build_dataset(name)`` reads with no root: ``$ROBUSTLOSS_DATA_ROOT``, else ``./data``, else the
    dataset's system folder (``system_root``: Fashion-MNIST's Debian package, the fonts of ``glyphs``) when
    ``./data`` lacks the files and the system folder has them."""
    root = _resolve_root(None)
    s = spec(name)
    if "ROBUSTLOSS_DATA_ROOT" in os.environ or s.system_root is None or s.files_present is None:
        return root
    if not s.files_present(root) and s.files_present(s.system_root):
        return s.system_root
    return root


# ------------------------------------------------------------------------------------- CPU-path datasets
class ImageTensorDataset(Dataset):
    """uint8 images [N, C, H, W] + labels; yields (transform(image / 255), int label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        x = self.images[i].float().div(255.0)
        return (self.transform(x) if self.transform is not None else x), int(self.labels[i])


def _tensor_transforms(augment: str | None, mean, std, size: int):
    from torchvision import transforms as T

    norm = T.Normalize(mean, std)
    ops = {"flip": lambda _: T.RandomHorizontalFlip(), "crop": lambda n: T.RandomCrop(size, padding=int(n)),
           "rotate": lambda d: T.RandomRotation(d)}
    train = [ops[op](arg) for op, arg in AUGMENTATIONS[augment]] if augment else []
    return T.Compose(train + [norm]), norm


def _in_memory_bundle(name, num_classes, train_x, train_y, test_x, test_y, mean, std, augment, info) -> DataBundle:
    tx, ty = torch.from_numpy(np.ascontiguousarray(train_x)), torch.from_numpy(train_y.astype(np.int64))
    vx, vy = torch.from_numpy(np.ascontiguousarray(test_x)), torch.from_numpy(test_y.astype(np.int64))
    tr_tf, te_tf = _tensor_transforms(augment, mean, std, tx.shape[-1])
    return DataBundle(name=name, num_classes=num_classes, input_shape=tuple(tx.shape[1:]),
                      train=ImageTensorDataset(tx, ty, tr_tf), test=ImageTensorDataset(vx, vy, te_tf),
                      train_targets=ty.numpy().copy(), tensors=TensorData(tx, ty, vx, vy, mean, std, augment),
                      info=info)


# -------------------------------------------------------------------------------- validation hold-out
def holdout_split(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, hold-out indices), both sorted int64, of a split stratified by ``labels``.

    Class c with n_c examples gives min(n_c − 1, max(1, round(fraction · n_c))) of them to the hold-out
    (none when fraction = 0): every class with two or more examples is represented on both sides. The
    examples are chosen uniformly within their class by ``numpy.random.default_rng(seed)`` (one key per
    example, sorted within class), so the split depends on the labels and the seed only.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, Real) or not 0.0 <= fraction < 1.0:
        raise ValueError(f"hold-out fraction={fraction!r} must be a number in [0, 1)")
    y = np.asarray(labels, dtype=np.int64)
    n = y.size
    if fraction == 0 or n == 0:
        return np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    key = np.random.default_rng(seed).random(n)
    order = np.lexsort((key, y))                          # by class, random within class
    counts = np.bincount(y)
    take = np.clip(np.minimum(counts - 1, np.maximum(1, np.rint(fraction * counts))), 0, None).astype(np.int64)
    rank = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)   # position within the class
    held = rank < np.repeat(take, counts)
    return np.sort(order[~held]), np.sort(order[held])


def holdout_dataset(bundle: DataBundle, indices) -> Dataset:
    """The training examples at ``indices`` with the *evaluation* transform (no augmentation), yielding
    (x, clean label) like ``bundle.test``; for dataset classes it does not know, a Subset of ``train``."""
    idx = [int(i) for i in np.asarray(indices)]
    tr = bundle.train
    if isinstance(tr, ImageListDataset):
        return ImageListDataset([tr.samples[i] for i in idx], bundle.test.transform)
    if isinstance(tr, ImageTensorDataset):
        return ImageTensorDataset(tr.images[idx], tr.labels[idx], bundle.test.transform)
    if isinstance(tr, TensorDataset):
        return TensorDataset(*(t[idx] for t in tr.tensors))
    return torch.utils.data.Subset(tr, idx)


# ------------------------------------------------------------------------------------------ CIFAR-10/100
def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def _locate(root: Path, sub: str, files: list[str]) -> Path | None:
    """The first of root/sub, root holding all ``files``, else None."""
    for cand in (root / sub, root):
        if all((cand / f).is_file() for f in files):
            return cand
    return None


def _missing(root: Path, what: str, expected: str, download_ok: bool) -> DataRootError:
    remedy = "pass --download to fetch it or --data-root to point at it" if download_ok else \
        "pass --data-root to point at it"
    return DataRootError(f"{what} not found under {root}: expected {expected}; {remedy}")


def _download(root: Path, what: str, tv_cls) -> None:
    root.mkdir(parents=True, exist_ok=True)
    try:
        tv_cls(str(root), train=True, download=True)
        tv_cls(str(root), train=False, download=True)
    except Exception as exc:  # network or disk failure: one line, keep the cause
        raise DataRootError(f"download of {what} into {root} failed ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}); fetch it yourself and pass "
                            f"--data-root") from exc


def _load_cifar(root: Path, download: bool, *, sub, train_files, test_files, label_key, what, tv_name):
    files = train_files + test_files
    folder = _locate(root, sub, files)
    if folder is None and download:
        import torchvision.datasets as tvd

        _download(root, what, getattr(tvd, tv_name))
        folder = _locate(root, sub, files)
    if folder is None:
        shown = f"{sub}/{train_files[0]}..{len(train_files)}" if len(train_files) > 1 else f"{sub}/{train_files[0]}"
        raise _missing(root, what, f"{shown} and {sub}/{test_files[0]}", True)

    def read(names):
        xs, ys = [], []
        for f in names:
            try:
                d = _unpickle(folder / f)
                xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(d[label_key], dtype=np.int64))
            except (KeyError, ValueError, pickle.UnpicklingError, EOFError) as exc:
                raise DataRootError(f"{folder / f} is not a readable {what} batch ({type(exc).__name__}: "
                                    f"{exc}); pass --download to fetch it again or --data-root to point at "
                                    f"another copy") from None
        return np.concatenate(xs), np.concatenate(ys)

    (trx, try_), (tex, tey) = read(train_files), read(test_files)
    return folder, trx, try_, tex, tey


@register_dataset("cifar10", 10, aliases=("cifar",), examples=(50_000, 10_000), augment="cifar10")
def _cifar10(root: Path, *, download: bool, seed: int) -> DataBundle:
    """CIFAR-10: 50 000 / 10 000 RGB 32×32, normalised with ImageNet mean/std (akamaster)."""
    folder, trx, try_, tex, tey = _load_cifar(
        root, download, sub="cifar-10-batches-py", train_files=[f"data_batch_{i}" for i in range(1, 6)],
        test_files=["test_batch"], label_key="labels", what="CIFAR-10", tv_name="CIFAR10")
    return _in_memory_bundle("cifar10", 10, trx, try_, tex, tey, IMAGENET_MEAN, IMAGENET_STD, "cifar10",
                             {"path": str(folder)})


@register_dataset("cifar100", 100, examples=(50_000, 10_000), augment="cifar100")
def _cifar100(root: Path, *, download: bool, seed: int) -> DataBundle:
    """CIFAR-100 (fine labels), mean (0.5071, 0.4865, 0.4409), std (0.2673, 0.2564, 0.2762) (weiaicunzai)."""
    folder, trx, try_, tex, tey = _load_cifar(
        root, download, sub="cifar-100-python", train_files=["train"], test_files=["test"],
        label_key="fine_labels", what="CIFAR-100", tv_name="CIFAR100")
    return _in_memory_bundle("cifar100", 100, trx, try_, tex, tey, CIFAR100_MEAN, CIFAR100_STD, "cifar100",
                             {"path": str(folder)})


# ----------------------------------------------------------------------------------------- Fashion-MNIST
_FMNIST_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
                 "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
_IDX_MAGIC = {3: 2051, 1: 2049}   # images (ndim 3), labels (ndim 1): 0x0803, 0x0801


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an uncompressed or gzip'ed idx file of unsigned bytes with ``ndim`` dimensions."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic != _IDX_MAGIC[ndim]:
        raise DataRootError(f"{path} has magic number {magic}, expected {_IDX_MAGIC[ndim]} (idx uint8, {ndim}-D); "
                            f"pass --download to fetch it again or --data-root to point at another copy")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).copy()
    if data.size != int(np.prod(dims)):
        raise DataRootError(f"{path} holds {data.size} bytes of data, header says {dims}; pass --download to "
                            f"fetch it again or --data-root to point at another copy")
    return data.reshape(dims)


def _find_fmnist(root: Path) -> dict[str, Path] | None:
    for cand in (root / "FashionMNIST" / "raw", root / "raw", root):
        found = {}
        for key, name in _FMNIST_FILES.items():
            for fname in (name, name + ".gz"):
                if (cand / fname).is_file():
                    found[key] = cand / fname
                    break
        if len(found) == len(_FMNIST_FILES):
            return found
    return None


@register_dataset("fashionmnist", 10, aliases=("fmnist", "fashion-mnist", "fashion_mnist"),
                  examples=(60_000, 10_000), augment="fashionmnist", system_root="/usr/share/datasets/fashion-mnist",
                  install="apt-get install dataset-fashion-mnist",
                  files_present=lambda root: _find_fmnist(root) is not None)
def _fashionmnist(root: Path, *, download: bool, seed: int) -> DataBundle:
    """Fashion-MNIST: 60 000 / 10 000 grey 28×28, mean 0.2860, std 0.3530 (paper A.1)."""
    files = _find_fmnist(root)
    if files is None and download:
        import torchvision.datasets as tvd

        _download(root, "Fashion-MNIST", tvd.FashionMNIST)
        files = _find_fmnist(root)
    if files is None:
        err = _missing(root, "Fashion-MNIST", "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
                       True)
        s = spec("fashionmnist")
        raise DataRootError(f"{err}, or install it: {s.install} (files in {s.system_root})")
    trx, tex = (read_idx(files[k], 3)[:, None] for k in ("train_x", "test_x"))
    try_, tey = (read_idx(files[k], 1).astype(np.int64) for k in ("train_y", "test_y"))
    return _in_memory_bundle("fashionmnist", 10, trx, try_, tex, tey, FMNIST_MEAN, FMNIST_STD, "fashionmnist",
                             {"path": str(files["train_x"].parent)})


# ------------------------------------------------------------------------- file-based (WebVision, folders)
class ImageListDataset(Dataset):
    """(path, label) list; yields (transform(RGB PIL image), label)."""

    def __init__(self, samples: list[tuple[str, int]], transform: Callable):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as im:
            return self.transform(im.convert("RGB")), label


def _imagenet_transforms(size: int):
    """Train: random-resized crop ``size`` + flip; test: resize ``size``·256/224 + centre crop; ImageNet norm."""
    from torchvision import transforms as T

    norm = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip()] + norm)
    test = T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size)] + norm)
    return train, test


def _file_bundle(name, num_classes, train_samples, test_samples, size, info) -> DataBundle:
    tr_tf, te_tf = _imagenet_transforms(size)
    return DataBundle(name=name, num_classes=num_classes, input_shape=(3, size, size),
                      train=ImageListDataset(train_samples, tr_tf), test=ImageListDataset(test_samples, te_tf),
                      train_targets=np.array([y for _, y in train_samples], dtype=np.int64), tensors=None, info=info)


def _read_filelist(path: Path) -> list[tuple[str, int]]:
    out = []
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DataRootError(f"{path}:{ln}: expected '<relative path> <label>', got {line[:80]!r}; pass "
                                    f"--data-root to point at an intact WebVision copy")
            out.append((parts[0], int(parts[1])))
    return out


def _webvision(root: Path, classes: int, image_size: int, name: str) -> DataBundle:
    image_size = int_arg("image_size", image_size, 8)
    info_dir = root / "info"
    lists = {"train": info_dir / "train_filelist_google.txt", "val": info_dir / "val_filelist.txt"}
    for p in lists.values():
        if not p.is_file():
            raise DataRootError(f"WebVision file list {p} not found (WebVision 1.0 layout under {root}: info/, "
                                f"google/, val_images_256/); pass --data-root (no --download: {WEBVISION_URL})")
    train = [(str(root / p), y) for p, y in _read_filelist(lists["train"]) if y < classes]
    # val entries are bare file names under val_images_256/, or paths relative to root
    val = [(str(root / p) if "/" in p else str(root / "val_images_256" / p), y)
           for p, y in _read_filelist(lists["val"]) if y < classes]
    for split, samples in (("train", train), ("val", val)):
        if not samples:
            raise DataRootError(f"{lists[split]} lists no image with label < {classes}; pass --data-root to point at "
                                f"a complete WebVision copy")
        if not Path(samples[0][0]).is_file():
            raise DataRootError(f"WebVision image {samples[0][0]} (first of {lists[split].name}) not found under "
                                f"{root}; pass --data-root to point at the folder holding info/ and the images "
                                f"(from {WEBVISION_URL})")
    return _file_bundle(name, classes, train, val, image_size,
                        {"path": str(root), "train_images": len(train), "val_images": len(val)})


@register_dataset("webvision", 1000, examples=(2_439_574, 50_000))
def _webvision_full(root: Path, *, download: bool, seed: int, image_size: int = 224) -> DataBundle:
    """WebVision 1.0, Google subset (info/train_filelist_google.txt), 1000 classes, evaluated on the
    WebVision validation set. Train: random-resized crop + flip; test: resize 256, centre crop 224."""
    return _webvision(root, 1000, image_size, "webvision")


@register_dataset("mini-webvision", 50, examples=(65_944, 2_500))
def _mini_webvision(root: Path, *, download: bool, seed: int, image_size: int = 224) -> DataBundle:
    """Mini-WebVision: the first 50 classes (labels < 50) of the Google subset, evaluated on the WebVision
    validation images of those classes."""
    return _webvision(root, 50, image_size, "mini-webvision")


def _folder_classes(root: Path | None) -> tuple[Path, list[str]]:
    if root is None:
        raise DataRootError("imagefolder needs a root holding train/<class>/*; pass --data-root to point at it")
    train_dir = Path(root) / "train"
    if not train_dir.is_dir():
        raise DataRootError(f"image folder {train_dir} not found: expected {root}/train/<class>/<image> and "
                            f"{root}/val (or test)/<class>/<image>; pass --data-root to point at it")
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if not classes:
        raise DataRootError(f"{train_dir} has no class folders: expected {train_dir}/<class>/<image>; pass "
                            f"--data-root to point at a populated folder")
    return train_dir, classes


def _scan_folder(split_dir: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    out = []
    for d in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if d.name not in class_to_idx:
            raise DataRootError(f"{d} is a class folder absent from {split_dir.parent / 'train'}; the eval split "
                                f"must use the training classes ({len(class_to_idx)} found)")
        out += [(str(f), class_to_idx[d.name]) for f in sorted(d.rglob("*"))
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
    return out


# imagefolder uses the WebVision column, for its loss parameters and its training setup alike: it is read as
# WebVision is (224-px, ImageNet-normalised image files, the DataLoader path), so of the setups only WebVision's
# network (wrn101) and schedule are made for its images; its K is the folder's, typically larger than 10, where the
# paper carries CIFAR-100's values over (Table 4: WebVision takes CIFAR-100's), not CIFAR-10's; and WebVision has
# no asymmetric class map, so asymmetric noise is refused on a folder of unknown classes.
@register_dataset("imagefolder", lambda root=None, **_: len(_folder_classes(root)[1]), column="webvision")
def _imagefolder(root: Path, *, download: bool, seed: int, image_size: int = 224) -> DataBundle:
    """Any ImageFolder layout: root/train/<class>/<image>, root/val (or root/test)/<class>/<image>; classes
    are the sorted train sub-folders. ImageNet-style transforms at ``image_size``."""
    image_size = int_arg("image_size", image_size, 8)
    train_dir, classes = _folder_classes(root)
    eval_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if eval_dir is None:
        raise DataRootError(f"no eval split under {root}: expected {root}/val/<class>/<image> or {root}/test/...; "
                            f"pass --data-root to point at a folder with one")
    idx = {c: i for i, c in enumerate(classes)}
    train, test = _scan_folder(train_dir, idx), _scan_folder(eval_dir, idx)
    for d, s in ((train_dir, train), (eval_dir, test)):
        if not s:
            raise DataRootError(f"{d} holds no images ({', '.join(IMAGE_EXTENSIONS)}); pass --data-root to point at "
                                f"a populated folder")
    return _file_bundle("imagefolder", len(classes), train, test, image_size,
                        {"path": str(root), "classes": classes, "eval_split": eval_dir.name})


_SD = SYNTHETIC_DEFAULTS


def _synthetic_builder(name: str, sigma_default: float):
    """A registered builder for the synthetic generator under ``name`` (its own default sigma)."""

    def build(root: Path, *, download: bool, seed: int, classes: int = _SD["classes"],
              train_per_class: int = _SD["train_per_class"], test_per_class: int = _SD["test_per_class"],
              dim: int = _SD["dim"], latent_dim: int = _SD["latent_dim"], sigma: float = sigma_default,
              hidden: int = _SD["hidden"], gain: float = _SD["gain"]) -> DataBundle:
        args = dict(classes=classes, train_per_class=train_per_class, test_per_class=test_per_class, dim=dim,
                    latent_dim=latent_dim, sigma=sigma, hidden=hidden, gain=gain)
        trx, try_, tex, tey = synthetic_arrays(seed=seed, **args)
        tx, ty, vx, vy = (torch.from_numpy(a) for a in (trx, try_, tex, tey))
        return DataBundle(name=name, num_classes=int(classes), input_shape=(int(dim),),
                          train=TensorDataset(tx, ty), test=TensorDataset(vx, vy), train_targets=try_.copy(),
                          tensors=TensorData(tx, ty, vx, vy, None, None, None), info={**args, "seed": seed})

    build.__doc__ = f"Offline K-class dataset (see :func:`synthetic_arrays`), default sigma {sigma_default}; " \
                    f"``seed`` is the data seed."
    return build


def _synthetic_classes(root=None, classes=_SD["classes"], **_):
    return int_arg("classes", classes, 2, SYNTHETIC_MAX_CLASSES)


def _synthetic_examples(classes=_SD["classes"], train_per_class=_SD["train_per_class"],
                        test_per_class=_SD["test_per_class"], **_) -> tuple[int, int]:
    return int(classes) * int(train_per_class), int(classes) * int(test_per_class)


register_dataset("synthetic", _synthetic_classes, examples=_synthetic_examples)(
    _synthetic_builder("synthetic", _SD["sigma"]))
# the same generator with less class overlap (high attainable accuracy); synthetic presets (presets.DATASET_ALIASES)
register_dataset("synthetic-easy", _synthetic_classes, column="synthetic", examples=_synthetic_examples)(
    _synthetic_builder("synthetic-easy", 1.0))


# ------------------------------------------------------------------------------- glyphs (printed characters)
def _glyph_classes(root=None, classes: int = glyphs.DEFAULTS["classes"], **_) -> int:
    return int_arg("classes", classes, 2, glyphs.MAX_CLASSES)


def _glyph_examples(classes: int = glyphs.DEFAULTS["classes"], renders: int = glyphs.DEFAULTS["renders"],
                    test_families=glyphs.DEFAULTS["test_families"], **_) -> tuple[int, int]:
    test = glyphs.parse_families(test_families)
    faces = glyphs.installed_faces()
    train_faces = sum(f.family not in test for f in faces)
    return int(classes) * train_faces * int(renders), int(classes) * (len(faces) - train_faces)


# K chosen (2 <= K <= 3 755); the synthetic column's presets (MLP1024, CIFAR-10's loss parameters carried over: the
# K <= 10 values that analytic calibration transfers to K); no batch augmentation (the renderings are jittered).
@register_dataset("glyphs", _glyph_classes, column="synthetic", examples=_glyph_examples, system_root=glyphs.FONT_ROOT,
                  install=glyphs.INSTALL, files_present=glyphs.files_present)
def _glyphs(root: Path, *, download: bool, seed: int, classes: int = glyphs.DEFAULTS["classes"],
            renders: int = glyphs.DEFAULTS["renders"], image_size: int = glyphs.DEFAULTS["image_size"],
            test_families: str = glyphs.DEFAULTS["test_families"],
            subset_seed: int = glyphs.DEFAULTS["subset_seed"]) -> DataBundle:
    """Printed GB2312 characters, K classes (:mod:`robustloss_core.glyphs`): train on 20 typefaces with jitter, test
    on 5 held-out ones. The set depends on its arguments only (``subset_seed``), not on the trial's ``seed``, so
    every trial of a sweep sees the same classes and images. Grey ``image_size``² images, normalised with the
    training pixels' mean and std."""
    K = _glyph_classes(classes=classes)
    renders, size = int_arg("renders", renders, 1), int_arg("image_size", image_size, 8, 256)
    families, subset_seed = glyphs.parse_families(test_families), int_arg("subset_seed", subset_seed, 0)
    if not glyphs.files_present(root):
        raise DataRootError(f"CJK fonts not found under {root}: expected e.g. {root}/{glyphs.FACES[0].path} (a train "
                            f"and a test family); install them: {glyphs.INSTALL}")
    trx, try_, tex, tey, info = glyphs.load(K, renders, size, families, subset_seed, root)
    mean, std = float(trx.mean()) / 255.0, float(trx.std()) / 255.0
    return _in_memory_bundle("glyphs", K, trx, try_, tex, tey, (mean,), (std,), None,
                             {**info, "path": str(root), "mean": mean, "std": std})
