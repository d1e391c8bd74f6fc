"""Augmentations are pure, seeded, shape-aware; policies validate their steps up front."""

from __future__ import annotations

import numpy as np
import pytest

from domains.timeseries.views import (
    AUGMENTATIONS,
    POLICIES,
    apply_policy,
    check_policy,
    crop,
    mask,
    time_warp,
)
from tests.conftest import imported_in_fresh_interpreter


def _series(channels: int = 3, length: int = 200, seed: int = 0) -> np.ndarray:
    t = np.linspace(0, 4 * np.pi, length)
    rng = np.random.default_rng(seed)
    return (
        np.sin(t)[None, :] * np.arange(1, channels + 1)[:, None] + 0.1 * rng.normal(size=(channels, length))
    ).astype(np.float32)


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_augmentation_contract(name: str) -> None:
    fn = AUGMENTATIONS[name]
    x = _series()
    before = x.copy()
    out = fn(x, np.random.default_rng(1))
    assert out.dtype == np.float32 and out.ndim == 2 and out.shape[0] == x.shape[0]
    assert out is not x and not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, before)  # input untouched
    np.testing.assert_array_equal(out, fn(x, np.random.default_rng(1)))  # same seed, same view
    assert not np.array_equal(out, fn(x, np.random.default_rng(2)))  # another seed, another view
    out64 = fn(x.astype(np.float64), np.random.default_rng(1))  # float64 input still gives float32
    assert out64.dtype == np.float32


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_augmentation_tiny_series(name: str) -> None:
    for length in (1, 2):
        out = AUGMENTATIONS[name](np.ones((2, length), np.float32), np.random.default_rng(0))
        assert out.shape[0] == 2 and 1 <= out.shape[1] <= length


@pytest.mark.parametrize("min_ratio", [0.1, 0.5, 0.9, 1.0])
def test_crop_length_within_bounds(min_ratio: float) -> None:
    x = _series(length=101)
    rng = np.random.default_rng(0)
    lengths = set()
    for _ in range(200):
        out = crop(x, rng, min_ratio=min_ratio)
        n = out.shape[1]
        assert np.ceil(min_ratio * 101) <= n <= 101
        start = int(np.flatnonzero(np.all(x == out[:, :1], axis=0))[0])
        np.testing.assert_array_equal(out, x[:, start : start + n])  # a contiguous slice
        lengths.add(n)
    assert len(lengths) > 1 or min_ratio == 1.0


def test_time_warp_constant_series_is_constant() -> None:
    x = np.full((2, 150), 3.25, dtype=np.float32)
    for seed in range(5):
        np.testing.assert_allclose(time_warp(x, np.random.default_rng(seed), sigma=0.5), x, rtol=1e-6)


def test_time_warp_keeps_endpoints_and_range() -> None:
    x = _series(channels=1)
    out = time_warp(x, np.random.default_rng(0), sigma=0.3)
    np.testing.assert_allclose(out[:, [0, -1]], x[:, [0, -1]], rtol=1e-5)
    assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6  # interpolation only


@pytest.mark.parametrize("ratio", [0.15, 0.5])
def test_mask_binomial_ratio(ratio: float) -> None:
    x = np.ones((2, 20_000), dtype=np.float32)
    out = mask(x, np.random.default_rng(0), ratio=ratio)
    masked = out[0] == 0
    assert abs(masked.mean() - ratio) < 0.02
    np.testing.assert_array_equal(out[1] == 0, masked)  # whole timestamps, all channels


def test_mask_continuous_is_contiguous() -> None:
    x = np.ones((1, 1000), dtype=np.float32)
    out = mask(x, np.random.default_rng(0), ratio=0.2, mode="continuous")
    idx = np.flatnonzero(out[0] == 0)
    assert len(idx) == 200 and np.all(np.diff(idx) == 1)
    spread = mask(x, np.random.default_rng(0), ratio=0.2, mode="continuous", spans=4)
    assert 50 <= int((spread[0] == 0).sum()) <= 200
    with pytest.raises(ValueError, match="mode"):
        mask(x, np.random.default_rng(0), mode="bernoulli")


def test_invalid_parameter_values() -> None:
    x = _series()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="min_ratio"):
        crop(x, rng, min_ratio=0.0)
    with pytest.raises(ValueError, match="ratio"):
        mask(x, rng, ratio=1.5)
    with pytest.raises(ValueError, match="channels, time"):
        time_warp(x[0], rng)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_named_policies(policy: str) -> None:
    x = _series()
    before = x.copy()
    check_policy(POLICIES[policy])
    a = apply_policy(x, np.random.default_rng(5), POLICIES[policy])
    b = apply_policy(x, np.random.default_rng(5), POLICIES[policy])
    assert a.dtype == np.float32 and a.shape[0] == 3 and a.shape[1] <= 200
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, before)


def test_apply_policy_probability_and_copy() -> None:
    x = _series()
    out = apply_policy(x, np.random.default_rng(0), [{"name": "jitter", "p": 0.0}])
    np.testing.assert_array_equal(out, x)
    assert not np.shares_memory(out, x)
    assert apply_policy(x, np.random.default_rng(0), []).shape == x.shape


def test_apply_policy_unknown_name_and_parameter() -> None:
    x = _series()
    rng = np.random.default_rng(0)
    with pytest.raises(KeyError, match="jitter"):  # the message lists the known names
        apply_policy(x, rng, [{"name": "flip"}])
    # Rejected even when p would skip the step on this draw.
    with pytest.raises(TypeError, match="sigmaa"):
        apply_policy(x, rng, [{"name": "jitter", "sigmaa": 0.1, "p": 0.01}])
    with pytest.raises(ValueError, match="p must be"):
        apply_policy(x, rng, [{"name": "jitter", "p": 2}])


def test_loading_the_domain_leaves_scipy_interpolate_to_the_warps() -> None:
    """Every process that loads the domain (ingest's read tasks, each pretraining worker) imported
    scipy.interpolate for the warps' spline, which the UCR recipe's crops never draw: loading the
    domain after torch took 0.59 s instead of 0.28 s."""
    code = "from domains import get_domain; get_domain('timeseries').augment"
    assert imported_in_fresh_interpreter(code, ("scipy.interpolate",)) == []
