"""Time-series augmentations and named view policies.

Every augmentation is a pure function ``f(x, rng, **params) -> np.ndarray``: ``x`` is a
``[channels, time]`` array, the result a *new* float32 array (the input is never written to), and
all randomness comes from ``rng`` so a seeded generator reproduces a view exactly.

References: Um et al. 2017, "Data augmentation of wearable sensor data for Parkinson's disease
monitoring using convolutional neural networks" (jitter, scaling, magnitude/time warping; also the
tsaug implementations); Yue et al. 2022, "TS2Vec: Towards Universal Representation of Time Series"
(random cropping, timestamp masking); Eldele et al. 2021, "Time-Series Representation Learning via
Temporal and Contextual Contrasting" (TS-TCC: weak = jitter-and-scale, strong = permutation-and-jitter).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from domains.views import Augmentation, ViewEngine, as_float32


def _as_series(x: np.ndarray) -> np.ndarray:
    return as_float32(x, "[channels, time] array", ndim=2)


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


def _smooth_curves(rng: np.random.Generator, n: int, length: int, sigma: float, knots: int) -> np.ndarray:
    """``n`` smooth random curves around 1 over ``length`` steps: a cubic spline through
    ``knots + 2`` evenly spaced N(1, sigma) points (Um et al. 2017)."""
    # here, not at the top: scipy.interpolate's import is most of this module's, and every process
    # that loads the domain paid it (a Ray Train worker at its start), used or not (the UCR recipe's
    # crops never warp)
    from scipy.interpolate import CubicSpline

    xk = np.linspace(0.0, length - 1, knots + 2)
    yk = rng.normal(1.0, sigma, size=(n, knots + 2))
    return CubicSpline(xk, yk, axis=1)(np.arange(length))


def jitter(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.03) -> np.ndarray:
    """Additive gaussian noise N(0, sigma) at every point (sensor noise invariance)."""
    x = _as_series(x)
    _check(sigma >= 0, f"jitter: sigma must be >= 0, got {sigma}")
    return (x + rng.normal(0.0, sigma, size=x.shape)).astype(np.float32)


def scaling(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.1) -> np.ndarray:
    """Each channel multiplied by one factor ~ N(1, sigma) (gain invariance)."""
    x = _as_series(x)
    _check(sigma >= 0, f"scaling: sigma must be >= 0, got {sigma}")
    return (x * rng.normal(1.0, sigma, size=(x.shape[0], 1))).astype(np.float32)


def magnitude_warp(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.2, knots: int = 4) -> np.ndarray:
    """Each channel multiplied by its own smooth random curve around 1 (slow gain drift)."""
    x = _as_series(x)
    _check(
        sigma >= 0 and knots >= 1,
        f"magnitude_warp: need sigma >= 0 and knots >= 1, got {sigma}, {knots}",
    )
    if x.shape[1] < 2:
        return x.copy()
    return (x * _smooth_curves(rng, x.shape[0], x.shape[1], sigma, knots)).astype(np.float32)


def time_warp(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.2, knots: int = 4) -> np.ndarray:
    """Smoothly speed up and slow down time, then resample onto the original grid.

    A random speed curve (as in magnitude_warp) is integrated into a monotone map from the original
    steps to warped positions spanning the same [0, T-1]; the series is read at the original steps by
    linear interpolation. One warp is shared by all channels: they were sampled on one clock.
    """
    x = _as_series(x)
    _check(
        sigma >= 0 and knots >= 1,
        f"time_warp: need sigma >= 0 and knots >= 1, got {sigma}, {knots}",
    )
    t = x.shape[1]
    if t < 2:
        return x.copy()
    # Clip the speed positive so the cumulative map is strictly increasing (np.interp needs that);
    # a spline through N(1, sigma) knots can dip below 0 for large sigma.
    speed = np.clip(_smooth_curves(rng, 1, t, sigma, knots)[0], 1e-3, None)
    warped = np.concatenate([[0.0], np.cumsum(speed[1:])])
    warped *= (t - 1) / warped[-1]
    steps = np.arange(t, dtype=np.float64)
    return np.stack([np.interp(steps, warped, ch) for ch in x]).astype(np.float32)


def crop(
    x: np.ndarray, rng: np.random.Generator, min_ratio: float = 0.5, max_length: int | None = None
) -> np.ndarray:
    """A random contiguous subsequence of length in [ceil(min_ratio * T), T] (TS2Vec's cropping).

    ``max_length`` caps the view (TS2Vec's ``max_train_length``) so that long series cost bounded
    compute. The view is shorter than ``x``; collate pads a batch back to a common length.
    """
    x = _as_series(x)
    _check(0 < min_ratio <= 1, f"crop: min_ratio must be in (0, 1], got {min_ratio}")
    t = x.shape[1]
    if t == 0:
        return x.copy()
    hi = t if max_length is None else max(1, min(t, int(max_length)))
    length = int(rng.integers(min(hi, max(1, math.ceil(min_ratio * t))), hi + 1))
    start = int(rng.integers(0, t - length + 1))
    return x[:, start : start + length].copy()


def mask(
    x: np.ndarray,
    rng: np.random.Generator,
    ratio: float = 0.15,
    mode: str = "binomial",
    spans: int = 1,
) -> np.ndarray:
    """Set a random subset of timestamps (all channels at once) to 0, as TS2Vec's timestamp masking.

    ``mode="binomial"``: each timestamp independently with probability ``ratio``.
    ``mode="continuous"``: ``spans`` contiguous spans of ``round(ratio * T / spans)`` steps at random
    positions (they may overlap, so the masked fraction is at most ``ratio``).
    TS2Vec masks latent vectors; in input space 0 is the mean of a z-normalised series, i.e. the
    least informative value.
    """
    x = _as_series(x)
    _check(0 <= ratio <= 1, f"mask: ratio must be in [0, 1], got {ratio}")
    t = x.shape[1]
    if mode == "binomial":
        hide = rng.random(t) < ratio
    elif mode == "continuous":
        _check(spans >= 1, f"mask: spans must be >= 1, got {spans}")
        hide = np.zeros(t, dtype=bool)
        span = min(t, round(ratio * t / spans))
        if span > 0:
            for start in rng.integers(0, t - span + 1, size=spans):
                hide[start : start + span] = True
    else:
        raise ValueError(f"mask: mode must be 'binomial' or 'continuous', got {mode!r}")
    out = x.copy()
    out[:, hide] = 0.0
    return out


def permutation(x: np.ndarray, rng: np.random.Generator, max_segments: int = 5) -> np.ndarray:
    """Cut time into 1..max_segments random segments and shuffle their order (TS-TCC's strong view)."""
    x = _as_series(x)
    _check(max_segments >= 1, f"permutation: max_segments must be >= 1, got {max_segments}")
    t = x.shape[1]
    n = int(rng.integers(1, min(max_segments, t) + 1)) if t else 1
    if n == 1:
        return x.copy()
    cuts = np.sort(rng.choice(np.arange(1, t), size=n - 1, replace=False))
    segments = np.split(np.arange(t), cuts)
    order = np.concatenate([segments[i] for i in rng.permutation(n)])
    return x[:, order]  # fancy indexing copies


AUGMENTATIONS: dict[str, Augmentation] = {
    "jitter": jitter,
    "scaling": scaling,
    "magnitude_warp": magnitude_warp,
    "time_warp": time_warp,
    "crop": crop,
    "mask": mask,
    "permutation": permutation,
}

POLICIES: dict[str, list[dict[str, Any]]] = {
    # TS2Vec (Yue et al. 2022): contextual consistency between a random crop and timestamp masking
    # with p = 0.5 per timestamp (TS2Vec crops two overlapping windows; here each view crops alone).
    "ts2vec": [
        {"name": "crop", "min_ratio": 0.5},
        {"name": "mask", "ratio": 0.5, "mode": "binomial"},
    ],
    # TS-TCC (Eldele et al. 2021) weak view: jitter-and-scale.
    "tstcc_weak": [
        {"name": "jitter", "sigma": 0.03},
        {"name": "scaling", "sigma": 0.1},
    ],
    # TS-TCC strong view: permutation-and-jitter, plus a time warp as a smoother temporal distortion.
    "tstcc_strong": [
        {"name": "permutation", "max_segments": 5},
        {"name": "time_warp", "sigma": 0.2, "p": 0.5},
        {"name": "jitter", "sigma": 0.1},
    ],
    # A general chain for classification pretraining: mostly label-preserving distortions from Um et
    # al. 2017 after a TS2Vec-style crop, each warp/mask applied half of the time.
    "default": [
        {"name": "crop", "min_ratio": 0.6},
        {"name": "scaling", "sigma": 0.1},
        {"name": "jitter", "sigma": 0.03},
        {"name": "magnitude_warp", "sigma": 0.2, "knots": 4, "p": 0.5},
        {"name": "time_warp", "sigma": 0.2, "knots": 4, "p": 0.5},
        {"name": "mask", "ratio": 0.15, "mode": "binomial", "p": 0.5},
    ],
}


#: the one engine (domains/views.py) over these steps and policies
ENGINE = ViewEngine("time-series", AUGMENTATIONS, POLICIES, prepare=lambda x: _as_series(x).copy())
check_policy = ENGINE.check


def apply_policy(x: np.ndarray, rng: np.random.Generator, steps: list[dict[str, Any]]) -> np.ndarray:
    """Apply ``steps`` in order; each ``{"name", "p"=1.0, **params}`` runs with probability ``p``."""
    return ENGINE.apply(x, rng, steps)
