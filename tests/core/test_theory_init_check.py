"""Appendix A.3 (theory.init_check): initial-logit statistics and the measured sigma of a model."""
import json
import math

import pytest
import torch

from robustloss_core import theory as T


def _linear_with_sigma(s: float, d: int = 512, k: int = 100) -> torch.nn.Linear:
    """Logits W x with W_ij ~ N(0, s^2 / d): N(0, s^2) on standard-normal inputs."""
    lin = torch.nn.Linear(d, k, bias=False)
    with torch.no_grad():
        lin.weight.normal_(0.0, s / math.sqrt(d), generator=torch.Generator().manual_seed(0))
    return lin


@pytest.mark.parametrize("s", [0.25, 1.0, 2.6])
def test_measure_sigma_known_sigma(s):
    x = torch.randn(256, 512, generator=torch.Generator().manual_seed(1))
    assert T.measure_sigma(_linear_with_sigma(s), x) == pytest.approx(s, rel=0.10)
    assert T.measure_sigma(_linear_with_sigma(s), (x, torch.zeros(256))) == pytest.approx(s, rel=0.10)


def test_measure_sigma_uses_batch_statistics():
    """Linear(64) with std-5 weights -> BatchNorm -> Linear with N(0, s^2 / 64) weights: with the batch's
    statistics (the first training step) sigma ~ s; eval mode with fresh running stats gives ~5 s. The
    model's running statistics and mode are untouched."""
    g = torch.Generator().manual_seed(2)
    first, head = torch.nn.Linear(64, 64), torch.nn.Linear(64, 10, bias=False)
    with torch.no_grad():
        first.weight.normal_(0.0, 5.0 / 8.0, generator=g)
        head.weight.normal_(0.0, 0.5 / 8.0, generator=g)
    model = torch.nn.Sequential(first, torch.nn.BatchNorm1d(64), torch.nn.Dropout(0.5), head).eval()
    x = torch.randn(512, 64, generator=g)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert T.measure_sigma(model, x) == pytest.approx(0.5, rel=0.10)
    assert T.measure_sigma(model, x, batch_stats=False) == pytest.approx(2.5, rel=0.15)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model.training


def test_initial_logit_stats_exact_on_a_linear_layer():
    lin = torch.nn.Linear(3, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2, 0], [0, 0, -1], [1, 1, 1]]))
        lin.bias.copy_(torch.tensor([0.5, 0, 0, -1]))
    model = torch.nn.Sequential(lin, torch.nn.Dropout(0.9)).train()   # measured without dropout
    x = torch.arange(15, dtype=torch.float32).reshape(5, 3) / 7
    logits = (x @ lin.weight.T + lin.bias).detach().double()
    stats = T.initial_logit_stats(model, (x, torch.zeros(5)), bins=7)
    assert stats["mean"] == pytest.approx(float(logits.mean()), rel=1e-6)
    assert stats["std"] == pytest.approx(float(logits.std(unbiased=False)), rel=1e-6)
    assert sum(stats["hist_counts"]) == 20 and len(stats["hist_edges"]) == 8 and stats["shape"] == [5, 4]
    assert stats["hist_edges"][0] == pytest.approx(float(logits.min()), rel=1e-6)
    assert model.training   # the previous mode is restored
    json.dumps(stats)


def test_resnet_logits_with_batch_statistics():
    """A fresh ResNet-32 with BatchNorm in eval mode (running stats 0, 1) blows its logits up; with the
    batch's statistics they stay O(1)."""
    from robustloss_core.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet32", 10, (3, 32, 32))
    x = torch.randn(32, 3, 32, 32)
    train_like = T.initial_logit_stats(model, x)
    assert train_like["std"] < 10 and abs(train_like["mean"]) < 5
    assert T.initial_logit_stats(model, x, batch_stats=False)["std"] > 10 * train_like["std"]


@pytest.mark.parametrize("inputs,kwargs,match", [("not a tensor", {}, "inputs"),
                                                 (torch.zeros(2, 3), {"bins": 0}, "bins")])
def test_bad_input(inputs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        T.initial_logit_stats(torch.nn.Linear(3, 2), inputs, **kwargs)
    with pytest.raises(ValueError, match="non-finite"):
        T.measure_sigma(torch.nn.Linear(3, 2), torch.full((2, 3), float("inf")))
