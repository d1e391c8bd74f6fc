"""3D views from MONAI array transforms, as named policies.

A step is ``{"name", "p", **params}``; ``name`` picks a MONAI transform, ``p`` is its ``prob`` and the
other keys go to its constructor (so MONAI's own argument checks apply). All randomness comes from
the caller's ``numpy`` generator: the composed transforms are re-seeded from it on every call, so a
seeded generator reproduces a view exactly.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import numpy as np


def _crop_resize(roi_scale: float = 0.6, max_roi_scale: float = 1.0, prob: float = 1.0) -> Any:
    """A random sub-cube (``roi_scale``..``max_roi_scale`` of each side) resized back to the patch:
    SimCLR's random-resized crop in 3D (MONAI ``RandScaleCrop`` + ``Resize``)."""
    from monai.transforms import Randomizable, RandScaleCrop, Resize, Transform

    class CropResize(Randomizable, Transform):
        def __init__(self) -> None:
            self.crop = RandScaleCrop(roi_scale=roi_scale, max_roi_scale=max_roi_scale, random_size=True)
            self.prob = prob

        def set_random_state(self, seed=None, state=None):  # noqa: ANN001, ANN202 - MONAI's signature
            super().set_random_state(seed, state)
            self.crop.set_random_state(seed, state)
            return self

        def randomize(self, data: Any = None) -> None:
            self._do = self.R.random() < self.prob

        def __call__(self, img: Any) -> Any:
            self.randomize()
            if not self._do:
                return img
            return Resize(spatial_size=tuple(img.shape[1:]), mode="trilinear")(self.crop(img))

    return CropResize()


def _monai(name: str) -> Any:
    import monai.transforms as mt

    return getattr(mt, name)


# step name → (MONAI transform, name of its probability argument)
TRANSFORMS: dict[str, tuple[Any, str | None]] = {
    "crop_resize": (_crop_resize, "prob"),
    "flip": (lambda **kw: _monai("RandFlip")(**kw), "prob"),
    "affine": (lambda **kw: _monai("RandAffine")(**kw), "prob"),
    "bias_field": (lambda **kw: _monai("RandBiasField")(**kw), "prob"),
    "noise": (lambda **kw: _monai("RandGaussianNoise")(**kw), "prob"),
    "smooth": (lambda **kw: _monai("RandGaussianSmooth")(**kw), "prob"),
    "scale_intensity": (lambda **kw: _monai("RandScaleIntensity")(**kw), "prob"),
    "shift_intensity": (lambda **kw: _monai("RandShiftIntensity")(**kw), "prob"),
    "cutout": (lambda **kw: _monai("RandCoarseDropout")(**kw), "prob"),
}

POLICIES: dict[str, list[dict[str, Any]]] = {
    # Contrastive views of a brain patch: a resized sub-crop, a left-right flip (lobes are bilateral),
    # a small rotation/scale, an MRI bias field, intensity jitter, noise or blur, and cutout.
    "default": [
        {"name": "crop_resize", "roi_scale": 0.6, "p": 1.0},
        {"name": "flip", "spatial_axis": 0, "p": 0.5},
        {
            "name": "affine",
            "rotate_range": [0.26, 0.26, 0.26],
            "scale_range": [0.1, 0.1, 0.1],
            "padding_mode": "border",
            "p": 0.3,
        },
        {"name": "bias_field", "coeff_range": [0.0, 0.3], "p": 0.5},
        {"name": "scale_intensity", "factors": 0.2, "p": 0.8},
        {"name": "shift_intensity", "offsets": 0.2, "p": 0.8},
        {"name": "noise", "std": 0.1, "p": 0.5},
        {"name": "smooth", "sigma_x": [0.5, 1.0], "sigma_y": [0.5, 1.0], "sigma_z": [0.5, 1.0], "p": 0.2},
        {
            "name": "cutout",
            "holes": 2,
            "spatial_size": 6,
            "max_spatial_size": 12,
            "fill_value": 0.0,
            "p": 0.5,
        },
    ],
    # Intensity-only views: the geometry of the two views is identical (for dense objectives).
    "intensity": [
        {"name": "bias_field", "coeff_range": [0.0, 0.3], "p": 0.5},
        {"name": "scale_intensity", "factors": 0.2, "p": 0.8},
        {"name": "shift_intensity", "offsets": 0.2, "p": 0.8},
        {"name": "noise", "std": 0.1, "p": 0.5},
    ],
}


@lru_cache(maxsize=16)
def _compose(steps_json: str) -> Any:
    """Build (once per distinct policy) the MONAI ``Compose``; unknown names/params raise here."""
    from monai.transforms import Compose

    steps = json.loads(steps_json)
    out = []
    for step in steps:
        name = step.get("name")
        if name not in TRANSFORMS:
            raise KeyError(f"unknown medical view {name!r}; known: {', '.join(sorted(TRANSFORMS))}")
        p = float(step.get("p", 1.0))
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name}: p must be in [0, 1], got {p}")
        make, prob_arg = TRANSFORMS[name]
        params = {k: v for k, v in step.items() if k not in ("name", "p")}
        try:
            out.append(make(**params, **{prob_arg: p}))
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from None
    return Compose(out)


def apply_policy(x: np.ndarray, rng: np.random.Generator, steps: list[dict[str, Any]]) -> np.ndarray:
    """One view of a ``[C, D, H, W]`` patch; a new float32 array (the input is never written to)."""
    if np.asarray(x).ndim != 4:
        raise ValueError(f"expected a [channels, D, H, W] patch, got shape {np.asarray(x).shape}")
    import torch
    from monai.data import get_track_meta, set_track_meta

    compose = _compose(json.dumps(steps, sort_keys=True))
    compose.set_random_state(seed=int(rng.integers(2**31 - 1)))
    # A plain tensor without MONAI metadata tracking: views need no affine, and MetaTensor
    # bookkeeping costs more than the flips and intensity changes themselves.
    tracked = get_track_meta()
    set_track_meta(False)
    try:
        out = compose(torch.tensor(np.asarray(x, dtype=np.float32)))
    finally:
        set_track_meta(tracked)
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32))
