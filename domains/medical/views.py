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

from domains.views import PolicyError, ViewEngine, accepted_parameters


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


# step name → the MONAI transform's constructor (looked up lazily: MONAI loads only when used)
TRANSFORMS: dict[str, Any] = {
    "crop_resize": lambda: _crop_resize,
    "flip": lambda: _monai("RandFlip"),
    "affine": lambda: _monai("RandAffine"),
    "bias_field": lambda: _monai("RandBiasField"),
    "noise": lambda: _monai("RandGaussianNoise"),
    "smooth": lambda: _monai("RandGaussianSmooth"),
    "scale_intensity": lambda: _monai("RandScaleIntensity"),
    "shift_intensity": lambda: _monai("RandShiftIntensity"),
    "cutout": lambda: _monai("RandCoarseDropout"),
}
#: every transform takes its probability as ``prob``; a step's ``p`` goes there
PROB = "prob"

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


class MonaiViews(ViewEngine):
    """The shared engine (names, policies, validation, ``views.policy[i]`` errors) with MONAI doing
    the applying: the steps compose into one MONAI ``Compose`` whose transforms draw their own
    ``prob`` from a random state re-seeded from the caller's generator on every call."""

    def parameters(self, name: str) -> tuple[str, ...]:
        # a MONAI constructor's own arguments (its probability comes from the step's ``p``)
        return tuple(p for p in accepted_parameters(self.steps[name](), skip=0) if p != PROB)

    def apply(
        self, x: np.ndarray, rng: np.random.Generator, steps: list[dict[str, Any]], **_: Any
    ) -> np.ndarray:
        """One view of a ``[C, D, H, W]`` patch; a new float32 array (the input is never written to)."""
        if np.asarray(x).ndim != 4:
            raise ValueError(f"expected a [channels, D, H, W] patch, got shape {np.asarray(x).shape}")
        self.check(steps)
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


ENGINE = MonaiViews("medical", TRANSFORMS, POLICIES)


@lru_cache(maxsize=16)
def _compose(steps_json: str) -> Any:
    """Build (once per distinct, validated policy) the MONAI ``Compose``."""
    from monai.transforms import Compose

    out = []
    for i, step in enumerate(json.loads(steps_json)):
        params = {k: v for k, v in step.items() if k not in ("name", "p")}
        try:
            out.append(TRANSFORMS[step["name"]]()(**params, **{PROB: float(step.get("p", 1.0))}))
        except (TypeError, ValueError) as e:  # MONAI's own checks of the values
            raise PolicyError(f"views.policy[{i}]: {step['name']}: {e}") from None
    return Compose(out)


def apply_policy(x: np.ndarray, rng: np.random.Generator, steps: list[dict[str, Any]]) -> np.ndarray:
    """One view of a ``[C, D, H, W]`` patch; a new float32 array (the input is never written to)."""
    return ENGINE.apply(x, rng, steps)
