"""Point-cloud augmentations and named view policies.

Every augmentation is ``f(x, rng, **params) -> np.ndarray`` on a ``[N, 3]`` float32 cloud (Z up),
returns a new array of the **same N** (so views batch without padding) and never writes to ``x``.
Points removed by dropout, crops or masks are replaced by copies of kept points: a max-pooled
encoder (PointNet, DGCNN) is unchanged by duplicates, the trick of PointNet++'s random dropout.

References: Qi et al. 2017 (PointNet / PointNet++: rotation about the up axis, jitter N(0, 0.01)
clipped at 0.05, anisotropic scaling in [2/3, 3/2], random point dropout); Afham et al. 2022
(CrossPoint: rotation, scaling, translation, jitter, dropout for the intra-modal pair); Wang et al.
2021 (OcCo: partial views from a viewpoint); Ren et al. 2024 (Point-CMAE: two random patch masks of
the same cloud form a positive pair).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from domains.pointcloud.sampling import farthest_point_sampling
from domains.views import Augmentation, ViewEngine, as_float32


def _cloud(x: np.ndarray) -> np.ndarray:
    return as_float32(x, "[points, 3] cloud", ndim=2, last=3)


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


def _refill(x: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x[keep]`` padded back to ``len(x)`` points with random copies of kept points."""
    kept = x[keep]
    if len(kept) == 0:
        return x.copy()
    extra = rng.integers(0, len(kept), size=len(x) - len(kept))
    return np.concatenate([kept, kept[extra]]).astype(np.float32)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix in SO(3) (QR of a gaussian matrix, sign-corrected)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.astype(np.float32)


def rotate_up(x: np.ndarray, rng: np.random.Generator, max_angle: float = 360.0) -> np.ndarray:
    """Rotate about the up (Z) axis by an angle uniform in [-max_angle/2, max_angle/2] degrees."""
    x = _cloud(x)
    a = np.deg2rad(rng.uniform(-max_angle / 2, max_angle / 2))
    c, s = np.cos(a), np.sin(a)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float32)
    return x @ rot.T


def rotate_so3(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation (the harder, orientation-free setting)."""
    return _cloud(x) @ random_rotation(rng).T


def scale(x: np.ndarray, rng: np.random.Generator, low: float = 2 / 3, high: float = 1.5) -> np.ndarray:
    """Anisotropic scaling: each axis by its own factor uniform in [low, high]."""
    x = _cloud(x)
    _check(0 < low <= high, f"scale: need 0 < low <= high, got {low}, {high}")
    return (x * rng.uniform(low, high, size=(1, 3))).astype(np.float32)


def translate(x: np.ndarray, rng: np.random.Generator, shift: float = 0.2) -> np.ndarray:
    """Shift the whole cloud by a vector uniform in [-shift, shift]^3."""
    x = _cloud(x)
    return (x + rng.uniform(-shift, shift, size=(1, 3))).astype(np.float32)


def jitter(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.01, clip: float = 0.05) -> np.ndarray:
    """Per-point gaussian noise N(0, sigma), clipped to [-clip, clip] (PointNet)."""
    x = _cloud(x)
    _check(sigma >= 0 and clip >= 0, f"jitter: sigma and clip must be >= 0, got {sigma}, {clip}")
    return (x + np.clip(rng.normal(0.0, sigma, size=x.shape), -clip, clip)).astype(np.float32)


def dropout(x: np.ndarray, rng: np.random.Generator, max_ratio: float = 0.875) -> np.ndarray:
    """Drop a random fraction uniform in [0, max_ratio] of the points (PointNet++'s random dropout)."""
    x = _cloud(x)
    _check(0 <= max_ratio < 1, f"dropout: max_ratio must be in [0, 1), got {max_ratio}")
    ratio = rng.uniform(0, max_ratio)
    keep = rng.random(len(x)) >= ratio
    return _refill(x, keep, rng)


def crop(
    x: np.ndarray, rng: np.random.Generator, min_keep: float = 0.5, max_keep: float = 0.85
) -> np.ndarray:
    """A partial view: keep the fraction of points nearest a random viewpoint on a sphere of radius 2
    around the (unit-sphere) shape, as a depth sensor sees one side of an object (OcCo)."""
    x = _cloud(x)
    _check(
        0 < min_keep <= max_keep <= 1, f"crop: need 0 < min_keep <= max_keep <= 1, got {min_keep}, {max_keep}"
    )
    view = rng.normal(size=3)
    view = 2.0 * view / np.linalg.norm(view)
    n_keep = max(1, round(rng.uniform(min_keep, max_keep) * len(x)))
    dist = ((x - view) ** 2).sum(axis=1)
    keep = np.zeros(len(x), dtype=bool)
    keep[np.argsort(dist, kind="stable")[:n_keep]] = True
    return _refill(x, keep, rng)


def mask(
    x: np.ndarray, rng: np.random.Generator, ratio: float = 0.6, groups: int = 32, group_size: int = 32
) -> np.ndarray:
    """Point-MAE-style patch masking: ``groups`` patches (FPS centres + their ``group_size`` nearest
    points); a random ``ratio`` of the patches is hidden and only the visible points stay.

    Point-CMAE's positive pair is two such random masks of the same cloud: with this step in a
    policy, the pretrain stage draws each view's mask independently, which is exactly that pairing.
    """
    x = _cloud(x)
    _check(0 <= ratio < 1, f"mask: ratio must be in [0, 1), got {ratio}")
    _check(
        groups >= 1 and group_size >= 1,
        f"mask: groups and group_size must be >= 1, got {groups}, {group_size}",
    )
    g = min(groups, len(x))
    centres = x[farthest_point_sampling(x, g, start=int(rng.integers(len(x))))]
    d = ((x[None, :, :] - centres[:, None, :]) ** 2).sum(-1)  # [G, N]
    k = min(group_size, len(x))
    members = np.argpartition(d, k - 1, axis=1)[:, :k]
    hidden = rng.permutation(g)[: int(round(ratio * g))]
    keep = np.ones(len(x), dtype=bool)
    keep[members[hidden].reshape(-1)] = False
    if not keep.any():  # every point belonged to a hidden patch: keep the visible patches' points
        keep[members[np.setdiff1d(np.arange(g), hidden)].reshape(-1)] = True
    return _refill(x, keep, rng)


AUGMENTATIONS: dict[str, Augmentation] = {
    "rotate_up": rotate_up,
    "rotate_so3": rotate_so3,
    "scale": scale,
    "translate": translate,
    "jitter": jitter,
    "dropout": dropout,
    "crop": crop,
    "mask": mask,
}

POLICIES: dict[str, list[dict[str, Any]]] = {
    # CrossPoint's intra-modal pair (rotation about up, scaling, translation, jitter, dropout) plus a
    # partial-view crop half of the time: label-preserving for upright shapes.
    "default": [
        {"name": "crop", "min_keep": 0.5, "max_keep": 0.85, "p": 0.5},
        {"name": "rotate_up"},
        {"name": "scale", "low": 2 / 3, "high": 1.5},
        {"name": "translate", "shift": 0.1},
        {"name": "jitter", "sigma": 0.01, "clip": 0.05},
        {"name": "dropout", "max_ratio": 0.5, "p": 0.5},
    ],
    "crosspoint": [
        {"name": "rotate_up"},
        {"name": "scale", "low": 0.8, "high": 1.25},
        {"name": "translate", "shift": 0.1},
        {"name": "jitter", "sigma": 0.01, "clip": 0.05},
        {"name": "dropout", "max_ratio": 0.875, "p": 0.5},
    ],
    # orientation-free: full SO(3) rotations
    "so3": [
        {"name": "rotate_so3"},
        {"name": "scale", "low": 0.8, "high": 1.25},
        {"name": "jitter", "sigma": 0.01, "clip": 0.05},
    ],
    # OcCo-style partial views: two different sides of one object
    "partial": [
        {"name": "crop", "min_keep": 0.4, "max_keep": 0.7},
        {"name": "rotate_up", "max_angle": 30.0},
        {"name": "jitter", "sigma": 0.01, "clip": 0.05},
    ],
    # Point-CMAE: two independent random patch masks (60 %) of the same, lightly scaled cloud
    "pointcmae": [
        {"name": "scale", "low": 0.8, "high": 1.25},
        {"name": "translate", "shift": 0.1},
        {"name": "mask", "ratio": 0.6, "groups": 32, "group_size": 32},
    ],
}


#: the one engine (domains/views.py) over these steps and policies
ENGINE = ViewEngine("point-cloud", AUGMENTATIONS, POLICIES, prepare=lambda x: _cloud(x).copy())
check_policy = ENGINE.check


def apply_policy(x: np.ndarray, rng: np.random.Generator, steps: list[dict[str, Any]]) -> np.ndarray:
    """Apply ``steps`` in order; each ``{"name", "p"=1.0, **params}`` runs with probability ``p``."""
    return ENGINE.apply(x, rng, steps)
