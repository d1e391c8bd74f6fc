"""Pixel augmentations for frame stacks ``[S*C, H, W]`` and named view policies.

* ``shift`` — DrQ's random shift (Kostrikov et al. 2021): replicate-pad by ``pad`` pixels, then crop
  back to ``H x W`` at a random offset; one offset for the whole stack, so motion between the stacked
  frames (velocity) is preserved. CURL's random crop (84 from 100) is the same transformation when
  frames are rendered at the training size, which is what we store. ``axes: y`` shifts vertically
  only: a horizontal shift of a few pixels is a change of the cart's position ``x`` in CartPole
  (the whole random-policy range of ``x`` spans about ±5 of 64 pixels), so views that differ by it
  teach the encoder to ignore ``x``.
* ``cutout`` — RAD's random cutout (Laskin et al. 2020): one zeroed rectangle, shared by the stack.
* ``intensity`` — DrQ-v2-style global brightness scaling ``x * (1 + N(0, sigma))``, clipped to [0, 1].

Every augmentation is ``f(x, rng, **params) -> new float32 array``; randomness only from ``rng``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from domains.base import ViewPolicy
from domains.views import Augmentation, ViewEngine, as_float32


def _as_stack(x: np.ndarray) -> np.ndarray:
    return as_float32(x, "[planes, H, W] frame stack", ndim=3)


def shift(x: np.ndarray, rng: np.random.Generator, pad: int = 4, axes: str = "xy") -> np.ndarray:
    x = _as_stack(x)
    if pad < 0:
        raise ValueError(f"shift: pad must be >= 0, got {pad}")
    if axes not in ("xy", "x", "y"):
        raise ValueError(f"shift: axes must be one of xy, x, y, got {axes!r}")
    if pad == 0:
        return x.copy()
    h, w = x.shape[1:]
    pad_y, pad_x = (pad if "y" in axes else 0), (pad if "x" in axes else 0)
    padded = np.pad(x, ((0, 0), (pad_y, pad_y), (pad_x, pad_x)), mode="edge")
    dy, dx = rng.integers(0, 2 * pad + 1, size=2)  # both drawn always: one rng stream per axes value
    dy, dx = (dy if pad_y else 0), (dx if pad_x else 0)
    return np.ascontiguousarray(padded[:, dy : dy + h, dx : dx + w])


def cutout(x: np.ndarray, rng: np.random.Generator, min_size: int = 4, max_size: int = 16) -> np.ndarray:
    x = _as_stack(x)
    if not 0 < min_size <= max_size:
        raise ValueError(f"cutout: need 0 < min_size <= max_size, got {min_size}, {max_size}")
    h, w = x.shape[1:]
    sh, sw = (int(rng.integers(min_size, max_size + 1)) for _ in range(2))
    y0, x0 = int(rng.integers(0, max(1, h - sh + 1))), int(rng.integers(0, max(1, w - sw + 1)))
    out = x.copy()
    out[:, y0 : y0 + sh, x0 : x0 + sw] = 0.0
    return out


def intensity(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.05) -> np.ndarray:
    x = _as_stack(x)
    if sigma < 0:
        raise ValueError(f"intensity: sigma must be >= 0, got {sigma}")
    return np.clip(x * (1.0 + rng.normal(0.0, sigma)), 0.0, 1.0).astype(np.float32)


AUGMENTATIONS: dict[str, Augmentation] = {"shift": shift, "cutout": cutout, "intensity": intensity}

POLICIES: dict[str, list[dict[str, Any]]] = {
    # DrQ / CURL: random shift alone is the augmentation that matters most for pixel RL.
    "drq": [{"name": "shift", "pad": 4}],
    "default": [{"name": "shift", "pad": 4}],
    # RAD-style stronger views
    "rad": [{"name": "shift", "pad": 4}, {"name": "cutout", "p": 0.5}, {"name": "intensity", "sigma": 0.05}],
    "none": [],
}


#: the one engine (domains/views.py) over these steps and policies
ENGINE = ViewEngine("RL", AUGMENTATIONS, POLICIES, prepare=lambda x: _as_stack(x).copy())


def resolve(policy_name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The validated steps of a named policy, or of explicit ``params["steps"]``."""
    return ENGINE.resolve(ViewPolicy(policy_name, params or {}))


def apply_policy(x: np.ndarray, rng: np.random.Generator, steps: list[dict[str, Any]]) -> np.ndarray:
    return ENGINE.apply(x, rng, steps)
