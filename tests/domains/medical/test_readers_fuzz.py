"""Property-based fuzzing of the medical-volume readers through ingest's per-unit path.

Whatever a user's NIfTI/DICOM file or MSD datalist holds (random bytes, a truncated or corrupt
``.nii.gz``, NaN/Inf voxels, a 2D image, several channels, a constant volume, a label map of another
shape), reading a unit never raises out of ingest's ``read_unit``: every record is a kept patch (a
finite float32 ``[1, P, P, P]``) or a quarantine with a non-empty reason, and nothing is lost: a
volume gives its patches (at most ``patches_per_volume``) or its unit's quarantine. Datalist paths
that resolve outside the data root (``..``, absolute elsewhere, a symlink out) are quarantined and
never read.
"""

from __future__ import annotations

import json
import os
import tempfile

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import domains.medical.readers as medical_readers
from domains.medical.readers import SOURCES
from tests.fuzz import check_records, fuzz_examples, read_records

SETTINGS = settings(
    max_examples=fuzz_examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
P = 8  # the smallest patch the readers accept: 8³ patches of ~8-12³ volumes
N_PATCHES = 3
OPTS = {"patch_size": P, "patches_per_volume": N_PATCHES}


def _read(source: str, unit: dict) -> list[dict]:
    return read_records("medical", source, unit)


def _check_records(records: list[dict], most: int = N_PATCHES) -> None:
    def check_x(x: np.ndarray) -> None:
        assert x.shape == (1, P, P, P) and x.dtype == np.float32 and np.isfinite(x).all()

    check_records(records, check_x)
    unit_level = [r for r in records if r["id"].startswith("unit:")]
    # a volume gives its patches, or one quarantine for the whole unit: never both, never too many
    assert (len(unit_level) == 1 and len(records) == 1) or (not unit_level and len(records) <= most)


def _blob(shape: tuple[int, ...], seed: int) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    noise = np.random.default_rng(seed).normal(0, 0.05, shape)
    return (np.select([r < 0.5, r < 0.9], [2.0, 1.0], 0.0) + noise).astype(np.float32)


@st.composite
def volumes(draw: st.DrawFn) -> np.ndarray:
    ndim = draw(st.sampled_from([2, 3, 3, 3, 3, 4]))
    side = st.sampled_from([1, 3, 8, 9, 10, 12])
    shape = tuple(draw(side) for _ in range(ndim))
    if ndim == 4:
        shape = (*shape[:3], draw(st.sampled_from([1, 2])))
    kind = draw(st.sampled_from(["blob", "blob", "constant", "noise"]))
    seed = draw(st.integers(0, 2**16))
    if kind == "blob":
        vol = _blob(shape, seed)
    elif kind == "constant":
        vol = np.full(shape, draw(st.sampled_from([0.0, 5.0])), np.float32)
    else:
        vol = np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)
    flat = vol.reshape(-1)
    for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0):
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return vol.astype(draw(st.sampled_from([np.float32, np.float32, np.int16])))


@SETTINGS
@given(data=st.binary(min_size=0, max_size=500), suffix=st.sampled_from([".nii", ".nii.gz", ".dcm"]))
def test_random_bytes_are_quarantined_not_fatal(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        series = os.path.join(d, "series")
        os.makedirs(series)
        path = os.path.join(series if suffix == ".dcm" else d, "fuzz" + suffix)
        with open(path, "wb") as f:
            f.write(data)
        if suffix == ".dcm":
            (unit,) = SOURCES["dicom"].list_units(series=series, split="train", **OPTS)
            records = _read("dicom", unit)
        else:
            (unit,) = SOURCES["nifti"].list_units(images=path, split="train", **OPTS)
            records = _read("nifti", unit)
    _check_records(records)
    assert len(records) == 1 and records[0]["row"] is None


@settings(SETTINGS, max_examples=fuzz_examples(20))
@example(vol=np.zeros((10, 10, 10), np.float32), suffix=".nii.gz", label=None, cut=None)  # constant
@example(vol=np.full((9, 9, 9), 5, np.int16), suffix=".nii", label="same", cut=None)
@example(vol=_blob((10, 10), 0), suffix=".nii", label=None, cut=None)  # a 2D image
@example(
    vol=np.where(_blob((10, 10, 10), 0) > 1.5, np.nan, 1).astype(np.float32),
    suffix=".nii",
    label=None,
    cut=None,
)
@example(vol=_blob((10, 10, 10), 0), suffix=".nii.gz", label=None, cut=0.5)  # corrupt gzip
# cut inside gzip's trailer only: every voxel decodes, the stream's CRC and length are missing
@example(vol=_blob((8, 8, 8), 0), suffix=".nii.gz", label=None, cut=0.998)
@example(vol=_blob((10, 10, 10), 0), suffix=".nii.gz", label="other", cut=None)
@given(
    vol=volumes(),
    suffix=st.sampled_from([".nii", ".nii.gz"]),
    label=st.sampled_from([None, "same", "other"]),
    cut=st.one_of(st.none(), st.floats(0.0, 0.99)),
)
def test_malformed_volumes_give_their_patches_or_a_reason(
    vol: np.ndarray, suffix: str, label: str | None, cut: float | None
) -> None:
    with tempfile.TemporaryDirectory() as d:
        image = os.path.join(d, "img" + suffix)
        nib.save(nib.Nifti1Image(vol, np.eye(4)), image)
        if cut is not None:  # a truncated (for .nii.gz: corrupt gzip) file
            with open(image, "rb") as f:
                data = f.read()
            with open(image, "wb") as f:
                f.write(data[: int(cut * len(data))])
        labels = None
        if label is not None:
            shape = vol.shape[:3] if label == "same" else tuple(s + 1 for s in vol.shape[:3])
            labels = os.path.join(d, "seg" + suffix)
            seg = (np.arange(int(np.prod(shape))).reshape(shape) % 3).astype(np.int16)
            nib.save(nib.Nifti1Image(seg, np.eye(4)), labels)
        (unit,) = SOURCES["nifti"].list_units(images=image, labels=labels, split="train", **OPTS)
        records = _read("nifti", unit)
    # with a label map, sampling is balanced over the k <= 3 classes present: ceil(n / k) per class
    _check_records(
        records, most=N_PATCHES if label is None else max(-(-N_PATCHES // k) * k for k in (1, 2, 3))
    )
    squeezed = vol[..., 0] if vol.ndim == 4 and vol.shape[3] == 1 else vol  # one channel: a 3D volume
    bad = (
        cut is not None
        or squeezed.ndim != 3
        or min(squeezed.shape) < P
        or not np.isfinite(vol).all()
        or label == "other"
        or float(squeezed.max()) == float(squeezed.min())
    )
    if bad:  # unusable as a whole: quarantined with its reason, not silently skipped
        assert len(records) == 1 and records[0]["id"].startswith("unit:"), records
    elif cut is None:
        assert not any(r["id"].startswith("unit:") for r in records), records


# ---------------------------------------------------------------- MSD datalist

ENTRY_KINDS = ("good", "blank", "missing", "dotdot", "abs_inside", "abs_outside", "symlink_out", "corrupt")


@SETTINGS
@given(kinds=st.lists(st.sampled_from(ENTRY_KINDS), min_size=1, max_size=5), with_label=st.booleans())
def test_datalist_entries_are_all_accounted_for_and_confined(kinds: list[str], with_label: bool) -> None:
    with tempfile.TemporaryDirectory() as outside, tempfile.TemporaryDirectory() as d:
        root = os.path.join(d, "Task01")
        os.makedirs(os.path.join(root, "imagesTr"))
        secret = os.path.join(outside, "secret.nii.gz")
        nib.save(nib.Nifti1Image(_blob((10, 10, 10), 0), np.eye(4)), secret)
        good = os.path.join(root, "imagesTr", "good.nii.gz")
        nib.save(nib.Nifti1Image(_blob((10, 10, 10), 1), np.eye(4)), good)
        seg = os.path.join(root, "imagesTr", "good_seg.nii.gz")
        nib.save(nib.Nifti1Image(np.round(_blob((10, 10, 10), 1)).astype(np.int16), np.eye(4)), seg)
        with open(os.path.join(root, "imagesTr", "corrupt.nii.gz"), "wb") as f:
            f.write(b"\x1f\x8b\x08\x00not really gzip")
        os.symlink(secret, os.path.join(root, "imagesTr", "link.nii.gz"))
        paths = {
            "good": "imagesTr/good.nii.gz",
            "blank": "",
            "missing": "imagesTr/nope.nii.gz",
            "dotdot": os.path.relpath(secret, root),
            "abs_inside": good,
            "abs_outside": secret,
            "symlink_out": "imagesTr/link.nii.gz",
            "corrupt": "imagesTr/corrupt.nii.gz",
        }
        entries = [
            {"image": paths[k], **({"label": "imagesTr/good_seg.nii.gz"} if with_label else {})}
            for k in kinds
        ]
        datalist = os.path.join(root, "dataset.json")
        with open(datalist, "w") as f:
            json.dump({"training": entries}, f)
        units = SOURCES["msd_datalist"].list_units(datalist=datalist, **OPTS)
        assert len(units) == len(kinds), "every datalist entry is one unit"
        results = [_read("msd_datalist", u) for u in units]
    for k, records in zip(kinds, results, strict=True):
        _check_records(records)
        if k in ("good", "abs_inside"):
            assert records and all(r["reason"] is None for r in records), records
        else:
            assert len(records) == 1 and records[0]["id"].startswith("unit:"), records
        if k in ("dotdot", "abs_outside", "symlink_out"):
            assert "path escapes the data root" in records[0]["reason"], records


def test_escaping_datalist_paths_are_never_read(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    root = os.path.join(str(tmp_path), "Task02")
    os.makedirs(root)
    outside = os.path.join(str(tmp_path), "outside.nii.gz")
    nib.save(nib.Nifti1Image(_blob((10, 10, 10), 0), np.eye(4)), outside)
    inside = os.path.join(root, "in.nii.gz")
    nib.save(nib.Nifti1Image(_blob((10, 10, 10), 1), np.eye(4)), inside)
    os.symlink(outside, os.path.join(root, "sneaky.nii.gz"))
    entries = [
        {"image": "../../../../../../../../etc/passwd"},
        {"image": "in.nii.gz", "label": "../outside.nii.gz"},  # the label map escapes
        {"image": outside},
        {"image": "sneaky.nii.gz"},
        {"image": inside},
    ]
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump({"training": entries}, f)
    opened: list[dict] = []
    real_load = medical_readers.load_volumes

    def spy(files: dict, **kw: object) -> dict:
        opened.append({k: os.path.realpath(v) for k, v in files.items()})
        return real_load(files, **kw)

    monkeypatch.setattr(medical_readers, "load_volumes", spy)
    units = SOURCES["msd_datalist"].list_units(datalist=os.path.join(root, "dataset.json"), **OPTS)
    results = [_read("msd_datalist", u) for u in units]
    for records in results[:4]:
        assert len(records) == 1 and records[0]["row"] is None
        assert "path escapes the data root" in records[0]["reason"]
    assert results[4] and all(r["reason"] is None for r in results[4])
    assert opened == [{"image": os.path.realpath(inside)}], "only files inside the data root were opened"
    # a base_dir given explicitly is the root: the same entries inside it are fine
    units = SOURCES["msd_datalist"].list_units(
        datalist=os.path.join(root, "dataset.json"), base_dir=str(tmp_path), **OPTS
    )
    assert _read("msd_datalist", units[2])[0]["reason"] is None
