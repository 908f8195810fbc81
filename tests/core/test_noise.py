import json
import math

import numpy as np
import pytest

from robustloss_core.noise import ASYMMETRIC_MAPS, CIFAR100_COARSE, apply_label_noise


def within(observed: float, p: float, n: int, k: float = 4.0) -> bool:
    """|observed − p| within k binomial standard errors."""
    return abs(observed - p) <= k * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12


LABELS = np.tile(np.arange(10), 3000)   # 30 000 labels, balanced


@pytest.mark.parametrize("eta", [0.2, 0.6])
def test_symmetric_paper_rate_and_distribution(eta):
    r = apply_label_noise(LABELS, 10, kind="symmetric", rate=eta, seed=1)
    n = LABELS.size
    assert within(r.rate, eta * 9 / 10, n)                     # may stay correct: η(K−1)/K changed
    np.testing.assert_array_equal(r.is_noisy, r.noisy != r.clean)
    assert r.rate == pytest.approx(r.is_noisy.mean())
    # P(noisy = j | clean = 0) = η/K for each j ≠ 0
    counts = np.bincount(r.noisy[r.clean == 0], minlength=10)[1:]
    m = (r.clean == 0).sum()
    assert all(within(c / m, eta / 10, m) for c in counts)
    assert (r.kind, r.variant, r.requested_rate) == ("symmetric", "paper", eta)


@pytest.mark.parametrize("eta", [0.2, 0.6])
def test_symmetric_flip_rate_and_uniform_targets(eta):
    r = apply_label_noise(LABELS, 10, kind="symmetric", rate=eta, seed=2, variant="flip")
    assert within(r.rate, eta, LABELS.size)
    sel = r.clean == 3
    counts = np.bincount(r.noisy[sel & r.is_noisy], minlength=10)
    assert counts[3] == 0
    m = sel.sum()
    assert all(within(counts[j] / m, eta / 9, m) for j in range(10) if j != 3)
    assert r.variant == "flip"


def test_symmetric_extremes():
    assert apply_label_noise(LABELS, 10, kind="symmetric", rate=0.0, seed=0).rate == 0.0
    full = apply_label_noise(LABELS, 10, kind="symmetric", rate=1.0, seed=0, variant="flip")
    assert full.is_noisy.all() and full.rate == 1.0
    none = apply_label_noise(LABELS, 10, kind="none", rate=0.0, seed=0)
    np.testing.assert_array_equal(none.noisy, LABELS)
    assert not none.is_noisy.any()


def test_seed_determinism_and_input_untouched():
    labels = LABELS.copy()
    a = apply_label_noise(labels, 10, kind="symmetric", rate=0.4, seed=7)
    b = apply_label_noise(labels, 10, kind="symmetric", rate=0.4, seed=7)
    c = apply_label_noise(labels, 10, kind="symmetric", rate=0.4, seed=8)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    assert (a.noisy != c.noisy).any()
    np.testing.assert_array_equal(labels, LABELS)
    np.testing.assert_array_equal(a.clean, LABELS)
    assert a.noisy.dtype == np.int64 and a.clean.dtype == np.int64 and a.is_noisy.dtype == bool
    d = a.to_dict()
    json.dumps(d)
    assert d["num_noisy"] == int(a.is_noisy.sum()) and d["seed"] == 7


def test_asymmetric_cifar10_exact_map():
    eta = 0.4
    r = apply_label_noise(LABELS, 10, kind="asymmetric", rate=eta, seed=3, dataset="cifar10")
    expected = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}   # truck→automobile, bird→airplane, deer→horse, cat↔dog
    for c in range(10):
        sel = r.clean == c
        changed = r.noisy[sel & r.is_noisy]
        if c in expected:
            assert set(changed.tolist()) == {expected[c]}
            assert within(len(changed) / sel.sum(), eta, sel.sum())
        else:
            assert changed.size == 0
    assert within(r.rate, eta * 5 / 10, LABELS.size)
    assert r.mapping == "cifar10"


def test_cifar100_maps():
    # the coarse table: 20 super-classes of 5; e.g. aquatic mammals = beaver 4, dolphin 30, otter 55, seal 72, whale 95
    assert np.bincount(CIFAR100_COARSE, minlength=20).tolist() == [5] * 20
    assert [f for f in range(100) if CIFAR100_COARSE[f] == CIFAR100_COARSE[4]] == [4, 30, 55, 72, 95]
    sup, blk = ASYMMETRIC_MAPS["cifar100"], ASYMMETRIC_MAPS["cifar100-blocks"]
    for m in (sup, blk):
        assert sorted(m) == list(range(100)) and sorted(m.values()) == list(range(100))   # a permutation
        assert all(m[f] != f for f in m)
    assert all(CIFAR100_COARSE[sup[f]] == CIFAR100_COARSE[f] for f in range(100))
    assert (sup[4], sup[30], sup[95]) == (30, 55, 4)
    # cycles of length 5
    f, seen = 0, []
    while f not in seen:
        seen.append(f)
        f = sup[f]
    assert len(seen) == 5
    assert all(blk[f] == 5 * (f // 5) + (f + 1) % 5 for f in range(100))

    labels = np.repeat(np.arange(100), 40)
    r = apply_label_noise(labels, 100, kind="asymmetric", rate=0.5, seed=0, dataset="cifar100")
    partner = np.array([sup[f] for f in range(100)])
    np.testing.assert_array_equal(r.noisy[r.is_noisy], partner[r.clean[r.is_noisy]])
    rb = apply_label_noise(labels, 100, kind="asymmetric", rate=0.5, seed=0, dataset="cifar100", variant="blocks")
    assert rb.mapping == "cifar100-blocks" and rb.variant == "blocks"
    moved = rb.clean[rb.is_noisy]
    np.testing.assert_array_equal(rb.noisy[rb.is_noisy], (moved // 5) * 5 + (moved + 1) % 5)


def test_asymmetric_fashionmnist():
    assert ASYMMETRIC_MAPS["fashionmnist"] == {9: 7, 7: 5, 2: 6, 4: 3, 3: 4}
    r = apply_label_noise(LABELS, 10, kind="asymmetric", rate=1.0, seed=0, dataset="fashionmnist")
    for c in range(10):
        assert set(r.noisy[r.clean == c].tolist()) == {ASYMMETRIC_MAPS["fashionmnist"].get(c, c)}


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match=r"\[0, 1\]") as e:
        apply_label_noise(LABELS, 10, kind="symmetric", rate=rate, seed=0)
    assert str(rate) in str(e.value)


def test_bad_kind_variant_dataset():
    with pytest.raises(ValueError, match="cifar10, cifar100, fashionmnist") as e:
        apply_label_noise(LABELS, 10, kind="asymmetric", rate=0.2, seed=0, dataset="webvision")
    assert "webvision" in str(e.value)
    with pytest.raises(ValueError, match="has none"):
        apply_label_noise(LABELS, 10, kind="asymmetric", rate=0.2, seed=0, dataset="synthetic")
    with pytest.raises(ValueError, match="pairflip"):
        apply_label_noise(LABELS, 10, kind="pairflip", rate=0.2, seed=0)
    with pytest.raises(ValueError, match="'swap'"):
        apply_label_noise(LABELS, 10, kind="symmetric", rate=0.2, seed=0, variant="swap")
    with pytest.raises(ValueError, match="blocks"):
        apply_label_noise(LABELS, 10, kind="asymmetric", rate=0.2, seed=0, dataset="cifar10", variant="blocks")
    with pytest.raises(ValueError, match="'none'"):
        apply_label_noise(LABELS, 10, kind="none", rate=0.2, seed=0)
    with pytest.raises(ValueError, match="outside"):
        apply_label_noise(np.array([0, 10]), 10, kind="symmetric", rate=0.2, seed=0)
    with pytest.raises(ValueError, match="num_classes"):
        apply_label_noise(LABELS[:5], 1, kind="symmetric", rate=0.2, seed=0)
    with pytest.raises(ValueError) as e:
        apply_label_noise(LABELS, 10, kind="asymmetric", rate=0.2, seed=0, dataset="webvision")
    assert "\n" not in str(e.value)
