"""Tests for robustloss_core.losses: values against independent numpy formulas, closed-form δ_y against
autograd, autograd against finite differences, numerics, the logit bias, and input validation."""
import math

import numpy as np
import pytest
import torch

from robustloss_core.losses import LOSSES, build_loss

ALL = ["ce", "mae", "gce", "sce", "nce", "nfl", "agce", "nce_mae", "nfl_mae", "nce_agce", "bitemp"]
PY_ONLY = {"ce", "mae", "gce", "sce", "agce"}

# (name, params): every loss at its CIFAR-10 preset plus non-default settings.
CONFIGS = [(n, {}) for n in ALL] + [
    ("gce", {"q": 0.3}), ("gce", {"q": 1.0}),
    ("sce", {"alpha": 6.0, "beta": 0.1, "A": math.log(1e-4)}),
    ("agce", {"a": 1.8, "q": 3.0}),
    ("nfl", {"gamma": 2.0}), ("nfl", {"gamma": 0.0}),
    ("nfl_mae", {"alpha": 10.0, "beta": 1.0, "gamma": 0.5}),
    ("nce_mae", {"alpha": 10.0, "beta": 1.0}),
    ("nce_agce", {"alpha": 10.0, "beta": 0.1, "a": 1.8, "q": 3.0}),
    ("bitemp", {"t1": 0.5, "t2": 2.0}), ("bitemp", {"t1": 0.0, "t2": 1.05}),
]
CLOSED = [(n, p) for n, p in CONFIGS if n != "bitemp"]


def _ids(cfgs):
    return [f"{n}-{'-'.join(f'{k}{v:g}' for k, v in p.items()) or 'default'}" for n, p in cfgs]


def _logits(n, k, scale=3.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    return z.to(dtype), y


# ---------------------------------------------------------------- independent numpy reference (float64)

def _np_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _np_tempered_softmax(a, t):
    """Bisection on λ: Σ_i [1 + (1 − t)(a_i − λ)]^(1/(1−t)) = 1, λ ∈ [max a, max a − log_t(1/K)]."""
    exp_t = lambda x: (1.0 + (1.0 - t) * x) ** (1.0 / (1.0 - t))
    out = np.empty_like(a)
    K = a.shape[1]
    for r, row in enumerate(a):
        lo = row.max()
        hi = lo + (K ** (t - 1) - 1) / (t - 1)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if exp_t(row - mid).sum() > 1 else (lo, mid)
        out[r] = exp_t(row - 0.5 * (lo + hi))
    return out


def _np_loss(name, params, z, y):
    K = z.shape[1]
    P = {**build_loss(name, K).params, **params}  # only to read the preset defaults
    rows = np.arange(len(y))
    p = _np_softmax(z)
    py = p[rows, y]
    onehot = np.eye(K)[y]
    mae = np.abs(p - onehot).sum(1)
    nce = np.log(py) / np.log(p).sum(1)
    g = P.get("gamma", 0.0)
    nfl = (1 - py) ** g * np.log(py) / ((1 - p) ** g * np.log(p)).sum(1)
    agce = lambda a, q: ((a + 1) ** q - (a + py) ** q) / q
    if name == "bitemp":
        t1, t2 = P["t1"], P["t2"]
        pt = _np_tempered_softmax(z, t2)
        log_t1 = lambda x: (x ** (1 - t1) - 1) / (1 - t1)
        terms = onehot * (log_t1(onehot) - log_t1(pt)) - (onehot ** (2 - t1) - pt ** (2 - t1)) / (2 - t1)
        return terms.sum(1)
    return {
        "ce": lambda: -np.log(py),
        "mae": lambda: mae,
        "gce": lambda: (1 - py ** P["q"]) / P["q"],
        "sce": lambda: P["alpha"] * -np.log(py) + P["beta"] * -P["A"] * (1 - py),
        "nce": lambda: nce,
        "nfl": lambda: nfl,
        "agce": lambda: agce(P["a"], P["q"]),
        "nce_mae": lambda: P["alpha"] * nce + P["beta"] * mae / 2,
        "nfl_mae": lambda: P["alpha"] * nfl + P["beta"] * (1 - py),
        "nce_agce": lambda: P["alpha"] * nce + P["beta"] * agce(P["a"], P["q"]),
    }[name]()


# ---------------------------------------------------------------- registry

def test_registry_names_and_flags():
    assert sorted(LOSSES) == sorted(ALL)
    for name, cls in LOSSES.items():
        assert cls.py_only == (name in PY_ONLY), name
        assert cls.__doc__ and ("L =" in cls.__doc__ or "L(" in cls.__doc__), name
        assert any(ch.isdigit() for ch in cls.__doc__), f"{name}: docstring must cite the paper (year)"
    assert build_loss("ce", np.int64(10)).num_classes == 10


# ---------------------------------------------------------------- values

@pytest.mark.parametrize("bias", [0.0, 1.5])
@pytest.mark.parametrize("K", [2, 10, 100])
@pytest.mark.parametrize("name,params", CONFIGS, ids=_ids(CONFIGS))
def test_values_match_numpy(name, params, K, bias):
    z, y = _logits(12, K, seed=K)
    loss = build_loss(name, K, logit_bias=bias, **params)
    zb = z.numpy() + bias * np.eye(K)[y.numpy()]
    ref = _np_loss(name, params, zb, y.numpy())
    got = loss.per_example(z, y)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-12)
    assert loss(z, y).item() == pytest.approx(ref.mean(), rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("bias", [0.0, 1.5])
@pytest.mark.parametrize("K", [2, 10, 1000])
@pytest.mark.parametrize("name,params", CLOSED, ids=_ids(CLOSED))
def test_delta_y_matches_autograd(name, params, K, bias):
    z, y = _logits(8, K, scale=2.0, seed=K + 1)
    loss = build_loss(name, K, logit_bias=bias, **params)
    zg = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss.per_example(zg, y).sum(), zg)
    auto = grad.gather(1, y[:, None]).squeeze(1)
    closed = loss.delta_y(z, y)
    assert closed.shape == (8,)
    torch.testing.assert_close(closed, auto, rtol=0, atol=1e-5)
    torch.testing.assert_close(loss.delta_y_autograd(z, y), auto, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name,params", [(n, p) for n, p in CONFIGS if n in PY_ONLY],
                         ids=_ids([(n, p) for n, p in CONFIGS if n in PY_ONLY]))
def test_delta_y_from_py_numpy_and_torch(name, params):
    p = np.linspace(1e-6, 1 - 1e-6, 41)
    loss = build_loss(name, 2, **params)
    z = torch.tensor(np.stack([np.log(p), np.log1p(-p)], 1))
    y = torch.zeros(len(p), dtype=torch.long)
    from_np = loss.delta_y_from_py(p)
    assert isinstance(from_np, np.ndarray)
    np.testing.assert_allclose(from_np, loss.delta_y(z, y).numpy(), rtol=1e-9, atol=1e-12)
    from_t = loss.delta_y_from_py(torch.tensor(p))
    assert torch.is_tensor(from_t)
    np.testing.assert_allclose(from_t.numpy(), from_np, rtol=1e-12)


def test_delta_y_not_available():
    z, y = _logits(3, 10)
    with pytest.raises(NotImplementedError):
        build_loss("bitemp", 10).delta_y(z, y)
    with pytest.raises(NotImplementedError):
        build_loss("nfl", 10, detach_normalizer=True).delta_y(z, y)
    for name in ("nce", "nfl", "nce_mae", "bitemp"):
        with pytest.raises(NotImplementedError):
            build_loss(name, 10).delta_y_from_py(np.array([0.5]))


@pytest.mark.parametrize("name,params", [("nfl", {}), ("nfl", {"gamma": 2.0}), ("nfl_mae", {})])
def test_nfl_gradient_finite_differences(name, params):
    z, y = _logits(4, 10, scale=2.0, seed=3)
    loss = build_loss(name, 10, logit_bias=1.5, **params)
    assert torch.autograd.gradcheck(lambda t: loss.per_example(t, y), (z.requires_grad_(True),),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


def test_nfl_detached_variant_same_value_other_gradient():
    z, y = _logits(6, 10, seed=4)
    exact, det = build_loss("nfl", 10), build_loss("nfl", 10, detach_normalizer=True)
    torch.testing.assert_close(det.per_example(z, y), exact.per_example(z, y))
    assert not torch.allclose(det.delta_y_autograd(z, y), exact.delta_y_autograd(z, y), atol=1e-4)


@pytest.mark.parametrize("t1,t2", [(0.8, 1.2), (0.5, 2.0), (0.0, 4.0)])
@pytest.mark.parametrize("K", [10, 100])
def test_bitemp_gradient_finite_differences(t1, t2, K):
    z, y = _logits(3, K, scale=3.0, seed=K)
    loss = build_loss("bitemp", K, t1=t1, t2=t2, logit_bias=1.5)
    assert torch.autograd.gradcheck(lambda t: loss.per_example(t, y), (z.requires_grad_(True),),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
@pytest.mark.parametrize("t2", [1.2, 1.05, 3.0])
def test_bitemp_normalised(scale, t2):
    z, _ = _logits(16, 100, scale=scale, seed=7)
    loss = build_loss("bitemp", 100, t2=t2)
    s64 = loss.tempered_log_softmax(z).exp().sum(1)
    assert (s64 - 1).abs().max().item() <= 1e-6
    s32 = loss.tempered_log_softmax(z.float()).exp().sum(1)
    assert (s32.double() - 1).abs().max().item() <= 1e-5
    # against the independent bisection
    np.testing.assert_allclose(loss.tempered_log_softmax(z).exp().numpy(),
                               _np_tempered_softmax(z.numpy(), t2), rtol=1e-7, atol=1e-14)


# ---------------------------------------------------------------- conventions (reference-params.md)

@pytest.mark.parametrize("name,params,expected", [
    ("ce", {}, -0.928), ("mae", {}, -0.133), ("nce_mae", {}, -0.100),
    ("nce_mae", {"alpha": 10.0, "beta": 1.0}, -0.402), ("nfl_mae", {"alpha": 10.0, "beta": 1.0}, -0.436),
    ("nce_agce", {}, -0.689), ("agce", {}, -0.0775), ("sce", {}, -0.359),
])
def test_scale_conventions_mean_delta_at_zero(name, params, expected):
    """⟨δ_y⟩ at z_y = 0, K = 10 (reference-params.md): pins the MAE / RCE scale conventions."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(40000, 10, generator=g, dtype=torch.float64)
    z[:, 0] = 0.0
    y = torch.zeros(40000, dtype=torch.long)
    assert build_loss(name, 10, **params).delta_y(z, y).mean().item() == pytest.approx(expected, abs=0.004)


# ---------------------------------------------------------------- numerics

@pytest.mark.parametrize("K", [10, 1000])
@pytest.mark.parametrize("name", ALL)
def test_extreme_logits_finite(name, K):
    g = torch.Generator().manual_seed(1)
    z = 1e4 * torch.sign(torch.randn(6, K, generator=g))
    y = torch.randint(0, K, (6,), generator=g)
    z[0] = 1e4
    z[0, y[0]] = -1e4  # p_y -> 0
    z[1] = -1e4
    z[1, y[1]] = 1e4   # p_y -> 1
    for dtype in (torch.float32, torch.float64):
        for bias in (0.0, 6.0):
            loss = build_loss(name, K, logit_bias=bias)
            zz = z.to(dtype).requires_grad_(True)
            val = loss(zz, y)
            (grad,) = torch.autograd.grad(val, zz)
            assert torch.isfinite(val), (dtype, bias)
            assert torch.isfinite(grad).all(), (dtype, bias)
            if name != "bitemp":
                assert torch.isfinite(loss.delta_y(z.to(dtype), y)).all()


@pytest.mark.parametrize("name", ALL)
def test_dtypes(name):
    z, y = _logits(5, 10, seed=2, dtype=torch.float32)
    loss = build_loss(name, 10)
    ref = loss(z.double(), y)
    assert ref.dtype == torch.float64
    assert loss(z, y).dtype == torch.float32
    for low in (torch.float16, torch.bfloat16):
        zl = z.to(low).requires_grad_(True)
        out = loss(zl, y)
        assert out.dtype == torch.float32
        out.backward()
        assert zl.grad.dtype == low and torch.isfinite(zl.grad.float()).all()
        # same value as the float64 loss on the rounded logits
        assert out.item() == pytest.approx(loss(zl.detach().double(), y).item(), rel=1e-5, abs=1e-6)


# ---------------------------------------------------------------- logit bias

@pytest.mark.parametrize("name", ALL)
def test_logit_bias_reassignment_equals_manual_shift(name):
    z, y = _logits(7, 10, seed=5)
    loss = build_loss(name, 10)
    plain = build_loss(name, 10)
    before = loss(z, y).item()
    loss.logit_bias = 2.5
    assert isinstance(loss.logit_bias, float) and loss.logit_bias == 2.5
    shifted = z + 2.5 * torch.nn.functional.one_hot(y, 10).double()
    assert loss(z, y).item() == pytest.approx(plain(shifted, y).item(), rel=1e-12)
    assert loss(z, y).item() != pytest.approx(before, rel=1e-6)
    if name != "bitemp":
        torch.testing.assert_close(loss.delta_y(z, y), plain.delta_y(shifted, y))
    loss.logit_bias = 0.0
    assert loss(z, y).item() == pytest.approx(before, rel=1e-12)


# ---------------------------------------------------------------- bad input

def _bad_forward(loss_name, z, y, K=10):
    return lambda: build_loss(loss_name, K)(z, y)


BAD = [
    (lambda: build_loss("focal", 10), "'focal'"),
    (lambda: build_loss("ce", 1), "num_classes=1"),
    (lambda: build_loss("ce", 2.5), "num_classes=2.5"),
    (lambda: build_loss("gce", 10, q=0.0), "q=0.0"),
    (lambda: build_loss("gce", 10, q=1.5), "q=1.5"),
    (lambda: build_loss("gce", 10, q=-0.2), "q=-0.2"),
    (lambda: build_loss("gce", 10, q="0.7"), "'0.7'"),
    (lambda: build_loss("gce", 10, q=float("nan")), "q=nan"),
    (lambda: build_loss("agce", 10, a=0.0), "a=0.0"),
    (lambda: build_loss("agce", 10, a=-1.0), "a=-1.0"),
    (lambda: build_loss("agce", 10, q=0.0), "q=0.0"),
    (lambda: build_loss("nce_agce", 10, a=-2.0), "a=-2.0"),
    (lambda: build_loss("nce_agce", 10, q=-3.0), "q=-3.0"),
    (lambda: build_loss("bitemp", 10, t1=1.0), "t1=1.0"),
    (lambda: build_loss("bitemp", 10, t1=1.3), "t1=1.3"),
    (lambda: build_loss("bitemp", 10, t1=-0.1), "t1=-0.1"),
    (lambda: build_loss("bitemp", 10, t2=1.0), "t2=1.0"),
    (lambda: build_loss("bitemp", 10, t2=0.5), "t2=0.5"),
    (lambda: build_loss("nce_mae", 10, alpha=-1.0), "alpha=-1.0"),
    (lambda: build_loss("nfl_mae", 10, beta=-0.5), "beta=-0.5"),
    (lambda: build_loss("sce", 10, beta=-2.0), "beta=-2.0"),
    (lambda: build_loss("nce_agce", 10, alpha=-10.0), "alpha=-10.0"),
    (lambda: build_loss("sce", 10, A=1.0), "A=1.0"),
    (lambda: build_loss("nfl", 10, gamma=-1.0), "gamma=-1.0"),
    (lambda: build_loss("gce", 10, gamma=0.5), "gamma"),
    (lambda: build_loss("ce", 10, q=0.5), "q"),
    (lambda: build_loss("ce", 10, dataset="imagenet21k"), "imagenet21k"),
    (lambda: build_loss("ce", 10, logit_bias=float("inf")), "inf"),
    (_bad_forward("ce", torch.zeros(4, 10), torch.tensor([0, 1, 10, 2])), "10"),
    (_bad_forward("mae", torch.zeros(4, 10), torch.tensor([0, -3, 1, 2])), "-3"),
    (_bad_forward("nce", torch.zeros(4, 7), torch.tensor([0, 1, 2, 3])), "(4, 7)"),
    (_bad_forward("gce", torch.zeros(10), torch.tensor([0])), "(10,)"),
    (_bad_forward("bitemp", torch.zeros(2, 3, 10), torch.tensor([0, 1])), "(2, 3, 10)"),
    (_bad_forward("ce", torch.zeros(4, 10), torch.tensor([0.0, 1.0, 2.0, 3.0])), "torch.float32"),
    (_bad_forward("ce", torch.zeros(4, 10, dtype=torch.long), torch.tensor([0, 1, 2, 3])), "torch.int64"),
]


@pytest.mark.parametrize("fn,fragment", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_raises_value_error(fn, fragment):
    with pytest.raises(ValueError) as info:
        fn()
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg


def test_unknown_param_lists_allowed():
    with pytest.raises(ValueError, match=r"gamma.*allowed: alpha, beta, a, q"):
        build_loss("nce_agce", 10, gamma=1.0)


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError) as info:
        build_loss("focal", 10)
    assert all(n in str(info.value) for n in ALL)


def test_setting_bad_logit_bias_attribute():
    loss = build_loss("mae", 10)
    with pytest.raises(ValueError, match="nan"):
        loss.logit_bias = float("nan")
