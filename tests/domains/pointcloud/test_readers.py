"""Readers as users meet them: real mesh formats through trimesh, point-set files, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import trimesh

from domains import get_domain
from domains.pointcloud.readers import SH3D_DIR, classify_name, stratified_split
from domains.pointcloud.sampling import farthest_point_sampling, mesh_to_points
from tests.conftest import requires_data


@pytest.fixture(scope="module")
def pc():  # noqa: ANN201
    return get_domain("pointcloud")


def _read(pc, source: str, **options) -> list[dict]:  # noqa: ANN001
    src = pc.sources[source]
    return [row for unit in src.list_units(**options) for row in src.read_unit(unit)]


def _ingest_like(pc, rows: list[dict]) -> list[tuple[str, str | None]]:  # noqa: ANN001
    return [(r["id"], pc.validate(r)) for r in rows]


@pytest.mark.parametrize("ext", ["off", "ply", "obj", "stl"])
def test_mesh_formats_give_unit_sphere_clouds_with_modelnet_labels(pc, tmp_path: Path, ext: str) -> None:  # noqa: ANN001
    path = tmp_path / "chair" / "train" / f"chair_0001.{ext}"
    path.parent.mkdir(parents=True)
    trimesh.creation.box(extents=(1.0, 2.0, 3.0)).export(path)
    [row] = _read(pc, "mesh_files", paths=str(tmp_path / "**" / f"*.{ext}"), points=256)
    assert row["label"] == "chair" and row["split"] == "train" and row["x"].shape == (256, 3)
    assert pc.validate(row) is None
    x = pc.normalise(row["x"])
    np.testing.assert_allclose(np.linalg.norm(x, axis=1).max(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    # points lie on the box's surface: at least one coordinate at its face (|x|=.5, |y|=1 or |z|=1.5)
    raw = row["x"]
    on_face = np.isclose(np.abs(raw), [0.5, 1.0, 1.5], atol=1e-4).any(axis=1)
    assert on_face.all()


def test_modelnet_off_with_glued_header_is_read(pc, tmp_path: Path) -> None:  # noqa: ANN001
    # Several ModelNet40 files start "OFF8 12 0" on one line; trimesh alone rejects them.
    box = trimesh.creation.box()
    lines = [f"OFF{len(box.vertices)} {len(box.faces)} 0"]
    lines += [" ".join(map(str, v)) for v in box.vertices]
    lines += ["3 " + " ".join(map(str, f)) for f in box.faces]
    (tmp_path / "box.off").write_text("\n".join(lines) + "\n")
    [row] = _read(pc, "mesh_files", paths=str(tmp_path / "box.off"), points=64)
    assert pc.validate(row) is None and row["x"].shape == (64, 3)


def test_sampling_is_deterministic_per_mesh_and_fps_spreads_points() -> None:
    mesh = trimesh.creation.icosphere(subdivisions=3)
    a, _ = mesh_to_points(mesh, 128)
    b, _ = mesh_to_points(mesh.copy(), 128)
    np.testing.assert_array_equal(a, b)  # identical meshes -> identical clouds (exact dedup finds copies)
    pts = np.random.default_rng(0).normal(size=(2000, 3))
    idx = farthest_point_sampling(pts, 50)
    assert len(set(idx.tolist())) == 50
    chosen = pts[idx]
    d = np.linalg.norm(chosen[:, None] - chosen[None], axis=-1) + np.eye(50) * 1e9
    rand = pts[:50]
    dr = np.linalg.norm(rand[:, None] - rand[None], axis=-1) + np.eye(50) * 1e9
    assert d.min() > dr.min()  # FPS keeps points apart; a random subset does not


def test_point_set_files_hdf5_npy_npz_parquet(pc, tmp_path: Path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 300, 3)).astype(np.float32)
    with h5py.File(tmp_path / "ply_data_train0.h5", "w") as f:  # the ModelNet40 HDF5 release layout
        f["data"] = data
        f["label"] = np.array([[0], [1], [2], [1], [0]], dtype=np.uint8)
    (tmp_path / "shape_names.txt").write_text("airplane\nbathtub\nbed\n")
    rows = _read(
        pc,
        "arrays",
        paths=str(tmp_path / "*.h5"),
        points=128,
        rows_per_unit=2,
        shape_names=str(tmp_path / "shape_names.txt"),
    )
    assert [r["label"] for r in rows] == ["airplane", "bathtub", "bed", "bathtub", "airplane"]
    assert all(r["split"] == "train" and r["x"].shape == (128, 3) for r in rows)

    np.save(tmp_path / "one.npy", data[0])
    np.savez(tmp_path / "many.npz", points=data[:3], label=np.array([4, 5, 6]))
    assert _read(pc, "arrays", paths=str(tmp_path / "one.npy"), points=300)[0]["x"].shape == (300, 3)
    assert [r["label"] for r in _read(pc, "arrays", paths=str(tmp_path / "many.npz"))] == ["4", "5", "6"]

    long = pd.DataFrame(
        {
            "id": np.repeat(["a", "b"], 100),
            "x": rng.normal(size=200),
            "y": rng.normal(size=200),
            "z": rng.normal(size=200),
            "label": "cup",
        }
    )
    long.loc[long.index[:3], "x"] = np.nan
    long.to_parquet(tmp_path / "clouds.parquet")
    rows = _read(pc, "parquet", paths=str(tmp_path / "clouds.parquet"))
    assert [(r["id"], r["label"], r["x"].shape) for r in rows] == [
        ("a", "cup", (100, 3)),
        ("b", "cup", (100, 3)),
    ]
    assert "non-finite" in pc.validate(rows[0]) and pc.validate(rows[1]) is None
    assert "too few points" in pc.validate({"x": data[0, :5], "meta": {}})


def test_class_keywords_and_stratified_split() -> None:
    assert classify_name("Desk lamp") == "lamp"
    assert classify_name("Sink cabinet") == "toilet/bath/sink"
    assert classify_name("Window blind") is None
    assert classify_name("Bedside table") == "shelf/cabinet"
    assert classify_name("Bar stool") == "chair"
    assert classify_name("Coffee table") == "table"
    assert classify_name("Chest freezer") == "appliance"
    ids = {"a": [f"a{i}" for i in range(10)], "b": ["b0", "b1"], None: ["u0", "u1"]}
    split = stratified_split(ids, 0.2)
    assert sum(split[i] == "test" for i in ids["a"]) == 2 and sum(split[i] == "test" for i in ids["b"]) == 1
    assert split["u0"] == split["u1"] == "train"  # unlabelled shapes only ever pretrain
    assert split == stratified_split(dict(reversed(list(ids.items()))), 0.2)  # order-independent


def test_procedural_fallback_is_labelled_synthetic(pc) -> None:  # noqa: ANN001
    rows = _read(pc, "procedural", per_class=2, points=64)
    assert {r["label"] for r in rows} == {"box", "cylinder", "cone", "capsule", "torus", "sphere"}
    assert all(r["meta"]["synthetic"] and pc.validate(r) is None for r in rows)


@requires_data(os.path.isdir(SH3D_DIR), reason="Debian sweethome3d-furniture not installed")
def test_sweethome3d_catalogue_gives_13_classes_and_disjoint_groups(pc) -> None:  # noqa: ANN001
    units = pc.sources["sweethome3d"].list_units()
    models = [m for u in units for m in u["models"]]
    assert len({m["label"] for m in models}) == 13 and len(models) > 400
    assert len({m["id"] for m in models}) == len(models)
    test_classes = {m["label"] for m in models if m["split"] == "test"}
    assert len(test_classes) == 13  # stratified: every class is in the test split
    [row, *_] = pc.sources["sweethome3d"].read_unit(
        {**units[0], "models": units[0]["models"][:1], "points": 64}
    )
    assert row["x"].shape == (64, 3) and pc.validate(row) is None and row["group"] == row["id"]


def test_missing_sweethome3d_gives_the_apt_command(pc, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(FileNotFoundError, match="apt-get install sweethome3d-furniture"):
        pc.sources["sweethome3d"].list_units(root=str(tmp_path))
