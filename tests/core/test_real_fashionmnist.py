"""The real Fashion-MNIST (Debian's dataset-fashion-mnist, /usr/share/datasets/fashion-mnist).

Skipped, with the reason, where the package is not installed (``.ci/run`` installs it as root with apt).
Nothing here downloads: the subset test writes a stratified slice of the real files in the same idx format."""
import gzip

import numpy as np
import pytest

from robustloss_core import datasets as ds
from robustloss_core import engine

SYSTEM = ds.spec("fashionmnist").system_root
needs_real = pytest.mark.skipif(ds._find_fmnist(SYSTEM) is None,
                                reason=f"real Fashion-MNIST not installed ({ds.spec('fashionmnist').install})")


@pytest.fixture
def no_root(tmp_path, monkeypatch):
    monkeypatch.delenv("ROBUSTLOSS_DATA_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)   # no ./data here


@needs_real
def test_default_root_is_the_system_package(no_root):
    assert ds.default_root("fashionmnist") == SYSTEM
    b = ds.build_dataset("fashionmnist")
    assert b.info["path"] == str(SYSTEM)
    assert (len(b.train_targets), len(b.test)) == (60_000, 10_000)
    # Fashion-MNIST is balanced: 6000 training and 1000 test images per class (Xiao et al. 2017)
    assert np.bincount(b.train_targets, minlength=10).tolist() == [6000] * 10
    assert np.bincount(b.tensors.test_y.numpy(), minlength=10).tolist() == [1000] * 10
    # the images' own mean/std match the normalisation constants (paper A.1: 0.2860, 0.3530)
    x = b.tensors.train_x.float() / 255
    assert abs(x.mean().item() - ds.FMNIST_MEAN[0]) < 5e-4 and abs(x.std().item() - ds.FMNIST_STD[0]) < 5e-4


def test_env_and_explicit_root_win_over_the_system_folder(no_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLOSS_DATA_ROOT", str(tmp_path / "elsewhere"))
    assert ds.default_root("fashionmnist") == tmp_path / "elsewhere"
    with pytest.raises(ds.DataRootError) as e:
        ds.build_dataset("fashionmnist", tmp_path / "empty")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "empty") in msg and "apt-get install dataset-fashion-mnist" in msg


def _write_idx(path, arr: np.ndarray) -> None:
    magic = {3: 2051, 1: 2049}[arr.ndim]
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@needs_real
def test_one_epoch_on_a_stratified_slice_of_the_real_images(tmp_path):
    real = ds._find_fmnist(SYSTEM)
    tx, ty = ds.read_idx(real["train_x"], 3), ds.read_idx(real["train_y"], 1)
    ex, ey = ds.read_idx(real["test_x"], 3), ds.read_idx(real["test_y"], 1)
    keep = np.concatenate([np.flatnonzero(ty == k)[:300] for k in range(10)])   # 300 per class
    for key, arr in (("train_x", tx[keep]), ("train_y", ty[keep]), ("test_x", ex[:2000]), ("test_y", ey[:2000])):
        _write_idx(tmp_path / (ds._FMNIST_FILES[key] + ".gz"), arr)
    r = engine.train({"dataset": "fashionmnist", "data_root": str(tmp_path), "model": "mlp1024", "loss": "ce",
                      "lr": 0.02, "batch_size": 32, "epochs": 1, "device": "cpu", "seed": 0})
    assert r["history"][0]["epoch"] == 1
    # chance is 10 %; one epoch (76 steps of 32) on 2430 real training images: a floor well below what it reaches
    assert r["test_top1"] >= 60.0, r["test_top1"]
