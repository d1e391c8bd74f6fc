"""Loading, checking and normalising 3D volumes with MONAI, and cutting them into patches.

Everything that touches a whole volume lives here; the rows that leave a reader are patches
``[1, D, H, W]`` float32, so a worker holds one volume at a time, never a data set of them.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

#: tissue classes of the segmentation masks (index = value in the mask)
TISSUES = ("background", "csf", "gm", "wm")


def _reader_for(path: str) -> str | None:
    """The MONAI reader auto-selection would pick for NIfTI (None: let it choose). Named, because
    auto-selection constructs every reader first, and the nvImageCodec DICOM one warns in every
    worker of a machine without its GPU plugin."""
    return "NibabelReader" if path.lower().endswith((".nii", ".nii.gz")) else None


#: axis labels (beginning, end) of the RAS orientation every volume is put in
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


class VolumeError(ValueError):
    """A volume that cannot be used; the message is the quarantine reason."""


# ---------------------------------------------------------------- loading


def check_gzip(path: str) -> None:
    """Raise if a ``.gz`` file is truncated or corrupt. nibabel stops at the last voxel it needs, so
    a file cut inside gzip's trailer (its CRC and length) loads whole voxels and would pass; reading
    to the end of the stream checks both (one extra decompression pass)."""
    with gzip.open(path, "rb") as f:
        while f.read(1 << 22):
            pass


def load_volumes(
    files: dict[str, str],
    reader: str | None = None,
    pixdim: float | Sequence[float] | None = None,
    match_to: str | None = None,
    nearest: Sequence[str] = ("label",),
) -> dict[str, np.ndarray]:
    """``{key: path}`` → ``{key: [C, X, Y, Z] float32}`` via MONAI's ``LoadImaged``, in RAS orientation.

    ``match_to`` resamples every other key onto that key's grid (e.g. a template onto its atlas);
    ``pixdim`` then resamples all to that spacing in mm. Keys in ``nearest`` are label maps
    (nearest-neighbour interpolation). Checks (each a :class:`VolumeError` with a reason): the file
    can be read (corrupt gzip, not an image), the image is 3D with one channel, voxels are finite,
    and every other key has the same spatial shape as the first one unless ``match_to`` aligns them.
    """
    from monai.transforms import EnsureChannelFirstd, LoadImaged, Orientationd, ResampleToMatchd, Spacingd

    keys = list(files)
    data: dict[str, Any] = {}
    for key in keys:
        try:
            # One key at a time, so the reason names the file that failed.
            if str(files[key]).endswith(".gz"):
                check_gzip(files[key])
            chosen = reader or _reader_for(str(files[key]))
            loaded = LoadImaged(keys=key, reader=chosen, image_only=True)({key: files[key]})
            data[key] = EnsureChannelFirstd(keys=key)(loaded)[key]
        except VolumeError:
            raise
        except Exception as e:
            msg = str(e).strip().splitlines()
            detail = next((m for m in reversed(msg) if m.strip()), type(e).__name__)
            raise VolumeError(f"{files[key]}: cannot read image ({type(e).__name__}: {detail[:300]})") from e
    for key in keys:
        arr = np.asarray(data[key])
        if arr.ndim != 4:
            raise VolumeError(
                f"{files[key]}: expected a 3D volume, got a {arr.ndim - 1}D image of shape {arr.shape[1:]}"
            )
        if arr.shape[0] != 1:
            raise VolumeError(
                f"{files[key]}: expected a single-channel 3D volume, got {arr.shape[0]} channels"
            )
        if min(arr.shape[1:]) < 2:
            raise VolumeError(f"{files[key]}: expected a 3D volume, got shape {arr.shape[1:]} (a 2D slice?)")
        bad = int((~np.isfinite(arr)).sum())
        if bad:
            raise VolumeError(f"{files[key]}: {bad} of {arr.size} voxels are NaN/Inf")
    first = keys[0]
    if match_to is None:
        for key in keys[1:]:
            if data[key].shape[1:] != data[first].shape[1:]:
                raise VolumeError(
                    f"{files[key]}: {key} shape {tuple(data[key].shape[1:])} does not match "
                    f"{first} shape {tuple(data[first].shape[1:])}"
                )
    modes = ["nearest" if k in nearest else "bilinear" for k in keys]
    # labels given: MONAI's default changes (to the meta-tensor's "space"), and it warns in every
    # reader worker until it does; these are the labels every figure so far was measured with
    data = Orientationd(keys=keys, axcodes="RAS", labels=RAS_LABELS)(data)
    if match_to is not None:
        for k in (k for k in keys if k != match_to):
            shifted = _integer_shift(data[k], data[match_to])
            if shifted is not None:
                data[k] = shifted
                continue
            data = ResampleToMatchd(
                keys=k, key_dst=match_to, mode="nearest" if k in nearest else "bilinear", padding_mode="zeros"
            )(data)
    if pixdim is not None:
        data = Spacingd(keys=keys, pixdim=pixdim, mode=modes)(data)
    return {k: np.ascontiguousarray(np.asarray(data[k], dtype=np.float32)) for k in keys}


def _integer_shift(src: Any, dst: Any) -> Any | None:
    """``src`` on ``dst``'s grid when the two grids differ only by a whole-voxel translation (MNI152
    vs the AAL grid): an exact crop/pad instead of a full interpolation (seconds per 1 mm volume).
    ``None`` when a real resampling is needed."""
    rel = np.linalg.inv(np.asarray(dst.affine, dtype=np.float64)) @ np.asarray(src.affine, dtype=np.float64)
    t = rel[:3, 3]
    if not (np.allclose(rel[:3, :3], np.eye(3), atol=1e-5) and np.allclose(t, np.round(t), atol=1e-4)):
        return None
    # voxel i of src sits at voxel i + t of dst
    t = np.round(t).astype(int)
    out = np.zeros((src.shape[0], *dst.shape[1:]), dtype=np.float32)
    s_arr = np.asarray(src)
    src_sl, dst_sl = [], []
    for ax in range(3):
        lo = max(0, t[ax])
        hi = min(dst.shape[1 + ax], src.shape[1 + ax] + t[ax])
        if hi <= lo:
            return out
        dst_sl.append(slice(lo, hi))
        src_sl.append(slice(lo - t[ax], hi - t[ax]))
    out[(slice(None), *dst_sl)] = s_arr[(slice(None), *src_sl)]
    from monai.data import MetaTensor

    return MetaTensor(out, affine=dst.affine, meta=dict(dst.meta))


# ---------------------------------------------------------------- intensity


def normalise_intensity(
    image: np.ndarray, mode: str = "mri", window: Sequence[float] | None = None
) -> np.ndarray:
    """MRI: z-score over non-zero (foreground) voxels, background stays 0 (MONAI
    ``NormalizeIntensity(nonzero=True)``). CT: a ``window`` ``[level, width]`` in HU scaled to
    [0, 1] and clipped (MONAI ``ScaleIntensityRange``). ``none``: unchanged."""
    from monai.transforms import NormalizeIntensity, ScaleIntensityRange

    if mode == "mri":
        return np.asarray(NormalizeIntensity(nonzero=True)(image), dtype=np.float32)
    if mode == "ct":
        level, width = window if window is not None else (40.0, 400.0)  # soft-tissue window
        lo, hi = level - width / 2, level + width / 2
        return np.asarray(ScaleIntensityRange(lo, hi, 0.0, 1.0, clip=True)(image), dtype=np.float32)
    if mode == "none":
        return image.astype(np.float32)
    raise ValueError(f"intensity mode must be 'mri', 'ct' or 'none', not {mode!r}")


# ---------------------------------------------------------------- tissue masks


def tissues_from_maps(brain: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """Hard tissue labels from probability maps: in the brain, argmax of (CSF = 1 - GM - WM, GM, WM)."""
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    lab = np.argmax(np.stack([csf, gm, wm]), axis=0).astype(np.uint8) + 1
    return np.where(brain, lab, 0).astype(np.uint8)


def tissues_from_gmm(image: np.ndarray, brain: np.ndarray, seed: int = 0) -> np.ndarray:
    """Three-class Gaussian mixture on T1 intensities inside the brain (as FSL FAST's initialisation),
    classes ordered by mean intensity: CSF < GM < WM. For volumes without tissue maps (Colin27)."""
    from sklearn.mixture import GaussianMixture

    v = image[brain].reshape(-1, 1).astype(np.float64)
    rng = np.random.default_rng(seed)
    fit = v[rng.choice(len(v), size=min(len(v), 200_000), replace=False)]
    gmm = GaussianMixture(3, random_state=seed).fit(fit)
    order = np.argsort(gmm.means_.ravel())
    rank = np.empty(3, dtype=np.uint8)
    rank[order] = np.arange(1, 4, dtype=np.uint8)
    out = np.zeros(image.shape, dtype=np.uint8)
    out[brain] = rank[gmm.predict(v)]
    return out


def encode_mask(mask: np.ndarray) -> str:
    """uint8 mask → compact text (zlib + base64) that fits in a row's JSON ``meta``."""
    return base64.b64encode(zlib.compress(np.ascontiguousarray(mask, dtype=np.uint8).tobytes(), 1)).decode()


def decode_mask(text: str, shape: Sequence[int]) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8).reshape(tuple(shape))


# ---------------------------------------------------------------- spatial hold-out


def block_ids(shape: Sequence[int], block: int) -> np.ndarray:
    """Index of the ``block``³ cube each voxel falls in (a grid anchored at voxel 0)."""
    idx = [np.arange(n) // block for n in shape]
    nb = [int(i.max()) + 1 for i in idx]
    return (
        idx[0][:, None, None] * nb[1] * nb[2] + idx[1][None, :, None] * nb[2] + idx[2][None, None, :]
    ).astype(np.int32)


def choose_test_blocks(
    blocks: np.ndarray, labels: np.ndarray | None, fraction: float, seed: int, min_voxels: int
) -> set[int]:
    """Blocks held out for testing: per class (the class most voxels of a block carry), a
    ``fraction`` of its blocks and at least one, so every class appears in the test regions.
    Without labels: a ``fraction`` of the blocks holding foreground, at random."""
    rng = np.random.default_rng(seed)
    fg = labels > 0 if labels is not None else None
    ids, counts = np.unique(blocks[fg] if fg is not None else blocks, return_counts=True)
    ids = ids[counts >= min_voxels]
    if labels is None:
        k = max(1, round(fraction * len(ids)))
        return {int(b) for b in rng.choice(ids, size=min(k, len(ids)), replace=False)}
    # one pass: voxel counts per (block, class), instead of a mask per block
    n_cls = int(labels.max()) + 1
    table = np.bincount(
        blocks[fg].astype(np.int64) * n_cls + labels[fg], minlength=(int(blocks.max()) + 1) * n_cls
    )
    table = table.reshape(-1, n_cls)
    dominant: dict[int, list[int]] = {}
    for b in ids:
        dominant.setdefault(int(np.argmax(table[b])), []).append(int(b))
    out: set[int] = set()
    for _cls, bs in sorted(dominant.items()):
        if len(bs) < 2:  # a class with one block keeps it for training
            continue
        k = max(1, round(fraction * len(bs)))
        out.update(int(b) for b in rng.choice(bs, size=k, replace=False))
    return out


def valid_centres(region: np.ndarray, patch: int) -> np.ndarray:
    """Boolean map of centres whose ``patch``³ window ``[c - patch//2, c - patch//2 + patch)`` lies
    entirely inside ``region`` (and inside the volume)."""
    from scipy.ndimage import minimum_filter

    # minimum_filter with an even size spans [c - size//2, c + size//2 - 1]: exactly the window.
    inside = minimum_filter(region.astype(np.uint8), size=patch, mode="constant", cval=0)
    return inside.astype(bool)


def sample_centres(
    candidates: np.ndarray, n: int, rng: np.random.Generator, strata: np.ndarray | None = None
) -> np.ndarray:
    """``n`` distinct voxel coordinates ``[n, 3]`` among ``candidates`` (bool map); balanced over the
    values of ``strata`` at those voxels when given (each stratum gets an equal share)."""
    coords = np.argwhere(candidates)
    if len(coords) == 0 or n <= 0:
        return np.zeros((0, 3), dtype=np.int64)
    if strata is None:
        pick = rng.choice(len(coords), size=min(n, len(coords)), replace=False)
        return coords[np.sort(pick)]
    values = strata[tuple(coords.T)]
    classes = np.unique(values)
    share = int(np.ceil(n / len(classes)))
    picks = []
    for c in classes:
        members = np.flatnonzero(values == c)
        picks.append(rng.choice(members, size=min(share, len(members)), replace=False))
    pick = np.sort(np.concatenate(picks))
    return coords[pick]


def crop(vol: np.ndarray, centre: Sequence[int], patch: int) -> np.ndarray:
    """The ``patch``³ window around ``centre`` of ``[C, X, Y, Z]`` (or ``[X, Y, Z]``) ``vol``."""
    s = [int(c) - patch // 2 for c in centre]
    sl = tuple(slice(a, a + patch) for a in s)
    return vol[(..., *sl)].copy()
