"""Tests of robustloss_core.theory against theory.md / reference-params.md and independent computations."""
import json
import math
import time

import numpy as np
import pytest
import torch
from scipy import special

from robustloss_core import theory as T
from robustloss_core.losses import build_loss

# ------------------------------------------------------------------ Eq. 3: mean back-prop error

# theory.md, "Reference values (sigma = 1 ... +-0.001 absolute)": (K, z) -> (CE, MAE, GCE q=0.7)
REFERENCE_TABLE = {
    (10, 0): (-0.928, -0.133, -0.145),
    (10, 2): (-0.644, -0.443, -0.303),
    (100, 0): (-0.994, -0.0123, -0.0282),
    (100, 4): (-0.747, -0.377, -0.285),
    (1000, 0): (-0.9994, -0.0012, -0.0056),
    (1000, 4): (-0.968, -0.062, -0.087),
}


@pytest.mark.parametrize("k,z", sorted(REFERENCE_TABLE))
def test_reference_table(k, z):
    for (name, params), ref in zip((("ce", None), ("mae", None), ("gce", {"q": 0.7})), REFERENCE_TABLE[(k, z)]):
        c = T.mean_backprop_error(name, k, z, params=params)
        assert c.method == "py"
        assert abs(float(c) - ref) <= 3 * c.stderr[0] + 1e-3, (name, k, z, float(c), ref)


@pytest.mark.parametrize("k", [10, 100, 1000])
def test_py_path_matches_exact_quadrature(k):
    """The Monte Carlo pool against E[p^a] from the Laplace-transform quadrature (no sampling):
    CE = E[p] - 1, MAE = -2(E[p] - E[p^2]), GCE = -(E[p^q] - E[p^(q+1)])."""
    z = np.array([-2.0, 0.0, 2.0, 4.0])
    p1, p2 = T.mean_py_power(k, z), T.mean_py_power(k, z, power=2)
    q = 0.7
    exact = {"ce": p1 - 1, "mae": -2 * (p1 - p2),
             "gce": -(T.mean_py_power(k, z, power=q) - T.mean_py_power(k, z, power=q + 1))}
    for name, want in exact.items():
        c = T.mean_backprop_error(name, k, z, params={"q": q} if name == "gce" else None)
        zscore = (c.mean - want) / c.stderr
        assert np.all(np.abs(zscore) < 4.5), (name, k, zscore)
        assert np.all(c.stderr < 2e-3 * np.abs(want) + 1e-6)   # and the error bars are tight


def test_mean_py_power_closed_form_k2():
    """K = 2: p_y = sigmoid(z - g), g ~ N(0,1): E[p_y | z] by Gauss-Hermite, independent of the Laplace trick."""
    x, w = np.polynomial.hermite_e.hermegauss(120)
    w = w / w.sum()
    for z in (-3.0, 0.0, 1.5, 6.0):
        want = float(np.dot(w, special.expit(z - x)))
        assert T.mean_py_power(2, z)[0] == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("name,params", [
    ("gce", {"q": 0.7}), ("nce_mae", {"alpha": 10, "beta": 1}),
    ("nce_agce", {"alpha": 10, "beta": 0.1, "a": 1.8, "q": 3}), ("nfl_mae", {"alpha": 10, "beta": 1, "gamma": 0.5}),
])
@pytest.mark.parametrize("k", [10, 100])
def test_autograd_agrees_with_closed_form(name, params, k):
    z = [-1.0, 0.0, 2.0]
    closed = T.mean_backprop_error(name, k, z, params=params, samples=2000, seed=3)
    auto_same = T.mean_backprop_error(name, k, z, params=params, samples=2000, seed=3, method="autograd")
    auto_other = T.mean_backprop_error(name, k, z, params=params, samples=2000, seed=4, method="autograd")
    assert auto_same.method == "autograd" and closed.method in ("py", "delta")
    # same seed = same draws (also between the ln S pool and full vectors): agreement to rounding
    assert np.allclose(closed.mean, auto_same.mean, rtol=1e-6, atol=1e-9)
    # independent draws: statistical agreement
    assert np.all(np.abs(closed.mean - auto_other.mean) <= 3 * np.hypot(closed.stderr, auto_other.stderr) + 1e-12)


# reference-params.md, "<delta_y>(z_y = 0) of published settings (derived), K = 10 / 100 / 1000"
PUBLISHED = [
    ("nce_mae", {"alpha": 1, "beta": 1}, (-0.100, -0.0081, -0.00074)),
    ("nce_mae", {"alpha": 10, "beta": 1}, (-0.402, -0.0256, -0.00196)),
    ("nfl_mae", {"alpha": 10, "beta": 1, "gamma": 0.5}, (-0.436, -0.0259, -0.00196)),
    ("nce_agce", {"alpha": 1, "beta": 4, "a": 6, "q": 1.5}, (-0.689, -0.0622, -0.0061)),
    ("agce", {"a": 0.6, "q": 0.6}, (-0.0775, -0.0075, -0.00075)),
    ("sce", {"alpha": 0.1, "beta": 1, "A": -4}, (-0.359, -0.124, -0.102)),
    ("mae", {}, (-0.133, -0.0123, -0.00122)),
]


@pytest.mark.parametrize("name,params,refs", PUBLISHED)
def test_published_settings(name, params, refs):
    # the table is printed to 2-3 significant digits: 1.5 % relative (+3 s.e.)
    for k, ref in zip((10, 100, 1000), refs):
        c = T.mean_backprop_error(name, k, 0.0, params=params)
        assert abs(float(c) - ref) <= 0.015 * abs(ref) + 3 * c.stderr[0], (name, k, float(c), ref)


def test_nce_agce_cifar100_reference_value():
    c = T.mean_backprop_error("nce_agce", 100, 0.0, params={"alpha": 10, "beta": 0.1, "a": 1.8, "q": 3})
    assert float(c) == pytest.approx(-0.02145, abs=3 * c.stderr[0] + 5e-5)


def test_deterministic_for_seed_and_loss_object():
    z = np.linspace(-2, 6, 7)
    a = T.mean_backprop_error("gce", 100, z, params={"q": 0.7}, seed=11)
    b = T.mean_backprop_error(build_loss("gce", 100, q=0.7), 100, z, seed=11)
    c = T.mean_backprop_error("gce", 100, z, params={"q": 0.7}, seed=12)
    assert np.array_equal(a.mean, b.mean) and np.array_equal(a.stderr, b.stderr)
    assert not np.array_equal(a.mean, c.mean)
    assert np.all(np.abs(a.mean - c.mean) < 5 * np.hypot(a.stderr, c.stderr))
    f1 = T.mean_backprop_error("nce_mae", 100, z, params={"alpha": 10, "beta": 1}, seed=5, samples=500)
    f2 = T.mean_backprop_error("nce_mae", 100, z, params={"alpha": 10, "beta": 1}, seed=5, samples=500)
    assert np.array_equal(f1.mean, f2.mean)


def test_logit_bias_of_loss_object_is_compensated():
    """z is the loss-input logit: a RobustLoss carrying a bias gives the same curve as one without."""
    z = [0.0, 3.0]
    plain = T.mean_backprop_error("nce_mae", 10, z, params={"alpha": 1, "beta": 1}, samples=1000)
    biased = T.mean_backprop_error(build_loss("nce_mae", 10, logit_bias=2.5, alpha=1, beta=1), 10, z, samples=1000)
    assert np.allclose(plain.mean, biased.mean, rtol=1e-9, atol=1e-12)


def test_error_curve_api():
    c = T.mean_backprop_error("ce", 10, 0.5)
    assert isinstance(float(c), float) and c.z.shape == (1,)
    arr = T.mean_backprop_error("ce", 10, [0.0, 1.0])
    with pytest.raises(TypeError):
        float(arr)
    d = json.loads(json.dumps(arr.to_dict()))
    assert d["loss"] == "ce" and len(d["mean"]) == 2 and d["num_classes"] == 10


def test_curve_speed_p_y_only():
    T.mean_backprop_error("gce", 1000, 0.0, params={"q": 0.7})   # the pool is drawn once, then reused
    t0 = time.perf_counter()
    T.mean_backprop_error("gce", 1000, np.linspace(-4, 12, 200), params={"q": 0.7})
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("kwargs,match", [
    ({"num_classes": 1}, "num_classes"), ({"sigma": 0.0}, "sigma"), ({"method": "bogus"}, "method"),
    ({"samples": 2}, "samples"), ({"loss": "nope"}, "unknown"), ({"loss": "nce", "method": "py"}, "p_y only"),
    ({"z": [0.0, float("nan")]}, "non-finite"),
])
def test_mean_backprop_error_bad_input(kwargs, match):
    args = {"loss": "ce", "num_classes": 10, "z": 0.0, **kwargs}
    with pytest.raises(ValueError, match=match) as err:
        T.mean_backprop_error(args.pop("loss"), args.pop("num_classes"), args.pop("z"), **args)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ Eq. 4: logit bias

EPS_TABLE = {  # reference-params.md (c x K)
    0.2: (0.930, 3.433, 5.756), 0.25: (1.272, 3.769, 6.090), 0.3: (1.574, 4.066, 6.387), 0.5: (2.616, 5.087, 7.406),
}


@pytest.mark.parametrize("c", sorted(EPS_TABLE))
def test_logit_bias_table(c):
    eps = [T.logit_bias(k, c=c) for k in (10, 100, 1000)]
    assert np.allclose(eps, EPS_TABLE[c], atol=0.02), (c, eps)
    assert eps[0] < eps[1] < eps[2]
    for k, e in zip((10, 100, 1000), eps):
        assert T.expected_py(k, e) == pytest.approx(c, abs=1e-8)


def test_logit_bias_increasing_and_asymptote():
    ks = [2, 3, 5, 10, 30, 100, 300, 1000, 3000, 10000]
    eps = [T.logit_bias(k) for k in ks]
    assert all(b > a for a, b in zip(eps, eps[1:]))
    psi = -1.315   # reference-params.md: psi(0.25)
    assert T.logit_bias(10000) == pytest.approx(math.log(9999 * math.sqrt(math.e)) + psi, abs=0.01)
    assert T.logit_bias_asymptote(10000) == pytest.approx(math.log(9999 * math.sqrt(math.e)) + psi, abs=2e-3)


def test_logit_bias_k2_closed_form():
    """K = 2: E[sigmoid(z_y - z_1)] = c with z_y - z_1 ~ N(eps, 2 sigma^2): a 1-D Gauss-Hermite root."""
    x, w = np.polynomial.hermite_e.hermegauss(120)
    w = w / w.sum()
    for c, sigma in ((0.25, 1.0), (0.6, 0.5)):
        eps = T.logit_bias(2, c=c, sigma=sigma)
        assert float(np.dot(w, special.expit(eps + math.sqrt(2) * sigma * x))) == pytest.approx(c, abs=1e-9)


def test_logit_bias_against_naive_monte_carlo():
    """The paper's procedure (sample Gaussians) at the solved epsilon gives E[p_y] = c within MC error."""
    rng = np.random.default_rng(123)
    for k, sigma in ((10, 1.0), (100, 1.5)):
        eps = T.logit_bias(k, c=0.3, sigma=sigma)
        zl = sigma * rng.standard_normal((100_000, k))
        zl[:, 0] += eps
        p = special.softmax(zl, axis=1)[:, 0]
        assert abs(p.mean() - 0.3) < 4 * p.std() / math.sqrt(p.size)


def test_logit_bias_speed():
    T._py_table.cache_clear()
    t0 = time.perf_counter()
    T.logit_bias(1000, c=0.37)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("kwargs,match", [
    ({"c": 0.0}, "c="), ({"c": 1.0}, "c="), ({"c": -0.2}, "c="), ({"num_classes": 1}, "num_classes"),
    ({"num_classes": 10.5}, "num_classes"), ({"sigma": -1.0}, "sigma"),
])
def test_logit_bias_bad_input(kwargs, match):
    args = {"num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match) as err:
        T.logit_bias(args.pop("num_classes"), **args)
    assert "\n" not in str(err.value)


def test_logit_bias_schedule():
    eps = T.logit_bias(1000)
    s = T.logit_bias_schedule(1000)
    assert s["hold"] == 11 and len(s["values"]) == 6
    assert s["values"][0] == pytest.approx(eps) and s["values"][-1] == pytest.approx(eps / 6)
    assert np.all(np.diff(s["values"]) < 0)
    s2 = T.logit_bias_schedule(100, steps=3, hold=5, low=0.0)
    assert s2 == {"values": pytest.approx([T.logit_bias(100), T.logit_bias(100) / 2, 0.0]), "hold": 5}
    json.dumps(s)
    with pytest.raises(ValueError, match="steps"):
        T.logit_bias_schedule(10, steps=0)


# ------------------------------------------------------------------ calibration

def test_calibrate_gce_k1000_from_k100():
    cal = T.calibrate("gce", 1000, reference_classes=100, reference_params={"q": 0.7}, free="q")
    assert 0 < cal.params["q"] < 0.7
    assert cal.params["q"] == pytest.approx(0.482, abs=0.004)
    # recompute both sides independently with mean_backprop_error at the same seed
    target = float(T.mean_backprop_error("gce", 100, 0.0, params={"q": 0.7}, seed=0))
    achieved = float(T.mean_backprop_error("gce", 1000, 0.0, params={"q": cal.params["q"]}, seed=0))
    assert target == pytest.approx(-0.02823, abs=5e-5)
    assert abs(achieved - target) <= 1e-4 * abs(target)
    assert cal.target == pytest.approx(target, rel=1e-12) and cal.residual < 1e-4
    assert not cal.trivial and cal.shape_mismatch > 0.05
    d = json.loads(json.dumps(cal.to_dict(), allow_nan=False))
    assert d["free"] == ["q"] and d["reference_classes"] == 100


def test_calibrate_gce_k1000_from_k10():
    cal = T.calibrate("gce", 1000, reference_classes=10, reference_params={"q": 0.7}, free="q")
    assert cal.params["q"] == pytest.approx(0.261, abs=0.004)


def test_calibrate_nce_agce_a():
    ref = {"alpha": 10, "beta": 0.1, "a": 1.8, "q": 3}
    cal = T.calibrate("nce_agce", 1000, reference_classes=100, reference_params=ref, free="a")
    assert cal.params["a"] == pytest.approx(18.2, rel=0.05)
    assert cal.params["alpha"] == 10 and cal.params["beta"] == 0.1 and cal.params["q"] == 3
    achieved = float(T.mean_backprop_error("nce_agce", 1000, 0.0, params=cal.params, seed=0))
    assert abs(achieved - cal.target) <= 1e-4 * abs(cal.target)
    # several free parameters: q from `fixed`, a solved (reference-params: q=4 -> a~6.92)
    cal4 = T.calibrate("nce_agce", 1000, reference_classes=100, reference_params=ref, free=["q", "a"], q=4.0)
    assert cal4.params["q"] == 4.0 and cal4.params["a"] == pytest.approx(6.92, rel=0.05)
    with pytest.raises(ValueError, match="no solution"):   # reference-params: q <= 1.5 has none
        T.calibrate("nce_agce", 1000, reference_classes=100, reference_params=ref, free=["q", "a"], q=1.5)


def test_pure_rescaling_is_rejected():
    ref = {"alpha": 10, "beta": 0.1, "a": 1.8, "q": 3}
    lam = (float(T.mean_backprop_error("nce_agce", 100, 0.0, params=ref))
           / float(T.mean_backprop_error("nce_agce", 1000, 0.0, params=ref)))
    assert lam == pytest.approx(13.9, rel=0.01)            # reference-params.md: (alpha, beta) x 13.9
    with pytest.raises(ValueError, match="trivial"):
        T.calibrate("nce_agce", 1000, reference_classes=100, reference_params=ref, free=["alpha", "beta"],
                    alpha=10 * lam)
    cal = T.calibrate("nce_agce", 1000, reference_classes=100, reference_params=ref, free=["alpha", "beta"],
                      alpha=10 * lam, allow_trivial=True)
    assert cal.trivial and cal.scale_factor == pytest.approx(lam, rel=1e-6)
    assert cal.params["beta"] == pytest.approx(0.1 * lam, rel=1e-6)
    assert cal.shape_mismatch < 1e-6
    scan = T.calibration_scan("nce_agce", 1000, reference_classes=100, reference_params=ref,
                              grid={"alpha": [10.0, 10 * lam, 300.0]}, solve_for="beta")
    rows = scan["rows"]
    assert [r.get("trivial") for r in rows] == [False, True, None]
    assert rows[0]["beta"] > 1 and rows[2]["beta"] is None and "no solution" in rows[2]["error"]
    assert rows[0]["shape_mismatch"] > 0.1
    json.dumps(scan, allow_nan=False)


def test_curve_mismatch():
    assert T.curve_mismatch("gce", 100, {"q": 0.7}, 100, {"q": 0.7}) == 0.0
    assert T.curve_mismatch("gce", 1000, {"q": 0.7}, 100, {"q": 0.7}) > 0.5


def test_calibrate_bad_input():
    with pytest.raises(ValueError, match="not a parameter"):
        T.calibrate("gce", 1000, reference_classes=100, reference_params={"q": 0.7}, free="alpha")
    with pytest.raises(ValueError, match="no solution for gce q"):   # needs q > 1: none in (1e-3, 1]
        T.calibrate("gce", 10, reference_classes=100, reference_params={"q": 0.7}, free="q")
    with pytest.raises(ValueError, match="bracket"):
        T.calibrate("gce", 1000, reference_classes=100, reference_params={"q": 0.7}, free="q", bracket=(1, 0.5))


def test_default_calibration():
    g = T.default_calibration("gce", 1000)
    assert g.params["q"] == pytest.approx(0.482, abs=0.004) and g.reference_classes == 100
    same = T.default_calibration("gce", 100)
    assert same.params == {"q": 0.7} and same.residual == 0.0
    low = T.default_calibration("nce_mae", 10, dataset="cifar10")
    assert low.params == {"alpha": 1.0, "beta": 1.0} and low.free == []
    m = T.default_calibration("mae", 1000)
    assert m.params["logit_bias"] == pytest.approx(6.090, abs=0.02) and m.residual < 1e-8
    ce = T.default_calibration("ce", 1000)
    assert ce.params == {} and ce.residual == 0.0
    t0 = time.perf_counter()
    n = T.default_calibration("nce_mae", 1000)
    assert time.perf_counter() - t0 < 5.0
    assert n.params["beta"] == 1.0 and n.params["alpha"] > 10 and n.residual < 1e-6 and not n.trivial
    a = T.default_calibration("nce_agce", 1000)
    assert a.params["a"] == pytest.approx(18.2, rel=0.05)
    for cal in (g, same, low, m, ce, n, a):
        json.dumps(cal.to_dict(), allow_nan=False)


def test_recipes_match_presets():
    """Each reference is the published column for its K: K_ref=100 -> CIFAR-100, K_ref=10 -> CIFAR-10."""
    column = {100: "cifar100", 10: "cifar10"}
    seen = set()
    for name, recipe in T.CALIBRATION_RECIPES.items():
        if recipe.kind == "solve":
            assert recipe.reference(None).classes == 100
            for ref in recipe.references:
                preset = build_loss(name, ref.classes, dataset=column[ref.classes]).params
                assert {k: preset[k] for k, _ in ref.params} == dict(ref.params)
                seen.add((name, ref.classes))
    assert {(n, k) for n in ("gce", "nce_mae", "nfl_mae", "nce_agce") for k in (10, 100)} <= seen


def test_default_calibration_from_k10_reference():
    """reference_classes=10: targets are the CIFAR-10 settings' <delta_y>(0) (reference-params.md)."""
    g = T.default_calibration("gce", 1000, reference_classes=10)
    assert g.params["q"] == pytest.approx(0.261, abs=0.003) and g.reference_classes == 10
    assert g.target == pytest.approx(-0.1446, abs=0.002) and g.residual < 1e-6
    n = T.default_calibration("nce_mae", 1000, reference_classes=10)
    assert n.target == pytest.approx(-0.100, abs=0.002) and n.params["beta"] == 1.0 and n.params["alpha"] > 185
    a = T.default_calibration("nce_agce", 1000, reference_classes=10)
    assert a.free == ["alpha"] and (a.params["beta"], a.params["a"], a.params["q"]) == (4.0, 6.0, 1.5)
    assert a.target == pytest.approx(-0.689, abs=0.01) and a.residual < 1e-6
    low = T.default_calibration("gce", 10, reference_classes=10)
    assert low.params == {"q": 0.7} and low.residual == 0.0
    with pytest.raises(ValueError, match="K_ref=50.*available: 100, 10"):
        T.default_calibration("gce", 1000, reference_classes=50)


# ------------------------------------------------------------------ initial logits (A.3)

def test_initial_logit_stats_linear():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2, 0], [0, 0, -1], [1, 1, 1]]))
        lin.bias.copy_(torch.tensor([0.5, 0, 0, -1]))
    model = torch.nn.Sequential(lin, torch.nn.Dropout(0.9))   # eval mode: dropout is the identity
    model.train()
    x = torch.arange(15, dtype=torch.float32).reshape(5, 3) / 7
    logits = x.numpy() @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
    stats = T.initial_logit_stats(model, (x, torch.zeros(5)), bins=7)
    assert stats["mean"] == pytest.approx(float(logits.mean()), rel=1e-6)
    assert stats["std"] == pytest.approx(float(logits.std()), rel=1e-6)
    assert sum(stats["hist_counts"]) == 20 and len(stats["hist_edges"]) == 8
    assert stats["hist_edges"][0] == pytest.approx(float(logits.min()), rel=1e-6)
    assert model.training   # the previous mode is restored
    json.dumps(stats)
    with pytest.raises(ValueError, match="inputs"):
        T.initial_logit_stats(model, "not a tensor")


def test_initial_logit_stats_kaiming_mlp_is_near_standard_normal():
    """A.3: a wide zero-mean initialised layer gives logits close to N(0, sigma^2)."""
    torch.manual_seed(1)
    lin = torch.nn.Linear(1024, 100)
    torch.nn.init.normal_(lin.weight, std=1 / math.sqrt(1024))
    torch.nn.init.zeros_(lin.bias)
    stats = T.initial_logit_stats(lin, torch.randn(256, 1024))
    assert abs(stats["mean"]) < 0.05 and stats["std"] == pytest.approx(1.0, abs=0.05)


def test_initial_logit_stats_batch_stats_for_batchnorm_models():
    """With batch statistics (the first training step) a BN model's logits stay O(1); the model's
    running statistics are not touched; eval mode is still available."""
    from robustloss_core.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet32", 10, (3, 32, 32))
    x = torch.randn(32, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_like = T.initial_logit_stats(model, x)
    assert train_like["std"] < 10 and abs(train_like["mean"]) < 5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    eval_mode = T.initial_logit_stats(model, x, batch_stats=False)
    assert eval_mode["std"] > 10 * train_like["std"]
    assert model.training  # mode restored
