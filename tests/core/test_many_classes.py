"""The paper's central effect on the built-in data: at K = 1000 plain MAE stalls at chance while
MAE* (ε from Eq. 4) and CE learn, on the test set and on the validation hold-out (MLP1024, CPU, ~45 s).
README: "The many-class effect"."""
import pytest

from robustloss_core import engine, theory

K1000 = {"dataset": "synthetic", "dataset_args": {"classes": 1000, "train_per_class": 20, "test_per_class": 5},
         "lr": 0.1, "epochs": 5, "device": "cpu", "seed": 0}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_mae_stalls_at_1000_classes_while_mae_star_and_ce_learn():
    chance = 100 / 1000
    mae = engine.train({**K1000, "loss": "mae"})
    mae_star = engine.train({**K1000, "loss": "mae", "logit_bias": theory.logit_bias(1000)})
    ce = engine.train({**K1000, "loss": "ce"})
    assert mae["test_top1"] < 3 * chance  # measured 0.12 %
    assert mae_star["test_top1"] > 40 * chance  # measured 7.82 %
    assert ce["test_top1"] > 40 * chance  # measured 7.26 %
    # the practitioner's view, the 10 % validation hold-out (2 of 20 per class), shows the same
    assert mae["val_top1"] < 3 * chance  # measured 0.20 %
    assert mae_star["val_top1"] > 40 * chance and ce["val_top1"] > 40 * chance  # measured 7.50 %, 6.65 %
