"""Medical readers: NIfTI / DICOM / MSD datalist through MONAI, and a mismatched label map quarantined
with its image (bad images themselves: tests/domains/test_reader_contract.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from domains.medical.readers import read_source
from domains.medical.volumes import decode_mask
from stages.ingest.__main__ import read_unit
from tests.domains.medical.dicom_series import write_ct_series

P = 16  # patch side used throughout: small and fast


def _volume(shape: tuple[int, ...] = (24, 28, 20), seed: int = 0) -> np.ndarray:
    """A blob phantom: three nested intensity shells (like CSF < GM < WM) plus noise."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape[:3]], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    img = np.select([r < 0.4, r < 0.7, r < 1.0], [3.0, 2.0, 1.0], 0.0)
    return (img + np.random.default_rng(seed).normal(0, 0.05, img.shape) * (img > 0)).astype(np.float32)


def _save(path: Path, arr: np.ndarray, affine: np.ndarray | None = None) -> str:
    nib.save(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine), str(path))
    return str(path)


def _ingest(source: str, **options: object) -> list[dict]:
    """Units as ingest lists them, each read through ingest's quarantining ``read_unit``."""
    from domains.medical.readers import SOURCES

    out = []
    for unit in SOURCES[source].list_units(**options):
        out += read_unit({"unit": json.dumps(unit, sort_keys=True)}, "medical", source)
    return out


def test_nifti_patches_carry_masks_and_centre_labels(tmp_path: Path) -> None:
    img = _volume()
    lab = np.round(img).astype(np.int16)
    rows = list(
        read_source(
            "nifti",
            images=_save(tmp_path / "a.nii.gz", img),
            labels=_save(tmp_path / "a_seg.nii.gz", lab),
            split="train",
            patch_size=P,
            patches_per_volume=10,
        )
    )
    assert len(rows) == 10
    for r in rows:
        assert r["x"].shape == (1, P, P, P) and r["x"].dtype == np.float32
        assert r["group"] == "a" and r["split"] == "train"
        mask = decode_mask(r["meta"]["seg"], (P, P, P))
        # the row label is the class of the centre voxel of its mask
        assert r["label"] == str(int(mask[P // 2, P // 2, P // 2]))
    # MRI normalisation: z-scored over the foreground
    fg = np.concatenate([r["x"][r["x"] != 0] for r in rows])
    assert abs(float(fg.mean())) < 0.5 and 0.5 < float(fg.std()) < 1.5


def test_ct_window_scales_to_unit_range(tmp_path: Path) -> None:
    hu = (_volume() * 400.0 - 1000.0).astype(np.float32)  # air .. soft tissue, in HU
    rows = list(
        read_source(
            "nifti",
            images=_save(tmp_path / "ct.nii.gz", hu),
            patch_size=P,
            patches_per_volume=4,
            intensity="ct",
            window=[40, 400],
        )
    )
    xs = np.stack([r["x"] for r in rows])
    assert xs.min() >= 0.0 and xs.max() <= 1.0


def test_spacing_is_normalised_to_pixdim(tmp_path: Path) -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])  # 2 mm voxels -> resampled to 1 mm doubles each side
    rows = list(
        read_source(
            "nifti",
            images=_save(tmp_path / "c.nii.gz", _volume((12, 14, 10)), affine),
            patch_size=P,
            patches_per_volume=2,
            pixdim=1.0,
        )
    )
    assert len(rows) == 2  # a 12x14x10 volume could not hold a 16³ patch before resampling


def test_msd_datalist_pairs_and_splits(tmp_path: Path) -> None:
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    img = _volume()
    for name in ("s1", "s2"):
        _save(tmp_path / "imagesTr" / f"{name}.nii.gz", img)
        _save(tmp_path / "labelsTr" / f"{name}.nii.gz", np.round(img).astype(np.int16))
    datalist = {
        "training": [{"image": "imagesTr/s1.nii.gz", "label": "labelsTr/s1.nii.gz"}],
        "validation": [{"image": "imagesTr/s2.nii.gz", "label": "labelsTr/s2.nii.gz"}],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(datalist))
    rows = list(
        read_source(
            "msd_datalist", datalist=str(tmp_path / "dataset.json"), patch_size=P, patches_per_volume=3
        )
    )
    assert {(r["group"], r["split"]) for r in rows} == {("s1", "train"), ("s2", "test")}
    assert all("seg" in r["meta"] for r in rows)


def test_dicom_series_is_read_as_one_volume(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    d = tmp_path / "series1"
    d.mkdir()
    write_ct_series(d, (_volume((20, 20, 18)) * 300).astype(np.int16))
    rows = list(read_source("dicom", series=str(d), patch_size=P, patches_per_volume=2, intensity="none"))
    assert len(rows) == 2 and rows[0]["x"].shape == (1, P, P, P)
    assert rows[0]["group"] == "series1"


def test_a_label_map_of_another_shape_is_quarantined_with_its_image(tmp_path: Path) -> None:
    # (bad images themselves: tests/domains/test_reader_contract.py)
    images = [_save(tmp_path / f"img{i}.nii.gz", _volume()) for i in range(2)]
    labels = [
        _save(tmp_path / "lab0.nii.gz", np.zeros((24, 28, 20), np.int16)),
        _save(tmp_path / "lab_bad.nii.gz", np.zeros((24, 28, 19), np.int16)),
    ]
    out = _ingest("nifti", images=images, labels=labels, patch_size=P, patches_per_volume=2)
    rejected = [r["reason"] for r in out if r["reason"]]
    assert len([r for r in out if r["reason"] is None]) == 2  # the image whose label map matches
    assert len(rejected) == 1 and "does not match" in rejected[0] and "lab_bad.nii.gz" in rejected[0]


def test_unknown_option_and_missing_files_fail_at_listing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="patch_sise"):
        list(read_source("nifti", images=str(tmp_path / "*.nii.gz"), patch_sise=16))
    with pytest.raises(FileNotFoundError, match="no file matches"):
        list(read_source("nifti", images=str(tmp_path / "*.nii.gz")))
