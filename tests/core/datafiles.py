"""Tiny datasets in the real on-disk formats (torchvision's / WebVision's / ImageFolder) + fixtures writing them.

Not a conftest.py: tests/services import the top-level `conftest` by name, a second one would shadow it."""
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 3, seed: int = 0) -> dict:
    """cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}; returns the arrays written."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        xs.append(x), ys.extend(y)
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump({"batch_label": f"training batch {i} of 5", "labels": y, "data": x,
                         "filenames": [f"img{i}_{j}.png" for j in range(per_batch)]}, f)
    tx, ty = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), rng.integers(0, 10, n_test).tolist()
    with open(d / "test_batch", "wb") as f:   # bytes keys, as the python-2 originals decode with latin1
        pickle.dump({b"labels": ty, b"data": tx}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"], "num_cases_per_batch": per_batch}, f)
    return {"train_x": np.concatenate(xs).reshape(-1, 3, 32, 32), "train_y": np.array(ys),
            "test_x": tx.reshape(-1, 3, 32, 32), "test_y": np.array(ty)}


def write_cifar100(root: Path, n_train: int = 10, n_test: int = 5, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, fine = rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 100, n)
        coarse = rng.integers(0, 20, n)   # deliberately unrelated: the loader must use fine_labels
        with open(d / split, "wb") as f:
            pickle.dump({"filenames": [f"{split}{j}.png" for j in range(n)], "fine_labels": fine.tolist(),
                         "coarse_labels": coarse.tolist(), "data": x}, f)
        out[f"{split}_x"], out[f"{split}_y"] = x.reshape(-1, 3, 32, 32), fine
    with open(d / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)],
                     "coarse_label_names": [f"s{i}" for i in range(20)]}, f)
    return out


def _idx_bytes(arr: np.ndarray) -> bytes:
    magic = {3: 2051, 1: 2049}[arr.ndim]
    head = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def write_fmnist(root: Path, gz: bool, n_train: int = 6, n_test: int = 4, seed: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    d = root / "FashionMNIST" / "raw"
    d.mkdir(parents=True)
    arrays = {"train_x": rng.integers(0, 256, (n_train, 28, 28)), "train_y": rng.integers(0, 10, n_train),
              "test_x": rng.integers(0, 256, (n_test, 28, 28)), "test_y": rng.integers(0, 10, n_test)}
    names = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
    for k, name in names.items():
        data = _idx_bytes(arrays[k])
        if gz:
            with gzip.open(d / (name + ".gz"), "wb") as f:
                f.write(data)
        else:
            (d / name).write_bytes(data)
    return arrays


def write_image(path: Path, size=(12, 10), color=(10, 200, 30)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


# train entries: (relative path, label); labels < 50 belong to mini-WebVision
WEBVISION_TRAIN = [("google/q0001/a.jpg", 0), ("google/q0001/b.jpg", 0), ("google/q0004/c.jpg", 3),
                   ("google/q0050/d.png", 49), ("google/q0051/e.jpg", 50), ("google/q1000/f.jpg", 999)]
# val entries: bare file names (images in val_images_256/) and one with the folder prefix
WEBVISION_VAL = [("val000001.jpg", 0), ("val_images_256/val000002.jpg", 49), ("val000003.jpg", 50),
                 ("val000004.jpg", 999)]


@pytest.fixture
def cifar10_root(tmp_path):
    return tmp_path, write_cifar10(tmp_path)


@pytest.fixture
def cifar100_root(tmp_path):
    return tmp_path, write_cifar100(tmp_path)


@pytest.fixture
def webvision_root(tmp_path):
    root = tmp_path / "webvision"
    (root / "info").mkdir(parents=True)
    for p, _ in WEBVISION_TRAIN:
        write_image(root / p)
    for p, _ in WEBVISION_VAL:
        write_image(root / "val_images_256" / Path(p).name, size=(9, 11))
    (root / "info" / "train_filelist_google.txt").write_text("".join(f"{p} {y}\n" for p, y in WEBVISION_TRAIN))
    (root / "info" / "val_filelist.txt").write_text("".join(f"{p} {y}\n" for p, y in WEBVISION_VAL) + "\n")
    return root


@pytest.fixture
def imagefolder_root(tmp_path):
    root = tmp_path / "folder"
    for cls, n in (("cat", 2), ("dog", 3), ("eel", 1)):
        for i in range(n):
            write_image(root / "train" / cls / f"{i}.png")
    write_image(root / "val" / "dog" / "0.jpg")
    write_image(root / "val" / "eel" / "0.JPG")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root
