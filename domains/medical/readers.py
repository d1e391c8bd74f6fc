"""Medical-volume sources: NIfTI files, DICOM series, MSD/MONAI datalists, and the offline brain
patch set (MNI152 from nilearn, Colin27 + the AAL atlas from Debian ``mricron-data``).

A unit is one volume (image and, when there is one, its label map). ``read_unit`` loads it with
MONAI's ``LoadImaged``, reorients to RAS, optionally resamples to ``pixdim`` mm, normalises the
intensities (MRI z-score or a CT window) and yields random ``patch_size``³ crops as rows with ``x``
``[1, D, H, W]`` float32. A crop's segmentation mask (tissue or label classes) travels in
``meta["seg"]`` (zlib + base64 uint8). A volume that cannot be used (corrupt gzip, 2D where 3D is
expected, NaN/Inf voxels, a label whose shape does not match its image) raises, and ingest
quarantines it with that reason.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from functools import partial
from importlib.util import find_spec
from typing import Any

import numpy as np

from domains import io
from domains.base import Row, Source
from domains.io import confine, expand_paths, folders_with_files, hash_split, relative_names, stem
from domains.medical.volumes import (
    TISSUES,
    VolumeError,
    block_ids,
    choose_test_blocks,
    crop,
    encode_mask,
    load_volumes,
    normalise_intensity,
    sample_centres,
    tissues_from_gmm,
    tissues_from_maps,
    valid_centres,
)

MRICRON = "/usr/share/mricron/templates"
#: AAL region codes (third column of aal.nii.txt): the thousands digit is the lobe
AAL_LOBES = {
    2: "frontal",
    3: "limbic",  # insula, grouped with the limbic lobe (cingulum, hippocampus, amygdala)
    4: "limbic",
    5: "occipital",
    6: "parietal",
    7: "subcortical",
    8: "temporal",
    9: "cerebellum",
}
BRAIN_VOLUMES = ("mni152", "colin27")

# Options every volume source shares, with their defaults.
PATCH_DEFAULTS: dict[str, Any] = {
    "patch_size": 32,
    "patches_per_volume": 64,
    "pixdim": None,
    "intensity": "mri",
    "window": None,
    "seed": 0,
}


def _patch_opts(opts: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(opts) - set(PATCH_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; accepted: {sorted(PATCH_DEFAULTS)}")
    out = {**PATCH_DEFAULTS, **opts}
    if not 8 <= int(out["patch_size"]) <= 256:
        raise ValueError(f"patch_size must be in [8, 256], got {out['patch_size']}")
    if out["intensity"] not in ("mri", "ct", "none"):
        raise ValueError(f"intensity must be 'mri', 'ct' or 'none', not {out['intensity']!r}")
    return out


NIFTI_EXTENSIONS = (".nii.gz", ".nii")


VOLUME_EXTENSIONS = (*NIFTI_EXTENSIONS, ".gz", ".dcm")


def _stem(path: str) -> str:
    return stem(path, VOLUME_EXTENSIONS)


# ---------------------------------------------------------------- generic volumes


def _volume_rows(unit: dict[str, Any]) -> Iterator[Row]:
    """Random patches of one image (+ optional label map); the label's class at the centre is the
    row's ``label``, its crop the row's segmentation mask. A unit with a ``root`` (a datalist's base
    directory) may only read files inside it."""
    opts = {k: unit[k] for k in PATCH_DEFAULTS}
    files = {"image": unit["image"]}
    if unit.get("label"):
        files["label"] = unit["label"]
    if unit.get("root"):
        for f in files.values():
            if not isinstance(f, str):
                raise VolumeError(f"expected one file path per key, got {f!r}")
            confine(f, unit["root"], VolumeError)
    vols = load_volumes(files, reader=unit.get("reader"), pixdim=opts["pixdim"])
    raw = vols["image"]
    p = int(opts["patch_size"])
    if min(raw.shape[1:]) < p:
        raise VolumeError(f"{unit['image']}: volume {raw.shape[1:]} is smaller than patch_size={p}")
    foreground = raw[0] > raw.min()
    image = normalise_intensity(raw, opts["intensity"], opts["window"])
    label = vols["label"][0].round().astype(np.int64) if "label" in vols else None
    rng = np.random.default_rng(
        [int(opts["seed"]), int(hashlib.sha256(unit["id"].encode()).hexdigest()[:8], 16)]
    )
    cand = valid_centres(np.ones(raw.shape[1:], dtype=bool), p) & foreground
    centres = sample_centres(cand, int(opts["patches_per_volume"]), rng, label)
    if not len(centres) and int(opts["patches_per_volume"]) > 0:  # else the volume would vanish silently
        raise VolumeError(
            f"{unit['image']}: no foreground voxel (above the volume's minimum {float(raw.min()):g}) where a "
            f"{p}^3 patch fits: a constant or empty volume"
        )
    for i, c in enumerate(centres):
        meta: dict[str, Any] = {"volume": unit["id"], "path": unit["image"], "centre": c.tolist(), "patch": p}
        if label is not None:
            meta["seg"] = encode_mask(crop(label, c, p))
        yield {
            "id": f"{unit['id']}/{i:05d}",
            "x": crop(image, c, p),
            "label": None if label is None else str(int(label[tuple(c)])),
            "split": unit.get("split"),
            "group": unit["id"],
            "meta": meta,
        }


def _split_for(name: str, split: str | None, test_fraction: float | None, seed: int) -> str | None:
    if split is not None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train', 'test' or null, not {split!r}")
        return split
    return hash_split(name, test_fraction, seed) if test_fraction else None


def _nifti_units(
    images: str | Sequence[str],
    labels: str | Sequence[str] | None = None,
    split: str | None = None,
    test_fraction: float | None = None,
    **opts: Any,
) -> list[dict[str, Any]]:
    opts = _patch_opts(opts)
    imgs = expand_paths(images, NIFTI_EXTENSIONS, "images")
    labs = expand_paths(labels, NIFTI_EXTENSIONS, "labels") if labels else [None] * len(imgs)
    if len(labs) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(labs)} label files; pair them one to one")
    return [
        {
            "id": name,
            "image": im,
            "label": lab,
            "split": _split_for(name, split, test_fraction, opts["seed"]),
            **opts,
        }
        for name, im, lab in zip(relative_names(imgs, VOLUME_EXTENSIONS), imgs, labs, strict=True)
    ]


def _dicom_units(
    series: str | Sequence[str], split: str | None = None, test_fraction: float | None = None, **opts: Any
) -> list[dict[str, Any]]:
    """One unit per directory holding one DICOM series (read by MONAI's ``PydicomReader``)."""
    opts = _patch_opts(opts)
    dirs = folders_with_files(series, "series")
    return [
        {
            "id": name,
            "image": d,
            "reader": "PydicomReader",
            "split": _split_for(name, split, test_fraction, opts["seed"]),
            **opts,
        }
        for name, d in zip(relative_names(dirs, ()), dirs, strict=True)
    ]


def _datalist_units(
    datalist: str,
    base_dir: str | None = None,
    sections: dict[str, str] | None = None,
    **opts: Any,
) -> list[dict[str, Any]]:
    """The Medical Segmentation Decathlon / MONAI datalist JSON: ``{"training": [{"image", "label"}],
    "validation": [...], "test": [paths]}``; ``sections`` maps a key to its split. Every path must
    resolve inside ``base_dir`` (default: the JSON's folder), the data root: one that escapes it
    (``..``, an absolute path elsewhere, a symlink pointing out) is quarantined at read time, never read."""
    from monai.data import load_decathlon_datalist

    opts = _patch_opts(opts)
    sections = sections or {"training": "train", "validation": "test", "test": "test"}
    path = os.path.abspath(os.path.expanduser(datalist))
    root = os.path.abspath(os.path.expanduser(base_dir)) if base_dir else os.path.dirname(path)
    with open(path) as f:
        keys = set(json.load(f))
    units = []
    for key, split in sections.items():
        if key not in keys:
            continue
        # load_decathlon_datalist resolves paths against base_dir (default: the JSON's folder)
        items = load_decathlon_datalist(path, is_segmentation=True, data_list_key=key, base_dir=base_dir)
        for item in items:
            units.append(
                {
                    "id": _stem(item["image"]),
                    "image": item["image"],
                    "label": item.get("label"),
                    "split": split,
                    "root": root,
                    **opts,
                }
            )
    if not units:
        raise ValueError(f"{path}: none of the sections {sorted(sections)} is in the datalist")
    return units


# ---------------------------------------------------------------- offline brain patches


def _nilearn_file(kind: str) -> str:
    spec = find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("nilearn is not installed; the brain_patches source needs its bundled MNI152 maps")
    root = next(iter(spec.submodule_search_locations))
    return os.path.join(root, "datasets", "data", f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz")


def _mricron_file(name: str) -> str:
    path = os.path.join(MRICRON, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing; install it with: apt-get install mricron-data")
    return path


def aal_lobe_table() -> dict[int, str]:
    """AAL region index → coarse lobe, from ``aal.nii.txt`` (index, name, code)."""
    out = {}
    with open(_mricron_file("aal.nii.txt")) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                out[int(parts[0])] = AAL_LOBES[int(parts[2]) // 1000]
    return out


LOBES = tuple(sorted(set(AAL_LOBES.values())))


def _brain_units(
    volumes: Sequence[str] = BRAIN_VOLUMES,
    test_fraction: float = 0.25,
    block_size: int | None = None,
    **opts: Any,
) -> list[dict[str, Any]]:
    opts = _patch_opts(opts)
    bad = [v for v in volumes if v not in BRAIN_VOLUMES]
    if bad:
        raise ValueError(f"unknown brain volume(s) {bad}; known: {', '.join(BRAIN_VOLUMES)}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    # Checked here so a missing Debian package is a one-line error before any Ray task starts.
    _mricron_file("aal.nii.gz")
    if "mni152" in volumes and not os.path.isfile(_nilearn_file("t1")):
        raise FileNotFoundError(f"{_nilearn_file('t1')} is missing from the installed nilearn")
    block = int(block_size or round(1.5 * int(opts["patch_size"])))
    if block < int(opts["patch_size"]):
        raise ValueError(f"block_size ({block}) must be >= patch_size ({opts['patch_size']})")
    return [{"volume": v, "test_fraction": test_fraction, "block_size": block, **opts} for v in volumes]


def _read_brain(unit: dict[str, Any]) -> Iterator[Row]:
    """Patches of one template brain on the AAL grid (MNI space, 1 mm unless ``pixdim``).

    Spatial hold-out: the grid is cut into ``block_size``³ blocks and, per lobe, a ``test_fraction``
    of its blocks are test regions — the same regions in every volume, since all share the atlas
    grid. Test patches lie entirely inside test blocks and training patches entirely outside them,
    so overlapping crops never carry test voxels into training. ``group`` is volume + block.
    """
    name, p = unit["volume"], int(unit["patch_size"])
    if name == "mni152":
        files = {
            "image": _nilearn_file("t1"),
            "gm": _nilearn_file("gm"),
            "wm": _nilearn_file("wm"),
            "atlas": _mricron_file("aal.nii.gz"),
        }
    else:  # Colin27, brain-extracted, already on the AAL grid
        files = {"image": _mricron_file("ch2bet.nii.gz"), "atlas": _mricron_file("aal.nii.gz")}
    vols = load_volumes(files, pixdim=unit["pixdim"], match_to="atlas", nearest=("atlas",))
    raw = vols["image"]
    brain = raw[0] > 0  # both templates are skull-stripped
    if name == "mni152":
        # nilearn ships the probability maps scaled to 0..255
        tissues = tissues_from_maps(brain, vols["gm"][0] / 255.0, vols["wm"][0] / 255.0)
    else:
        tissues = tissues_from_gmm(raw[0], brain, seed=int(unit["seed"]))
    vols.pop("gm", None), vols.pop("wm", None)
    table = aal_lobe_table()
    atlas = vols.pop("atlas")[0].round().astype(np.int64)
    lobe_index = {lobe: i + 1 for i, lobe in enumerate(LOBES)}
    lut = np.zeros(max(table) + 1, dtype=np.int64)
    for region, lobe in table.items():
        lut[region] = lobe_index[lobe]
    lobes = lut[np.clip(atlas, 0, len(lut) - 1)]
    image = normalise_intensity(raw, unit["intensity"], unit["window"])
    del raw, atlas

    block = int(unit["block_size"])
    blocks = block_ids(lobes.shape, block)
    test_blocks = choose_test_blocks(blocks, lobes, unit["test_fraction"], int(unit["seed"]), block**3 // 50)
    test_region = np.isin(blocks, sorted(test_blocks))
    n = int(unit["patches_per_volume"])
    n_test = max(1, round(n * unit["test_fraction"]))
    rng = np.random.default_rng([int(unit["seed"]), BRAIN_VOLUMES.index(name)])
    i = 0
    for split, region, count in (("train", ~test_region, n - n_test), ("test", test_region, n_test)):
        cand = valid_centres(region, p) & (lobes > 0)
        for c in sample_centres(cand, count, rng, lobes):
            b = int(blocks[tuple(c)])
            yield {
                "id": f"{name}/{split}/{i:05d}",
                "x": crop(image, c, p),
                "label": LOBES[int(lobes[tuple(c)]) - 1],
                "split": split,
                "group": f"{name}/block{b}",
                "meta": {
                    "volume": name,
                    "centre": c.tolist(),
                    "patch": p,
                    "block": b,
                    "seg": encode_mask(crop(tissues, c, p)),
                    "seg_classes": list(TISSUES),
                },
            }
            i += 1


# ---------------------------------------------------------------- registry

SOURCES: dict[str, Source] = {
    "brain_patches": Source(
        "brain_patches",
        _brain_units,
        _read_brain,
        "offline MNI152 (nilearn) + Colin27 (mricron-data) patches labelled by AAL lobe, tissue masks; "
        "options: volumes, patch_size, patches_per_volume, test_fraction, block_size, pixdim, seed",
    ),
    "nifti": Source(
        "nifti",
        _nifti_units,
        _volume_rows,
        "NIfTI images (.nii/.nii.gz; options: images, labels, split | test_fraction, patch options)",
    ),
    "dicom": Source(
        "dicom",
        _dicom_units,
        _volume_rows,
        "DICOM series, one directory each (options: series, split | test_fraction, patch options)",
    ),
    "msd_datalist": Source(
        "msd_datalist",
        _datalist_units,
        _volume_rows,
        "Medical Segmentation Decathlon / MONAI datalist JSON (options: datalist, base_dir, sections)",
    ),
}


#: all rows of a source in this process (tests, notebooks): ``read_source("name", **options)``
read_source = partial(io.read_source, SOURCES, "medical")
