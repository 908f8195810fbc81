import gzip
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustloss_core import datasets as ds
from robustloss_core.datasets import (DataRootError, augment_batch, build_dataset, dataset_num_classes,
                                      normalize_batch, random_crop, random_flip, rotate_batch)

from datafiles import (WEBVISION_TRAIN, WEBVISION_VAL, cifar10_root, cifar100_root, imagefolder_root,  # noqa: F401
                       webvision_root, write_cifar10, write_fmnist)

NO_DOWNLOAD = ("--download", "--data-root")


def one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------------ CIFAR / F-MNIST
def test_cifar10_reads_pickles(cifar10_root):
    root, arr = cifar10_root
    b = build_dataset("cifar10", root)
    t = b.tensors
    assert (b.num_classes, b.input_shape, len(b.train), len(b.test)) == (10, (3, 32, 32), 20, 3)
    assert t.train_x.dtype == torch.uint8 and t.train_x.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(t.train_x.numpy(), arr["train_x"])
    np.testing.assert_array_equal(t.test_x.numpy(), arr["test_x"])   # bytes-keyed pickle
    np.testing.assert_array_equal(b.train_targets, arr["train_y"])
    np.testing.assert_array_equal(t.test_y.numpy(), arr["test_y"])
    assert b.train_targets.dtype == np.int64
    assert (t.mean, t.std, t.augment) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "cifar10")
    # eval transform = normalisation only
    x, y = b.test[1]
    m, s = torch.tensor(t.mean)[:, None, None], torch.tensor(t.std)[:, None, None]
    ref = (torch.from_numpy(arr["test_x"][1]).float() / 255 - m) / s
    torch.testing.assert_close(x, ref)
    assert y == arr["test_y"][1] and isinstance(y, int)
    # train transform: shape kept, every pixel is a normalised raw value or the normalised zero padding
    xt, yt = b.train[0]
    assert xt.shape == (3, 32, 32) and yt == arr["train_y"][0]
    pad = (-torch.tensor(t.mean) / torch.tensor(t.std))
    allowed = torch.cat([((torch.from_numpy(arr["train_x"][0]).float() / 255 - torch.tensor(t.mean)[:, None, None])
                          / torch.tensor(t.std)[:, None, None]).flatten(1), pad[:, None]], 1)
    for c in range(3):
        assert torch.isin(xt[c].flatten().round(decimals=4), allowed[c].round(decimals=4)).all()


def test_holdout_dataset_of_in_memory_images_is_unaugmented(cifar10_root):
    root, arr = cifar10_root
    b = build_dataset("cifar10", root)
    held = ds.holdout_dataset(b, np.array([3, 7]))
    for i, j in enumerate((3, 7)):
        x, y = held[i]
        torch.testing.assert_close(x, b.test.transform(torch.from_numpy(arr["train_x"][j]).float() / 255))
        assert y == arr["train_y"][j]


def test_cifar10_root_may_be_the_batches_folder(cifar10_root):
    root, arr = cifar10_root
    b = build_dataset("cifar10", root / "cifar-10-batches-py")
    np.testing.assert_array_equal(b.train_targets, arr["train_y"])


def test_cifar10_missing_names_path_and_remedy(tmp_path):
    with pytest.raises(DataRootError) as e:
        build_dataset("cifar10", tmp_path / "nodata")
    msg = one_line(e)
    assert str(tmp_path / "nodata") in msg and "cifar-10-batches-py/data_batch_1..5" in msg
    assert all(s in msg for s in NO_DOWNLOAD)
    assert isinstance(e.value, ValueError)


def test_download_only_when_asked(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            if not (tmp_path / "cifar-10-batches-py").exists():
                write_cifar10(tmp_path)

    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR10)
    with pytest.raises(DataRootError):
        build_dataset("cifar10", tmp_path)
    assert calls == []
    b = build_dataset("cifar10", tmp_path, download=True)
    assert calls and all(c[2] for c in calls) and len(b.train) == 20

    def broken(*a, **k):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(tvd, "CIFAR100", broken)
    with pytest.raises(DataRootError, match="network unreachable") as e:
        build_dataset("cifar100", tmp_path / "c100", download=True)
    assert str(tmp_path / "c100") in one_line(e)


def test_cifar100_fine_labels(cifar100_root):
    root, arr = cifar100_root
    b = build_dataset("cifar100", root)
    np.testing.assert_array_equal(b.train_targets, arr["train_y"])
    np.testing.assert_array_equal(b.tensors.test_y.numpy(), arr["test_y"])
    np.testing.assert_array_equal(b.tensors.train_x.numpy(), arr["train_x"])
    assert b.num_classes == 100 and b.tensors.augment == "cifar100"
    assert b.tensors.mean == (0.5071, 0.4865, 0.4409) and b.tensors.std == (0.2673, 0.2564, 0.2762)
    assert b.train[0][0].shape == (3, 32, 32)


def test_cifar100_missing(tmp_path):
    with pytest.raises(DataRootError) as e:
        build_dataset("cifar100", tmp_path)
    msg = one_line(e)
    assert "cifar-100-python/train" in msg and str(tmp_path) in msg and all(s in msg for s in NO_DOWNLOAD)


@pytest.mark.parametrize("gz", [False, True])
def test_fashionmnist_idx(tmp_path, gz):
    arr = write_fmnist(tmp_path, gz)
    b = build_dataset("fashionmnist", tmp_path)
    t = b.tensors
    assert b.input_shape == (1, 28, 28) and t.train_x.shape == (6, 1, 28, 28) and t.test_x.shape == (4, 1, 28, 28)
    np.testing.assert_array_equal(t.train_x.numpy()[:, 0], arr["train_x"])
    np.testing.assert_array_equal(b.train_targets, arr["train_y"])
    np.testing.assert_array_equal(t.test_y.numpy(), arr["test_y"])
    assert (t.mean, t.std, t.augment) == ((0.2860,), (0.3530,), "fashionmnist")
    assert b.train[2][0].shape == (1, 28, 28)


def test_fashionmnist_bad_magic_and_missing(tmp_path):
    write_fmnist(tmp_path, gz=False)
    p = tmp_path / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    p.write_bytes((2051).to_bytes(4, "big") + p.read_bytes()[4:])
    with pytest.raises(DataRootError, match="magic number 2051, expected 2049"):
        build_dataset("fashionmnist", tmp_path)
    with pytest.raises(DataRootError) as e:
        build_dataset("fashionmnist", tmp_path / "empty")
    msg = one_line(e)
    assert "FashionMNIST/raw" in msg and all(s in msg for s in NO_DOWNLOAD)


# ------------------------------------------------------------------------------------------------ WebVision
def test_webvision_full(webvision_root):
    b = build_dataset("webvision", webvision_root, image_size=16)
    assert b.num_classes == 1000 and b.tensors is None and b.input_shape == (3, 16, 16)
    assert b.train_targets.tolist() == [y for _, y in WEBVISION_TRAIN]
    assert len(b.test) == len(WEBVISION_VAL)
    assert [p for p, _ in b.test.samples] == [str(webvision_root / "val_images_256" / f"val00000{i}.jpg")
                                               for i in range(1, 5)]
    x, y = b.train[3]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 49
    xv, yv = b.test[1]
    assert xv.shape == (3, 16, 16) and yv == 49
    # a constant colour image, centre-cropped and normalised
    torch.testing.assert_close(xv[:, 8, 8], (torch.tensor([10, 200, 30]) / 255 - torch.tensor(ds.IMAGENET_MEAN))
                               / torch.tensor(ds.IMAGENET_STD), atol=1e-2, rtol=0)


def test_mini_webvision_first_50_classes(webvision_root):
    b = build_dataset("mini-webvision", webvision_root, image_size=16)
    assert b.num_classes == 50
    assert b.train_targets.tolist() == [y for _, y in WEBVISION_TRAIN if y < 50] == [0, 0, 3, 49]
    assert [y for _, y in b.test.samples] == [0, 49]
    assert dataset_num_classes("mini-webvision") == 50 and dataset_num_classes("webvision") == 1000


def test_webvision_missing_lists_and_images(webvision_root, tmp_path):
    (webvision_root / "info" / "val_filelist.txt").unlink()
    with pytest.raises(DataRootError) as e:
        build_dataset("mini-webvision", webvision_root)
    msg = one_line(e)
    assert str(webvision_root / "info" / "val_filelist.txt") in msg and "--data-root" in msg and "http" in msg
    with pytest.raises(DataRootError, match="train_filelist_google.txt"):
        build_dataset("webvision", tmp_path / "nowhere")
    (webvision_root / "info" / "val_filelist.txt").write_text("val000001.jpg 0\n")
    (webvision_root / "google" / "q0001" / "a.jpg").unlink()
    with pytest.raises(DataRootError, match="a.jpg"):
        build_dataset("webvision", webvision_root)


# ---------------------------------------------------------------------------------------------- ImageFolder
def test_imagefolder(imagefolder_root):
    b = build_dataset("imagefolder", imagefolder_root, image_size=8)
    assert b.num_classes == 3 and b.info["classes"] == ["cat", "dog", "eel"]
    assert sorted(b.train_targets.tolist()) == [0, 0, 1, 1, 1, 2]
    assert [y for _, y in b.test.samples] == [1, 2]        # val uses the train class indices
    assert b.train[0][0].shape == (3, 8, 8) and b.test[1][0].shape == (3, 8, 8)
    assert dataset_num_classes("imagefolder", root=imagefolder_root) == 3
    # the validation hold-out reads training images with the eval transform (deterministic resize + crop)
    held = ds.holdout_dataset(b, [4, 1])
    assert held.samples == [b.train.samples[4], b.train.samples[1]] and held.transform is b.test.transform
    from PIL import Image

    with Image.open(b.train.samples[1][0]) as im:
        ref = b.test.transform(im.convert("RGB"))
    x, y = held[1]
    assert torch.equal(x, ref) and torch.equal(held[1][0], x) and y == b.train_targets[1]


def test_imagefolder_test_split_and_errors(imagefolder_root, tmp_path):
    (imagefolder_root / "val").rename(imagefolder_root / "test")
    assert build_dataset("imagefolder", imagefolder_root, image_size=8).info["eval_split"] == "test"
    (imagefolder_root / "test").rename(imagefolder_root / "other")
    with pytest.raises(DataRootError, match="val"):
        build_dataset("imagefolder", imagefolder_root)
    with pytest.raises(DataRootError) as e:
        dataset_num_classes("imagefolder", root=tmp_path / "none")
    assert str(tmp_path / "none") in one_line(e) and "--data-root" in str(e.value)


# ------------------------------------------------------------------------------------------------- registry
def test_registry_and_num_classes():
    assert set(ds.DATASETS) == {"cifar10", "cifar100", "fashionmnist", "webvision", "mini-webvision", "imagefolder",
                                "synthetic", "synthetic-easy", "glyphs"}
    assert [dataset_num_classes(n, root=None) for n in ("cifar10", "cifar100", "fashionmnist")] == [10, 100, 10]
    assert dataset_num_classes("synthetic", classes=1000, train_per_class=3) == 1000
    assert dataset_num_classes("synthetic") == 10
    with pytest.raises(ValueError, match="cifar10, cifar100, fashionmnist, glyphs, imagefolder, mini-webvision, synthetic"):
        dataset_num_classes("mnist")
    with pytest.raises(ValueError, match="mnist"):
        build_dataset("mnist")
    with pytest.raises(ValueError, match="does not take colour"):
        build_dataset("synthetic", colour=1)


# ------------------------------------------------------------------------------------------------ synthetic
def test_synthetic_shapes_balance_determinism():
    kw = dict(classes=7, train_per_class=9, test_per_class=4, dim=16)
    a, b, c = (build_dataset("synthetic", seed=s, **kw) for s in (3, 3, 4))
    t = a.tensors
    assert a.num_classes == 7 and a.input_shape == (16,) and t.train_x.shape == (63, 16) and t.test_x.shape == (28, 16)
    assert t.train_x.dtype == torch.float32 and t.train_y.dtype == torch.int64
    assert np.bincount(a.train_targets).tolist() == [9] * 7 and np.bincount(t.test_y.numpy()).tolist() == [4] * 7
    assert (t.mean, t.std, t.augment) == (None, None, None)
    torch.testing.assert_close(t.train_x.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.train_x.std(0, unbiased=False), torch.ones(16), atol=1e-4, rtol=0)
    torch.testing.assert_close(t.train_x, b.tensors.train_x, rtol=0, atol=0)
    torch.testing.assert_close(t.test_x, b.tensors.test_x, rtol=0, atol=0)
    assert not torch.allclose(t.train_x, c.tensors.train_x)
    x, y = a.train[10]
    assert x.shape == (16,) and int(y) == 1


@pytest.mark.parametrize("k", [1, 10001, 2.5, True])
def test_synthetic_class_bounds(k):
    with pytest.raises(ValueError, match=r"classes=.*\[2, 10000\]"):
        build_dataset("synthetic", classes=k, train_per_class=1, test_per_class=1)
    with pytest.raises(ValueError, match=r"\[2, 10000\]"):
        dataset_num_classes("synthetic", classes=k)


def test_synthetic_bounds_and_other_args():
    tiny = build_dataset("synthetic", classes=2, train_per_class=1, test_per_class=1, dim=3)
    assert tiny.tensors.train_x.shape == (2, 3)
    with pytest.raises(ValueError, match="train_per_class=0"):
        build_dataset("synthetic", train_per_class=0)
    with pytest.raises(ValueError, match="sigma=-1"):
        build_dataset("synthetic", sigma=-1.0)


def test_synthetic_easy_is_the_generator_at_sigma_one():
    from robustloss_core.config import TrainConfig

    kw = dict(classes=4, train_per_class=6, test_per_class=3, dim=8)
    easy, ref = build_dataset("synthetic-easy", seed=2, **kw), build_dataset("synthetic", seed=2, sigma=1.0, **kw)
    assert easy.name == "synthetic-easy" and easy.info["sigma"] == 1.0
    for a, b in ((easy.tensors.train_x, ref.tensors.train_x), (easy.tensors.test_x, ref.tensors.test_x)):
        assert torch.equal(a, b)
    same = build_dataset("synthetic-easy", seed=2, sigma=2.0, **kw)      # same keyword arguments accepted
    assert torch.equal(same.tensors.train_x, build_dataset("synthetic", seed=2, **kw).tensors.train_x)
    assert dataset_num_classes("synthetic-easy", classes=7) == 7 and ds.preset_dataset("synthetic-easy") == "synthetic"
    got, want = (TrainConfig(dataset=n, epochs=3).resolved().to_dict() for n in ("synthetic-easy", "synthetic"))
    assert {**got, "dataset": "synthetic"} == want                          # the synthetic presets
    # nearest class mean on the features at K = 10: 98.5 % here, 73.5 % at the default sigma 2
    t = build_dataset("synthetic-easy", seed=0).tensors
    centroids = torch.stack([t.train_x[t.train_y == k].mean(0) for k in range(10)])
    assert (torch.cdist(t.test_x, centroids).argmin(1) == t.test_y).float().mean().item() > 0.95


@pytest.mark.parametrize("sigma", [4.0, 6.0])
def test_oracle_matches_the_two_class_closed_form(sigma):
    """K = 2: the nearest-prototype rule errs when the noise's projection on μ1 − μ2 exceeds half the
    distance: accuracy Φ(‖μ1 − μ2‖ / (2σ)) for the generator's prototypes (its first draw)."""
    mu = np.random.default_rng(5).standard_normal((2, 32))
    phi = 0.5 * (1 + math.erf(np.linalg.norm(mu[0] - mu[1]) / (2 * sigma) / math.sqrt(2)))
    got = ds.synthetic_oracle_top1(2, sigma, samples=200_000, seed=5)
    assert 0.7 < phi < 0.95 and abs(got - 100 * phi) < 0.4        # s.e. ≤ 0.1 percentage points
    assert ds.synthetic_oracle_top1(2, sigma, samples=200_000, seed=5) == got
    with pytest.raises(ValueError, match="sigma=0"):
        ds.synthetic_oracle_top1(10, 0)


def test_synthetic_default_difficulty():
    """Learnable but not separable at K = 10: a nearest-class-mean classifier on the features lands between
    chance and 100 %."""
    b = build_dataset("synthetic", seed=0)
    t = b.tensors
    centroids = torch.stack([t.train_x[t.train_y == k].mean(0) for k in range(10)])
    acc = (torch.cdist(t.test_x, centroids).argmin(1) == t.test_y).float().mean().item()
    assert 0.4 < acc < 0.95
    assert t.train_x.shape == (500, 128) and t.test_x.shape == (200, 128)


# ------------------------------------------------------------------------------------- on-device augmentation
def images(n=6, c=3, h=8, w=8, seed=0):
    return torch.randint(1, 256, (n, c, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def crops(x: torch.Tensor, pad: int):
    """All padded windows of one image [C, H, W]."""
    xp = F.pad(x, (pad,) * 4)
    h, w = x.shape[-2:]
    return [xp[:, i:i + h, j:j + w] for i, j in itertools.product(range(2 * pad + 1), repeat=2)]


@pytest.mark.parametrize("kind", ["cifar10", "cifar100", "fashionmnist"])   # the AUGMENTATIONS names
def test_augment_shape_dtype_determinism(kind):
    x = images(c=1 if "mnist" in kind else 3)
    a = augment_batch(x, kind, torch.Generator().manual_seed(5))
    b = augment_batch(x, kind, torch.Generator().manual_seed(5))
    c = augment_batch(x, kind, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    xf = x.float() / 255
    af = augment_batch(xf, kind, torch.Generator().manual_seed(5))
    assert af.dtype == torch.float32 and torch.equal(af, a.float() / 255)   # same draws, dtype-independent


def test_augment_cifar10_is_flip_and_crop():
    x = images(n=8)
    out = augment_batch(x, "cifar10", torch.Generator().manual_seed(0))
    flipped = 0
    for i in range(len(x)):
        plain = any(torch.equal(out[i], w) for w in crops(x[i], 4))
        mirrored = any(torch.equal(out[i], w) for w in crops(x[i].flip(-1), 4))
        assert plain or mirrored
        flipped += mirrored and not plain
    assert 0 < flipped < len(x)   # P(all same) = 2/2^8


def test_random_flip_flips():
    x = images(n=400, h=4, w=4)
    assert torch.equal(random_flip(x, torch.Generator().manual_seed(0), p=1.0), x.flip(-1))
    assert torch.equal(random_flip(x, torch.Generator().manual_seed(0), p=0.0), x)
    out = random_flip(x, torch.Generator().manual_seed(1))
    is_flip = (out == x.flip(-1)).flatten(1).all(1)
    assert ((out == x).flatten(1).all(1) | is_flip).all()
    assert abs(is_flip.float().mean().item() - 0.5) < 4 * 0.025


def test_random_crop_windows_and_offsets():
    x = images(n=300, c=2, h=5, w=5)
    out = random_crop(x, 2, torch.Generator().manual_seed(3))
    hits = []
    for i in range(len(x)):
        ws = crops(x[i], 2)
        k = [j for j, w in enumerate(ws) if torch.equal(out[i], w)]
        assert k
        hits.append(k[0])
    assert len(set(hits)) == 25   # all 5×5 offsets occur
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)


def test_rotation_matches_torchvision():
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    x = images(n=3, h=9, w=9)
    for deg in (90.0, 12.0, -15.0):
        got = rotate_batch(x, torch.full((3,), deg))
        assert torch.equal(got, TF.rotate(x, deg, interpolation=InterpolationMode.NEAREST))
    assert torch.equal(rotate_batch(x, torch.zeros(3)), x)
    assert torch.equal(rotate_batch(x, torch.full((3,), 90.0)), torch.rot90(x, 1, (-2, -1)))


def test_normalize_batch_and_bad_kind():
    x = images(n=2)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    ref = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize_batch(x, mean, std), ref)
    torch.testing.assert_close(normalize_batch(x.float() / 255, mean, std), ref)
    f = torch.randn(4, 5)
    assert normalize_batch(f, None, None) is f
    assert augment_batch(x, None) is x
    with pytest.raises(ValueError, match="'jitter'"):
        augment_batch(x, "jitter")


def test_fashionmnist_gz_reader_roundtrip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(p, "wb") as f:
        f.write((2051).to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in arr.shape) + arr.tobytes())
    np.testing.assert_array_equal(ds.read_idx(p, 3), arr)


def test_build_dataset_cache_shares_in_memory_bundles_within_a_budget(monkeypatch, cifar10_root):
    """cache=True returns the bundle an identical earlier call built (what a reused Ray worker's trials
    share), a new one for other arguments, and drops the least recently used past CACHE_BYTES."""
    monkeypatch.setattr(ds, "_cache", {})
    a = ds.build_dataset("synthetic", seed=0, cache=True, classes=4, train_per_class=5)
    assert ds.build_dataset("synthetic", seed=0, cache=True, classes=4, train_per_class=5) is a
    assert ds.build_dataset("synthetic", seed=0, classes=4, train_per_class=5) is not a   # cache=False
    b = ds.build_dataset("synthetic", seed=1, cache=True, classes=4, train_per_class=5)
    assert b is not a and not torch.equal(a.tensors.train_x, b.tensors.train_x)
    root, _ = cifar10_root
    c = ds.build_dataset("cifar10", root, cache=True)   # read from files once, then shared
    assert ds.build_dataset("cifar10", root, cache=True) is c
    size = ds._tensor_bytes(a)
    monkeypatch.setattr(ds, "CACHE_BYTES", size * 2 + ds._tensor_bytes(c) - 1)
    ds.build_dataset("synthetic", seed=1, cache=True, classes=4, train_per_class=5)   # b: most recent
    ds.build_dataset("synthetic", seed=2, cache=True, classes=4, train_per_class=5)   # over budget: a goes
    assert ds.build_dataset("synthetic", seed=1, cache=True, classes=4, train_per_class=5) is b
    assert ds.build_dataset("synthetic", seed=0, cache=True, classes=4, train_per_class=5) is not a
