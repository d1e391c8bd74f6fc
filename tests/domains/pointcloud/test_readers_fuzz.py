"""Property-based fuzzing of the point-cloud readers through ingest's per-unit path.

Whatever a user's mesh or point-set file holds (random bytes, truncated text, NaN/Inf/huge vertices,
faces indexing nothing, zero faces, arrays of the wrong rank, missing keys, labels of the wrong
length, points without an id), reading a unit never raises out of ingest's ``read_unit``: every
record is a kept row (a finite float32 ``[points, 3]`` cloud, normalised to the unit sphere) or a
quarantine with a non-empty reason, and nothing is lost: a mesh gives one record, a point-set file
one record per shape, a Parquet table one per id (or its unit's quarantine).
"""

from __future__ import annotations

import os
import tempfile

import h5py
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domains.pointcloud.readers import SOURCES
from tests.fuzz import check_records, fuzz_examples, read_records

SETTINGS = settings(
    max_examples=fuzz_examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
POINTS = 64

coord = st.one_of(
    st.floats(-10, 10, width=32),
    # huge but summable in float32; coordinates near float32's max have their own test below
    st.sampled_from([0.0, 1.0, float("nan"), float("inf"), float("-inf"), 1e30, -1e30, 1e-30]),
)


def _read(source: str, unit: dict) -> list[dict]:
    return read_records("pointcloud", source, unit)


def _check_records(records: list[dict]) -> None:
    def check_x(x: np.ndarray) -> None:
        assert x.ndim == 2 and x.shape[1] == 3 and 32 <= len(x) <= POINTS, x.shape
        assert x.dtype == np.float32 and np.isfinite(x).all()
        assert np.linalg.norm(x, axis=1).max() <= 1.0 + 1e-4

    check_records(records, check_x)


def _units(source: str, path: str, **opts: object) -> list[dict]:
    return SOURCES[source].list_units(paths=path, points=POINTS, **opts)


# ---------------------------------------------------------------- meshes


@st.composite
def meshes(draw: st.DrawFn) -> tuple[str, bytes]:
    """A mesh file in one of the four formats: a real shape (a jittered cube-ish cloud of vertices)
    or garbage vertices, random (possibly out-of-range) faces, maybe none, maybe truncated text."""
    ext = draw(st.sampled_from(["off", "obj", "ply", "stl"]))
    nv = draw(st.integers(0, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    v = rng.uniform(-1, 1, (nv, 3))
    for _ in range(draw(st.integers(0, 3))):  # a few drawn (NaN/Inf/huge) coordinates
        if nv:
            v[draw(st.integers(0, nv - 1)), draw(st.integers(0, 2))] = draw(coord)
    nf = draw(st.integers(0, 40))
    hi = max(nv - 1, 0) + draw(st.sampled_from([0, 0, 0, 3]))  # sometimes faces index past the end
    f = rng.integers(0, hi + 1, (nf, 3)) if nf else np.zeros((0, 3), int)
    vs = [" ".join(repr(float(c)) for c in row) for row in v]
    if ext == "off":
        text = (
            f"OFF\n{nv} {nf} 0\n"
            + "".join(s + "\n" for s in vs)
            + "".join(f"3 {a} {b} {c}\n" for a, b, c in f)
        )
    elif ext == "obj":
        text = "".join(f"v {s}\n" for s in vs) + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f)
    elif ext == "ply":
        text = (
            f"ply\nformat ascii 1.0\nelement vertex {nv}\nproperty float x\nproperty float y\nproperty float z\n"
            f"element face {nf}\nproperty list uchar int vertex_indices\nend_header\n"
            + "".join(s + "\n" for s in vs)
            + "".join(f"3 {a} {b} {c}\n" for a, b, c in f)
        )
    else:  # ASCII STL: triangles spell out their vertices, so faces index v cyclically
        tri = [(vs[a % nv], vs[b % nv], vs[c % nv]) for a, b, c in f] if nv else []
        text = "solid s\n" + "".join(
            "facet normal 0 0 0\nouter loop\n" + "".join(f"vertex {p}\n" for p in t) + "endloop\nendfacet\n"
            for t in tri
        )
        text += "endsolid s\n"
    data = text.encode()
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    if draw(st.booleans()):
        data = data.replace(b"\n", b"\nnan junk\n", 1)  # a garbage line
    return ext, data if cut is None else data[:cut]


@SETTINGS
@given(data=st.binary(min_size=0, max_size=400), ext=st.sampled_from(["off", "ply", "obj", "stl"]))
def test_random_bytes_meshes_are_quarantined_not_fatal(data: bytes, ext: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"fuzz.{ext}")
        with open(path, "wb") as f:
            f.write(data)
        (unit,) = _units("mesh_files", path)
        records = _read("mesh_files", unit)
    _check_records(records)
    assert len(records) == 1


@SETTINGS
@given(mesh=meshes())
def test_malformed_meshes_give_exactly_one_record(mesh: tuple[str, bytes]) -> None:
    ext, data = mesh
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "chair", f"m.{ext}")
        os.makedirs(os.path.dirname(path))
        with open(path, "wb") as f:
            f.write(data)
        (unit,) = _units("mesh_files", path)
        records = _read("mesh_files", unit)
    _check_records(records)
    assert len(records) == 1, "one mesh, one record: its cloud or its reason"


# ---------------------------------------------------------------- point sets: npy / npz / hdf5


@st.composite
def point_arrays(draw: st.DrawFn) -> np.ndarray:
    """Arrays of any rank 0..4 (mostly [S, P, C] / [P, C]), with drawn coordinates sprinkled in."""
    ndim = draw(st.sampled_from([0, 1, 2, 2, 3, 3, 3, 4]))
    shape = tuple(
        draw(st.integers(0, 4) if i == 0 and ndim == 3 else st.integers(0, 50)) for i in range(ndim)
    )
    if ndim >= 2:
        shape = (*shape[:-1], draw(st.sampled_from([1, 2, 3, 3, 3, 6])))
    if ndim == 3:
        shape = (shape[0], draw(st.integers(0, 80)), shape[2])
    arr = np.random.default_rng(draw(st.integers(0, 2**16))).uniform(-1, 1, shape).astype(np.float32)
    if arr.size:
        flat = arr.reshape(-1)
        for _ in range(draw(st.integers(0, 3))):
            flat[draw(st.integers(0, arr.size - 1))] = draw(coord)
    return arr


def _n_shapes(arr: np.ndarray) -> int | None:
    """How many point sets a well-formed file holds (``None``: not a point-set array at all)."""
    if arr.ndim == 2 and arr.shape[1] >= 3:
        return 1
    if arr.ndim == 3 and arr.shape[2] >= 3:
        return arr.shape[0]
    return None


@SETTINGS
@given(
    arr=point_arrays(),
    fmt=st.sampled_from(["npy", "npz", "h5"]),
    key=st.sampled_from(["points", "data", "pos", "wrong"]),
    labels=st.one_of(st.none(), st.integers(0, 6)),
)
def test_point_set_files_lose_no_shape(arr: np.ndarray, fmt: str, key: str, labels: int | None) -> None:
    lab = None if labels is None else np.arange(labels) % 3
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"set.{fmt}")
        if fmt == "npy":
            np.save(path, arr)
        elif fmt == "npz":
            np.savez(path, **{key: arr}, **({} if lab is None else {"label": lab}))
        else:
            with h5py.File(path, "w") as f:
                f[key] = arr
                if lab is not None:
                    f["label"] = lab
        units = _units("arrays", path, rows_per_unit=2)
        records = [r for u in units for r in _read("arrays", u)]
    for u in units:  # checked per unit: every unit yields something
        assert u["path"] == os.path.abspath(path)
    _check_records(records)
    n = _n_shapes(arr)
    readable = (fmt == "npy" or key != "wrong") and n
    if readable and (lab is None or fmt == "npy" or len(lab) == n):
        # every shape is one record (kept or quarantined with its reason), none lost
        assert sorted(r["id"] for r in records) == sorted({r["id"] for r in records})
        assert len(records) == n and not any(r["id"].startswith("unit:") for r in records)
    else:
        assert all(r["id"].startswith("unit:") for r in records), records


# ---------------------------------------------------------------- parquet (long form)


@SETTINGS
@given(
    n=st.integers(0, 120),
    ids=st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c"])), min_size=1, max_size=4),
    drop=st.sets(st.sampled_from(["id", "x", "y", "z"]), max_size=1),
    seed=st.integers(0, 2**16),
    bad=st.lists(coord, max_size=3),
)
def test_parquet_tables_lose_no_id(n: int, ids: list, drop: set, seed: int, bad: list) -> None:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.uniform(-1, 1, (n, 3)).astype(np.float32), columns=["x", "y", "z"])
    df.insert(0, "id", [ids[i % len(ids)] for i in range(n)])
    for k, v in enumerate(bad):
        if n:
            df.iloc[(k * 7) % n, 1 + k % 3] = v
    df = df.drop(columns=sorted(drop))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "points.parquet")
        df.to_parquet(path)
        (unit,) = _units("parquet", path)
        records = _read("parquet", unit)
    _check_records(records)
    if drop or n == 0 or df["id"].isna().any():
        assert len(records) == 1 and records[0]["id"].startswith("unit:"), records
        if not drop and n:
            assert "have no id" in records[0]["reason"]
    else:
        assert sorted(r["id"] for r in records) == sorted(set(df["id"]))


def test_huge_finite_coordinates_never_give_a_nan_row(tmp_path: object) -> None:
    arr = np.random.default_rng(0).uniform(-1, 1, (POINTS, 3)).astype(np.float32)
    arr[:40, 0] = 3e38  # finite in float32, but their sum is not
    path = os.path.join(str(tmp_path), "huge.npy")
    np.save(path, arr)
    (unit,) = _units("arrays", path)
    with np.errstate(all="ignore"):
        records = _read("arrays", unit)
    _check_records(records)
