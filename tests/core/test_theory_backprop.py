"""Eq. 3 (theory.backprop): <delta_y>(z) against theory.md's reference table, reference-params.md's
published settings and independent Monte Carlo / autograd computations."""
import json
import math
import time

import numpy as np
import pytest
import torch
from scipy import special

from robustloss_core import theory as T
from robustloss_core.losses import build_loss

# theory.md, "Reference values (sigma = 1 ... +-0.001 absolute)": (K, z) -> (CE, MAE, GCE q=0.7)
REFERENCE_TABLE = {
    (10, 0): (-0.928, -0.133, -0.145), (10, 2): (-0.644, -0.443, -0.303),
    (100, 0): (-0.994, -0.0123, -0.0282), (100, 4): (-0.747, -0.377, -0.285),
    (1000, 0): (-0.9994, -0.0012, -0.0056), (1000, 4): (-0.968, -0.062, -0.087),
}


@pytest.mark.parametrize("k,z", sorted(REFERENCE_TABLE))
def test_reference_table(k, z):
    for (name, params), ref in zip((("ce", None), ("mae", None), ("gce", {"q": 0.7})), REFERENCE_TABLE[(k, z)]):
        c = T.mean_backprop_error(name, k, z, params=params)
        assert c.method == "py"
        assert abs(float(c) - ref) <= 3 * c.stderr[0] + 1e-3, (name, k, z, float(c), ref)


def test_k2_closed_form():
    """K = 2, CE: <delta_y>(z) = E[sigmoid(z - g)] - 1, g ~ N(0, sigma^2), by Gauss-Hermite (no sampling)."""
    x, w = np.polynomial.hermite_e.hermegauss(120)
    w = w / w.sum()
    z = np.array([-3.0, 0.0, 1.5, 6.0])
    for sigma in (0.5, 2.0):
        want = np.array([np.dot(w, special.expit(zi - sigma * x)) for zi in z]) - 1
        c = T.mean_backprop_error("ce", 2, z, sigma=sigma)
        assert np.all(np.abs(c.mean - want) <= 4 * c.stderr + 1e-8)


def _torch_mc(name, k, z, params, sigma, n=4000, seed=123):
    """Independent estimate: fresh torch normals, autograd through the loss at every z."""
    loss = build_loss(name, k, **params)
    g = torch.Generator().manual_seed(seed)
    base = sigma * torch.randn(n, k, generator=g, dtype=torch.float64)
    out = []
    for zi in np.atleast_1d(z):
        x = base.clone()
        x[:, 0] = float(zi)
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss.per_example(x, torch.zeros(n, dtype=torch.long)).sum(), x)
        out.append(float(grad[:, 0].mean()))
    return np.array(out)


@pytest.mark.parametrize("name,params,k,sigma", [
    ("gce", {"q": 0.7}, 100, 2.6), ("nce_agce", {"alpha": 10, "beta": 0.1, "a": 1.8, "q": 3}, 100, 1.0),
    ("nfl_mae", {"alpha": 10, "beta": 1, "gamma": 0.5}, 10, 0.25), ("bitemp", {"t1": 0.8, "t2": 1.2}, 10, 1.0),
])
def test_against_torch_monte_carlo(name, params, k, sigma):
    z = [-1.0, 0.0, 2.0, 5.0]
    ours = T.mean_backprop_error(name, k, z, params=params, sigma=sigma, samples=4000)
    mc = _torch_mc(name, k, z, params, sigma)
    assert np.all(np.abs(ours.mean - mc) <= 0.03 * np.abs(mc) + 4 * ours.stderr + 1e-4), (ours.mean, mc)


def test_autograd_method_uses_the_same_draws():
    params = {"alpha": 10, "beta": 0.1, "a": 1.8, "q": 3}
    closed = T.mean_backprop_error("nce_agce", 100, [-1.0, 2.0], params=params, samples=2000, seed=3)
    auto = T.mean_backprop_error("nce_agce", 100, [-1.0, 2.0], params=params, samples=2000, seed=3, method="autograd")
    assert closed.method == "delta" and auto.method == "autograd"
    assert np.allclose(closed.mean, auto.mean, rtol=1e-6, atol=1e-9)
    pooled = T.mean_backprop_error("gce", 100, 0.5, params={"q": 0.7}, samples=2000, seed=3)
    full = T.mean_backprop_error("gce", 100, 0.5, params={"q": 0.7}, samples=2000, seed=3, method="delta")
    assert float(pooled) == pytest.approx(float(full), rel=1e-5)   # the ln S pool = the full vectors' draws


# reference-params.md, "<delta_y>(z_y = 0) of published settings (derived), K = 10 / 100 / 1000"
PUBLISHED = [
    ("nce_mae", {"alpha": 1, "beta": 1}, (-0.100, -0.0081, -0.00074)),
    ("nce_mae", {"alpha": 10, "beta": 1}, (-0.402, -0.0256, -0.00196)),
    ("nfl_mae", {"alpha": 10, "beta": 1, "gamma": 0.5}, (-0.436, -0.0259, -0.00196)),
    ("nce_agce", {"alpha": 1, "beta": 4, "a": 6, "q": 1.5}, (-0.689, -0.0622, -0.0061)),
    ("agce", {"a": 0.6, "q": 0.6}, (-0.0775, -0.0075, -0.00075)),
    ("sce", {"alpha": 0.1, "beta": 1, "A": -4}, (-0.359, -0.124, -0.102)),
]


@pytest.mark.parametrize("name,params,refs", PUBLISHED)
def test_published_settings(name, params, refs):
    for k, ref in zip((10, 100, 1000), refs):   # printed to 2-3 digits: 1.5 % (+3 s.e.)
        c = T.mean_backprop_error(name, k, 0.0, params=params, samples=None if k < 1000 else 1000)
        assert abs(float(c) - ref) <= 0.015 * abs(ref) + 3 * c.stderr[0], (name, k, float(c), ref)


def test_deterministic_and_logit_bias_compensated():
    z = np.linspace(-2, 6, 7)
    a = T.mean_backprop_error("gce", 100, z, params={"q": 0.7}, seed=11)
    b = T.mean_backprop_error(build_loss("gce", 100, q=0.7), 100, z, seed=11)
    c = T.mean_backprop_error("gce", 100, z, params={"q": 0.7}, seed=12)
    assert np.array_equal(a.mean, b.mean) and not np.array_equal(a.mean, c.mean)
    assert np.all(np.abs(a.mean - c.mean) < 5 * np.hypot(a.stderr, c.stderr))
    plain = T.mean_backprop_error("nce_mae", 10, [0.0, 3.0], params={"alpha": 1, "beta": 1}, samples=1000)
    biased = T.mean_backprop_error(build_loss("nce_mae", 10, logit_bias=2.5, alpha=1, beta=1), 10, [0.0, 3.0],
                                   samples=1000)
    assert np.allclose(plain.mean, biased.mean, rtol=1e-9, atol=1e-12)   # z is the loss-input logit
    d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    assert d["loss"] == "gce" and len(d["mean"]) == 7 and d["params"] == {"q": 0.7}
    with pytest.raises(TypeError):
        float(a)


def test_curve_speed_p_y_only():
    T.mean_backprop_error("gce", 1000, 0.0, params={"q": 0.7})   # the pool is drawn once, then reused
    t0 = time.perf_counter()
    T.mean_backprop_error("gce", 1000, np.linspace(-4, 12, 200), params={"q": 0.7})
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("kwargs,match", [
    ({"num_classes": 1}, "num_classes"), ({"sigma": 0.0}, "sigma"), ({"sigma": math.nan}, "sigma"),
    ({"method": "bogus"}, "method"), ({"samples": 2}, "samples"), ({"loss": "nope"}, "unknown"),
    ({"loss": "nce", "method": "py"}, "p_y only"), ({"z": [0.0, float("nan")]}, "non-finite"),
])
def test_bad_input(kwargs, match):
    args = {"loss": "ce", "num_classes": 10, "z": 0.0, **kwargs}
    with pytest.raises(ValueError, match=match) as err:
        T.mean_backprop_error(args.pop("loss"), args.pop("num_classes"), args.pop("z"), **args)
    assert "\n" not in str(err.value)
