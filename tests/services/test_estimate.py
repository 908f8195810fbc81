"""services/estimate.py: the time a sweep is expected to take, said before it starts."""
import pytest

from robustloss_core import presets
from services import estimate


def test_train_examples_count_the_training_split_only():
    assert estimate.train_examples("synthetic", {"classes": 100, "train_per_class": 50}, 0.1) == 4500
    assert estimate.train_examples("synthetic-easy", {"classes": 7}, 0.0) == 7 * 50   # the generator's default
    assert estimate.train_examples("cifar10", {}, 0.1) == 45_000
    assert estimate.train_examples("imagefolder", {}, 0.1) is None   # unknown until the folder is read


def test_sweep_seconds_rounds_trials_over_the_slots():
    rate = presets.THROUGHPUT[("mlp1024", "cpu")]["examples_per_second"]
    fixed = sum(presets.SWEEP_FIXED_SECONDS.values())
    per_trial = 5 * 9500 / rate
    eight, _ = estimate.sweep_seconds(trials=8, concurrency=2, epochs=5, examples=9500, model="mlp1024", device="cpu")
    nine, how = estimate.sweep_seconds(trials=9, concurrency=2, epochs=5, examples=9500, model="mlp1024", device="cpu")
    assert eight == pytest.approx(fixed + 4 * per_trial) and nine == pytest.approx(fixed + 5 * per_trial)
    assert "5 round(s) of 2 trial(s)" in how
    ddp, _ = estimate.sweep_seconds(trials=9, concurrency=2, epochs=5, examples=9500, model="mlp1024", device="cpu",
                                    num_workers=2)
    assert ddp == pytest.approx(nine + 5 * presets.TRAIN_RUN_SECONDS)   # one Train run per trial, per round
    assert estimate.sweep_seconds(trials=8, concurrency=2, epochs=5, examples=9500, model="resnet32", device="cuda") is None


@pytest.mark.parametrize("seconds, text", [(25.2, "~25 s"), (600, "~10 min"), (3 * 3600, "~3.0 h")])
def test_describe(seconds, text):
    assert estimate.describe(seconds) == text
