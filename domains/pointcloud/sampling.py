"""Mesh → point cloud: trimesh surface sampling, farthest-point sampling, unit-sphere normalisation.

Sampling is seeded by a hash of the mesh's own geometry, so the same mesh always yields the same
points (reproducible ingest) and two copies of one mesh yield identical clouds (exact dedup finds them).
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    # imported where a mesh is read (1 s of imports, SciPy's spatial and sparse modules): every
    # process that loads the domain imports this module, and only the readers need trimesh
    import trimesh

#: formats trimesh reads for us (mesh formats users hold; ModelNet ships OFF)
MESH_TYPES = ("off", "ply", "obj", "stl")
# Some ModelNet40 .off files glue the counts to the magic word ("OFF490 518 0"), which trimesh rejects.
_GLUED_OFF = re.compile(rb"^OFF(\d)")


def load_mesh(data: bytes, file_type: str) -> trimesh.Trimesh:
    """Parse ``data`` as one triangle mesh (scenes are concatenated; materials are never read)."""
    import trimesh

    file_type = file_type.lower().lstrip(".")
    if file_type not in MESH_TYPES:
        raise ValueError(f"unsupported mesh type {file_type!r}; supported: {', '.join(MESH_TYPES)}")
    if file_type == "off":
        data = _GLUED_OFF.sub(rb"OFF\n\1", data, count=1)
    mesh = trimesh.load(
        io.BytesIO(data), file_type=file_type, force="mesh", skip_materials=True, process=False
    )
    if not isinstance(mesh, trimesh.Trimesh):
        # force="mesh" returns an empty Scene/PointCloud for a file without faces
        vertices = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64)
        return trimesh.Trimesh(vertices=vertices.reshape(-1, 3), faces=np.zeros((0, 3), int), process=False)
    return mesh


def geometry_seed(mesh: trimesh.Trimesh) -> int:
    h = hashlib.sha1(np.ascontiguousarray(mesh.vertices, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(mesh.faces, dtype=np.int64).tobytes())
    return int.from_bytes(h.digest()[:8], "little")


def farthest_point_sampling(points: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Indices of ``n`` points chosen greedily, each farthest from those already chosen (PointNet++).

    Deterministic given ``start``; with ``n >= len(points)`` every index is returned once.
    """
    m = len(points)
    if n >= m:
        return np.arange(m)
    # Per-coordinate arrays and preallocated buffers: ~10x faster than ((pts - p) ** 2).sum(1),
    # whose temporaries dominate at these sizes. Float64 keeps ties (and so the result) stable.
    x, y, z = (np.ascontiguousarray(points[:, i], dtype=np.float64) for i in range(3))
    chosen = np.empty(n, dtype=np.int64)
    dist = np.full(m, np.inf)
    diff, d2 = np.empty(m), np.empty(m)
    idx = start
    for i in range(n):
        chosen[i] = idx
        np.subtract(x, x[idx], out=diff)
        np.multiply(diff, diff, out=d2)
        np.subtract(y, y[idx], out=diff)
        d2 += diff * diff
        np.subtract(z, z[idx], out=diff)
        d2 += diff * diff
        np.minimum(dist, d2, out=dist)
        idx = int(dist.argmax())
    return chosen


def mesh_to_points(mesh: trimesh.Trimesh, n: int, oversample: int = 2) -> tuple[np.ndarray, dict[str, Any]]:
    """``n`` surface points of ``mesh``: ``oversample * n`` area-weighted samples, then FPS down to ``n``.

    Returns ``(points [n, 3] float32, meta)``. A mesh without faces or with zero surface area cannot
    be sampled: its raw vertices come back instead and ``meta["area"]`` is 0, for ``validate`` to
    quarantine with a reason (readers never filter).
    """
    import trimesh

    meta = {"vertices": int(len(mesh.vertices)), "faces": int(len(mesh.faces))}
    area = float(mesh.area) if len(mesh.faces) else 0.0
    meta["area"] = area if np.isfinite(area) else float("nan")
    if not len(mesh.faces) or not area > 0:
        return np.asarray(mesh.vertices, dtype=np.float32).reshape(-1, 3), meta
    seed = geometry_seed(mesh)
    dense, _ = trimesh.sample.sample_surface(mesh, n * max(1, oversample), seed=seed)
    dense = np.asarray(dense, dtype=np.float64)
    if not np.isfinite(dense).all():
        return dense.astype(np.float32), meta  # NaN vertices: validate reports them
    keep = farthest_point_sampling(dense, n, start=seed % len(dense))
    return dense[keep].astype(np.float32), meta


def subsample(points: np.ndarray, n: int) -> np.ndarray:
    """A point set of more than ``n`` points reduced by FPS; smaller ones are returned unchanged."""
    points = np.asarray(points, dtype=np.float32)
    if len(points) <= n or not np.isfinite(points).all():
        return points
    return points[farthest_point_sampling(points, n)]


def normalise_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre on the centroid and scale so the farthest point lies on the unit sphere (PointNet)."""
    # float64: coordinates near float32's maximum (found by fuzzing) overflow a float32 centroid
    points = np.asarray(points, dtype=np.float64)
    if not len(points):
        return points.astype(np.float32)
    centred = points - points.mean(axis=0, keepdims=True)
    radius = float(np.sqrt((centred**2).sum(axis=1)).max())
    return (centred / radius if radius > 1e-12 else centred).astype(np.float32)


#: rotation taking a Y-up model (OBJ, Sweet Home 3D) to Z-up (ModelNet OFF): (x, y, z) -> (x, -z, y)
Y_UP_TO_Z_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float32)


def to_z_up(points: np.ndarray, up_axis: str) -> np.ndarray:
    if up_axis == "z":
        return points
    if up_axis == "y":
        return (points @ Y_UP_TO_Z_UP.T).astype(np.float32)
    raise ValueError(f"up_axis must be 'y' or 'z', got {up_axis!r}")
