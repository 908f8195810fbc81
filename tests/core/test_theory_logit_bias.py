"""Eq. 4 (theory.logit_bias): epsilon(K) against reference-params.md, closed forms and naive sampling."""
import math
import time

import numpy as np
import pytest
from scipy import special

from robustloss_core import presets
from robustloss_core import theory as T

EPS_TABLE = {  # reference-params.md (c x K = 10, 100, 1000), sigma = 1
    0.2: (0.930, 3.433, 5.756), 0.25: (1.272, 3.769, 6.090), 0.3: (1.574, 4.066, 6.387), 0.5: (2.616, 5.087, 7.406),
}


@pytest.mark.parametrize("c", sorted(EPS_TABLE))
def test_logit_bias_table(c):
    eps = [T.logit_bias(k, c=c) for k in (10, 100, 1000)]
    assert np.allclose(eps, EPS_TABLE[c], atol=0.02), (c, eps)
    for k, e in zip((10, 100, 1000), eps):
        assert T.expected_py(k, e) == pytest.approx(c, abs=1e-8)


def test_default_c_is_the_presets_constant():
    assert T.logit_bias(100) == T.logit_bias(100, c=presets.C_DEFAULT)


def test_increasing_and_asymptote():
    ks = [2, 3, 5, 10, 30, 100, 300, 1000, 3000, 10000]
    eps = [T.logit_bias(k) for k in ks]
    assert all(b > a for a, b in zip(eps, eps[1:]))
    want = math.log(9999 * math.sqrt(math.e)) - 1.315   # reference-params.md: psi(0.25) = -1.315
    assert T.logit_bias(10000) == pytest.approx(want, abs=0.01)
    assert T.logit_bias_asymptote(10000) == pytest.approx(want, abs=2e-3)


def test_k2_closed_form():
    """K = 2: E[sigmoid(z_y - z_1)] = c with z_y - z_1 ~ N(eps, 2 sigma^2): a 1-D Gauss-Hermite root."""
    x, w = np.polynomial.hermite_e.hermegauss(120)
    w = w / w.sum()
    for c, sigma in ((0.25, 1.0), (0.6, 0.5), (0.25, 2.6)):
        eps = T.logit_bias(2, c=c, sigma=sigma)
        assert float(np.dot(w, special.expit(eps + math.sqrt(2) * sigma * x))) == pytest.approx(c, abs=1e-7)


@pytest.mark.parametrize("k,sigma", [(10, 1.0), (100, 0.25), (100, 2.6)])
def test_against_naive_monte_carlo(k, sigma):
    """The paper's procedure (sample Gaussians) at the solved epsilon gives E[p_y] = c within MC error."""
    rng = np.random.default_rng(123)
    eps = T.logit_bias(k, c=0.3, sigma=sigma)
    zl = sigma * rng.standard_normal((100_000, k))
    zl[:, 0] += eps
    p = special.softmax(zl, axis=1)[:, 0]
    assert abs(p.mean() - 0.3) < 4 * p.std() / math.sqrt(p.size)


def test_speed():
    T._py_table.cache_clear()
    t0 = time.perf_counter()
    T.logit_bias(1000, c=0.37)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("kwargs,match", [
    ({"c": 0.0}, "c="), ({"c": 1.0}, "c="), ({"c": True}, "c="), ({"num_classes": 1}, "num_classes"),
    ({"num_classes": 10.5}, "num_classes"), ({"sigma": -1.0}, "sigma"),
])
def test_bad_input(kwargs, match):
    args = {"num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match) as err:
        T.logit_bias(args.pop("num_classes"), **args)
    assert "\n" not in str(err.value)
