"""The MLP1024 setup trains on normalised images only (paper A.1), the ResNet setups on augmented ones.

Found on the real Fashion-MNIST: the engine applied the ResNet flip + crop to MLP1024 runs, which slowed learning
(76.4 vs 84.7 test top-1 after one CE epoch) and kept CE from memorising noisy labels."""
import gzip

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustloss_core import datasets as ds
from robustloss_core import engine, models
from robustloss_core.config import TrainConfig


@pytest.mark.parametrize("model, expected", [("mlp1024", False), ("resnet32", True)])
def test_setup_decides_augmentation(model, expected):
    assert TrainConfig(dataset="fashionmnist", model=model).resolved().augment is expected
    assert TrainConfig(dataset="fashionmnist", model=model, augment=not expected).resolved().augment is (not expected)
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(dataset="fashionmnist", augment="yes").validate()


def _write_fmnist(root, n=64, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"train_x": rng.integers(0, 256, (n, 28, 28)), "train_y": np.arange(n) % 10,
              "test_x": rng.integers(0, 256, (20, 28, 28)), "test_y": np.arange(20) % 10}
    for key, arr in arrays.items():
        header = {3: 2051, 1: 2049}[arr.ndim].to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        with gzip.open(root / (ds._FMNIST_FILES[key] + ".gz"), "wb") as f:
            f.write(header + arr.astype(np.uint8).tobytes())
    return arrays


@pytest.mark.parametrize("augment", [False, True])
def test_mlp_epoch_loss_is_the_loss_on_unaugmented_images(tmp_path, augment):
    """lr ~ 0: the epoch's mean training loss is the initial network's CE on the training images, computed here
    independently on the normalised raw images; it matches without augmentation and not with it."""
    arrays = _write_fmnist(tmp_path)
    r = engine.train({"dataset": "fashionmnist", "data_root": str(tmp_path), "model": "mlp1024", "loss": "ce",
                      "lr": 1e-12, "momentum": 0.0, "epochs": 1, "batch_size": 16, "val_fraction": 0.0,
                      "device": "cpu", "seed": 3, "augment": augment})
    torch.manual_seed(3)
    net = models.build_model("mlp1024", 10, (1, 28, 28))
    x = ds.normalize_batch(torch.as_tensor(arrays["train_x"][:, None], dtype=torch.uint8), ds.FMNIST_MEAN,
                           ds.FMNIST_STD)
    with torch.no_grad():
        expected = F.cross_entropy(net(x), torch.as_tensor(arrays["train_y"])).item()
    assert (abs(r["train_loss"] - expected) < 1e-5) is (not augment), (r["train_loss"], expected)
