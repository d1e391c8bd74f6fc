"""Point-cloud sources: Sweet Home 3D furniture (offline demo data), mesh files, HDF5/NPY/NPZ/Parquet
point sets, and a clearly-labelled procedural fallback.

Every reader yields rows ``{"id", "x", "label", "split", "group", "meta"}`` with ``x`` a float32
``[points, 3]`` array, Z up. Readers never filter: an empty or degenerate mesh, NaN coordinates or
too few points reach ``validate()``, which gives the reason; a unit that cannot be read raises and
ingest quarantines it. Meshes are sampled once here (the expensive part), so the ingested Parquet
shards are the cache of sampled points.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from domains.base import Row, Source
from domains.io import expand_paths, split_from_path
from domains.pointcloud.sampling import MESH_TYPES, load_mesh, mesh_to_points, subsample, to_z_up

SH3D_DIR = "/usr/share/sweethome3d"
SH3D_APT = (
    "the Sweet Home 3D models are missing: install them with "
    "`sudo apt-get install sweethome3d-furniture sweethome3d` (Debian/Ubuntu; `make repro` does this "
    "when it can), or use the clearly-labelled synthetic source `procedural`"
)
SPLITS = ("train", "test")

# Catalogue name keywords → a ModelNet-like label set. First match wins, so the order resolves
# overlaps ("Desk lamp" is a lamp, "Sink cabinet" a sink, "Chest freezer" an appliance); ``exclude``
# removes accessories that share a word with the class ("Window blind", "Toilet brush").
CLASS_RULES: tuple[tuple[str, str, str | None], ...] = (
    ("person", r"\b(fe)?male\b|\bboy\b|\bgirl\b|\bmannequin", None),
    (
        "vehicle",
        r"\b(car|bus|truck|van|suv|bike|bicycle|motorbike|scooter|sedan|chevrolet|ford|peugeot|renault"
        r"|seat leon|beetle|biplane|rowboat|fork lift|tricycle|yamaha)\b",
        r"indoor bike",
    ),
    (
        "appliance",
        r"fridge|refrigerator|freezer|\boven\b|microwave|\bcooker\b|cooktop|\bstove\b|dishwasher"
        r"|washing machine|clothes washer|dryer machine|\bhood\b|toaster|coffee (machine|maker|brewer)"
        r"|water heater|boiler",
        None,
    ),
    ("lamp", r"\blamp|\blight\b|lamppost|chandelier|spotlight|uplight|lantern", r"light source"),
    (
        "toilet/bath/sink",
        r"\btoilets?\b|\bbath\b|bathtub|\bsink\b|washbasin|\bbasin\b|bidet|urinal|jacuzzi|\bvanity\b|lavatory",
        r"brush|paper",
    ),
    ("window", r"\bwindow\b", r"blind|shutter"),
    ("door", r"\bdoors?\b", r"cabinet|doormat|bell"),
    ("bed", r"\bbed\b|\bcrib\b", None),
    ("sofa", r"\bsofa\b|\bcouch\b", None),
    ("chair", r"chair\b|\bstool\b", r"wheelchair"),
    ("table", r"\btable\b|\bdesk\b", r"bedside|tennis|football|pool|fan|changing"),
    (
        "shelf/cabinet",
        r"shel(f|ves)|bookcase|cabinet|wardrobe|dresser|cupboard|drawers|\bchest\b|locker|bedside",
        None,
    ),
    (
        "plant",
        r"plant\b|\btree\b|ficus|bamboo|\bbush\b|cactus|yucca|palm|\bpine\b|flowers|orchids|tulips|bonsai"
        r"|spathiphyllum|acacia|cypress|poplar|maple|beech|hedge",
        r"plant box",
    ),
)


def classify_name(name: str) -> str | None:
    """The ModelNet-like class of a Sweet Home 3D catalogue name, or ``None`` (not one of the 13)."""
    low = name.lower()
    for label, include, exclude in CLASS_RULES:
        if re.search(include, low) and not (exclude and re.search(exclude, low)):
            return label
    return None


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")


def stratified_split(ids_by_class: dict[str | None, list[str]], test_fraction: float) -> dict[str, str]:
    """Deterministic per-model split: within each class, models ordered by a hash of their id and the
    first ``round(test_fraction * n)`` (at least one when a class has two or more) go to test.
    Unlabelled models are always training data (pretraining only)."""
    out: dict[str, str] = {}
    for label, ids in ids_by_class.items():
        order = sorted(ids, key=_stable_hash)
        n_test = 0 if label is None else round(test_fraction * len(order))
        if label is not None and len(order) >= 2:
            n_test = min(max(n_test, 1), len(order) - 1)
        for i, rid in enumerate(order):
            out[rid] = "test" if i < n_test else "train"
    return out


MESH_EXTENSIONS = tuple(f".{t}" for t in MESH_TYPES)
ARRAY_EXTENSIONS = (".h5", ".hdf5", ".npy", ".npz")
PARQUET_EXTENSIONS = (".parquet", ".pq")


def _label_from_path(path: str) -> str:
    """ModelNet layout ``<class>/<train|test>/<name>.off``: the class directory, else the parent."""
    parent = os.path.basename(os.path.dirname(path))
    if parent.lower() in SPLITS:
        return os.path.basename(os.path.dirname(os.path.dirname(path)))
    return parent


# ---------------------------------------------------------------- sweethome3d


def _catalog(archive: str) -> list[dict[str, Any]]:
    """``[{index, name, category, model, rotation}]`` from a .sh3f/.jar furniture catalogue."""
    with zipfile.ZipFile(archive) as z:
        props = [n for n in z.namelist() if re.search(r"FurnitureCatalog\.properties$", n)]
        if not props:
            raise ValueError(f"{archive}: no *FurnitureCatalog.properties inside")
        text = z.read(props[0]).decode("latin-1")
    fields: dict[str, dict[str, str]] = defaultdict(dict)
    for m in re.finditer(r"^(name|category|model|modelRotation)#(\d+)=(.*)$", text, re.M):
        value = m.group(3).strip().encode("latin-1").decode("unicode_escape", errors="replace")
        fields[m.group(2)][m.group(1)] = value
    out = []
    for idx, f in sorted(fields.items(), key=lambda kv: int(kv[0])):
        if "model" in f:
            out.append(
                {
                    "index": int(idx),
                    "name": f.get("name", ""),
                    "category": f.get("category", ""),
                    "model": f["model"],
                    "rotation": f.get("modelRotation"),
                }
            )
    return out


def _sh3d_archives(root: str) -> list[str]:
    archives = sorted(glob.glob(os.path.join(root, "furniture", "*.sh3f")))
    jar = os.path.join(root, "sweethome3d.jar")
    if os.path.isfile(jar):
        archives.append(jar)
    return archives


def _sh3d_units(
    root: str = SH3D_DIR,
    points: int = 1024,
    oversample: int = 2,
    models_per_unit: int = 16,
    test_fraction: float = 0.2,
    include_unlabelled: bool = False,
    max_per_class: int | None = None,
    classes: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Read the catalogues (cheap: one properties file per archive), label, split, and cut the
    models into units of ``models_per_unit`` so that Ray Data samples them in parallel."""
    archives = _sh3d_archives(root)
    if not archives:
        raise FileNotFoundError(f"no Sweet Home 3D catalogue under {root}: {SH3D_APT}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    models: list[dict[str, Any]] = []
    for archive in archives:
        src = os.path.splitext(os.path.basename(archive))[0]
        for entry in _catalog(archive):
            label = classify_name(entry["name"])
            if classes is not None and label not in classes:
                label = None
            if label is None and not include_unlabelled:
                continue
            rid = f"sh3d/{src}/{entry['index']:03d}"
            models.append({**entry, "id": rid, "archive": archive, "label": label})
    if max_per_class is not None:  # a small, class-balanced subset (the `tiny` scale)
        by: dict[str | None, list[dict]] = defaultdict(list)
        for m in sorted(models, key=lambda m: _stable_hash(m["id"])):
            by[m["label"]].append(m)
        models = sorted((m for ms in by.values() for m in ms[:max_per_class]), key=lambda m: m["id"])
    ids_by_class: dict[str | None, list[str]] = defaultdict(list)
    for m in models:
        ids_by_class[m["label"]].append(m["id"])
    split = stratified_split(ids_by_class, test_fraction)
    for m in models:
        m["split"] = split[m["id"]]
    units = []
    for archive in archives:
        mine = [m for m in models if m["archive"] == archive]
        for start in range(0, len(mine), models_per_unit):
            chunk = mine[start : start + models_per_unit]
            units.append(
                {
                    "archive": archive,
                    "points": points,
                    "oversample": oversample,
                    "models": [{k: m[k] for k in _UNIT_KEYS} for m in chunk],
                }
            )
    return units


_UNIT_KEYS = ("id", "name", "category", "model", "rotation", "label", "split")


def _read_sh3d(unit: dict[str, Any]) -> Iterator[Row]:
    with zipfile.ZipFile(unit["archive"]) as z:
        for m in unit["models"]:
            data = z.read(m["model"].lstrip("/"))
            mesh = load_mesh(data, "obj")
            pts, meta = mesh_to_points(mesh, unit["points"], unit.get("oversample", 2))
            if m.get("rotation") and len(pts):
                # the catalogue's modelRotation orients a model whose OBJ is not Y-up
                rot = np.asarray([float(v) for v in m["rotation"].split()], dtype=np.float32).reshape(3, 3)
                pts = pts @ rot.T
            yield {
                "id": m["id"],
                "x": to_z_up(pts, "y"),  # OBJ and Sweet Home 3D are Y-up
                "label": m["label"],
                "split": m["split"],
                "group": m["id"],  # one model = one group: its copies must not straddle the split
                "meta": {
                    **meta,
                    "name": m["name"],
                    "category": m["category"],
                    "archive": os.path.basename(unit["archive"]),
                    "model": m["model"],
                },
            }


# ---------------------------------------------------------------- mesh_files


def _mesh_units(
    paths: str | Sequence[str],
    points: int = 1024,
    oversample: int = 2,
    up_axis: str = "z",
    label_from_path: bool = True,
) -> list[dict[str, Any]]:
    files = expand_paths(paths, MESH_EXTENSIONS)  # a non-mesh file in a glob: a recipe error, now
    return [
        {
            "path": f,
            "points": points,
            "oversample": oversample,
            "up_axis": up_axis,
            "label": _label_from_path(f) if label_from_path else None,
            "split": split_from_path(f),
        }
        for f in files
    ]


def _read_mesh(unit: dict[str, Any]) -> Iterator[Row]:
    path = unit["path"]
    with open(path, "rb") as f:
        data = f.read()
    mesh = load_mesh(data, os.path.splitext(path)[1])
    pts, meta = mesh_to_points(mesh, unit["points"], unit.get("oversample", 2))
    rid = os.path.splitext(path)[0]
    yield {
        "id": rid,
        "x": to_z_up(pts, unit.get("up_axis", "z")),
        "label": unit.get("label"),
        "split": unit.get("split"),
        "group": rid,
        "meta": {**meta, "path": path},
    }


# ---------------------------------------------------------------- point sets: hdf5 / npy / npz


def _array_units(
    paths: str | Sequence[str],
    points: int = 1024,
    rows_per_unit: int = 512,
    up_axis: str = "z",
    shape_names: str | None = None,
) -> list[dict[str, Any]]:
    """One unit per ``rows_per_unit`` shapes of each file (ModelNet40 HDF5 files hold 2048)."""
    units = []
    for f in expand_paths(paths, ARRAY_EXTENSIONS):
        try:
            n = _count_shapes(f)
        except Exception:  # unreadable: one unit, which raises again when read and is quarantined
            n = 1
        for start in range(0, max(n, 1), rows_per_unit):
            units.append(
                {
                    "path": f,
                    "start": start,
                    "stop": min(n, start + rows_per_unit),
                    "points": points,
                    "up_axis": up_axis,
                    "shape_names": shape_names,
                    "split": split_from_path(f),
                }
            )
    return units


def _open_arrays(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(points [S, P, >=3] or [P, >=3], labels [S] | None)`` of an HDF5/NPY/NPZ file."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            key = next((k for k in ("data", "points", "pos") if k in f), None)
            if key is None:
                raise KeyError(f"{path}: no 'data'/'points' dataset (has {sorted(f)})")
            labels = np.asarray(f["label"]).reshape(-1) if "label" in f else None
            return np.asarray(f[key]), labels
    if ext == ".npy":
        return np.load(path, allow_pickle=False), None
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as z:
            key = next((k for k in ("points", "data", "pos", "x") if k in z), None)
            if key is None:
                raise KeyError(f"{path}: no 'points'/'data' array (has {sorted(z.files)})")
            labels = next((np.asarray(z[k]).reshape(-1) for k in ("label", "labels", "y") if k in z), None)
            return np.asarray(z[key]), labels
    raise ValueError(f"{path}: expected .h5/.hdf5/.npy/.npz")


def _count_shapes(path: str) -> int:
    arr, _ = _open_arrays(path)
    return 1 if arr.ndim == 2 else int(arr.shape[0])


def _read_arrays(unit: dict[str, Any]) -> Iterator[Row]:
    path = unit["path"]
    arr, labels = _open_arrays(path)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] < 3:
        raise ValueError(f"{path}: expected [shapes, points, >=3] or [points, >=3], got {arr.shape}")
    if not len(arr):
        raise ValueError(f"{path}: holds no point sets (shape {arr.shape})")
    if labels is not None and len(labels) != len(arr):
        raise ValueError(f"{path}: {len(labels)} labels for {len(arr)} point sets")
    names = None
    if unit.get("shape_names"):
        with open(unit["shape_names"]) as f:
            names = [line.strip() for line in f if line.strip()]
    single = _count_shapes(path) == 1 and labels is None
    base = os.path.splitext(path)[0]
    for i in range(unit["start"], unit["stop"]):
        pts = subsample(np.asarray(arr[i, :, :3], dtype=np.float32), unit["points"])
        label: str | None
        if labels is not None:
            label = names[int(labels[i])] if names else str(labels[i].item())
        else:
            label = _label_from_path(path) if single else None
        rid = base if single else f"{base}/{i:05d}"
        yield {
            "id": rid,
            "x": to_z_up(pts, unit.get("up_axis", "z")),
            "label": label,
            "split": unit.get("split"),
            "group": rid,
            "meta": {"path": path, "index": i},
        }


# ---------------------------------------------------------------- parquet (long form)


def _parquet_units(
    paths: str | Sequence[str], points: int = 1024, up_axis: str = "z"
) -> list[dict[str, Any]]:
    return [
        {"path": f, "points": points, "up_axis": up_axis} for f in expand_paths(paths, PARQUET_EXTENSIONS)
    ]


def _read_parquet(unit: dict[str, Any]) -> Iterator[Row]:
    """Long-form table: one row per point with columns ``id, x, y, z`` and optional ``label, split``."""
    import pyarrow.parquet as pq

    df = pq.read_table(unit["path"]).to_pandas()
    missing = {"id", "x", "y", "z"} - set(df.columns)
    if missing:
        raise KeyError(f"{unit['path']}: missing column(s) {sorted(missing)}")
    if not len(df):
        raise ValueError(f"{unit['path']}: holds no points")
    if df["id"].isna().any():  # groupby would drop these points silently
        raise ValueError(f"{unit['path']}: {int(df['id'].isna().sum())} of {len(df)} points have no id")
    for rid, g in df.groupby("id", sort=True):
        pts = subsample(g[["x", "y", "z"]].to_numpy(np.float32), unit["points"])
        first = g.iloc[0]
        yield {
            "id": str(rid),
            "x": to_z_up(pts, unit.get("up_axis", "z")),
            "label": None if "label" not in g or first["label"] is None else str(first["label"]),
            "split": None if "split" not in g or first["split"] is None else str(first["split"]),
            "group": str(rid),
            "meta": {"path": unit["path"]},
        }


# ---------------------------------------------------------------- procedural (synthetic fallback)

PROCEDURAL_CLASSES = ("box", "cylinder", "cone", "capsule", "torus", "sphere")


def _procedural_units(
    per_class: int = 40, points: int = 1024, test_fraction: float = 0.25, seed: int = 0
) -> list[dict[str, Any]]:
    """SYNTHETIC shapes for machines without the Sweet Home 3D packages; never real data."""
    ids = {c: [f"procedural/{c}/{i:04d}" for i in range(per_class)] for c in PROCEDURAL_CLASSES}
    split = stratified_split(ids, test_fraction)
    return [
        {"label": c, "ids": [(rid, split[rid]) for rid in ids[c]], "points": points, "seed": seed}
        for c in PROCEDURAL_CLASSES
    ]


def _primitive(kind: str, rng: np.random.Generator):  # noqa: ANN202 - trimesh.Trimesh
    import trimesh

    if kind == "box":
        return trimesh.creation.box(extents=rng.uniform(0.3, 1.0, 3))
    if kind == "cylinder":
        return trimesh.creation.cylinder(radius=rng.uniform(0.2, 0.5), height=rng.uniform(0.5, 1.5))
    if kind == "cone":
        return trimesh.creation.cone(radius=rng.uniform(0.2, 0.6), height=rng.uniform(0.5, 1.5))
    if kind == "capsule":
        return trimesh.creation.capsule(height=rng.uniform(0.3, 1.2), radius=rng.uniform(0.15, 0.4))
    if kind == "torus":
        return trimesh.creation.torus(major_radius=rng.uniform(0.5, 0.8), minor_radius=rng.uniform(0.1, 0.3))
    return trimesh.creation.icosphere(subdivisions=2, radius=rng.uniform(0.3, 1.0))


def _read_procedural(unit: dict[str, Any]) -> Iterator[Row]:
    from domains.pointcloud.views import random_rotation

    for rid, split in unit["ids"]:
        rng = np.random.default_rng([unit["seed"], _stable_hash(rid)])
        mesh = _primitive(unit["label"], rng)
        mesh.vertices = mesh.vertices * rng.uniform(0.7, 1.3, 3) @ random_rotation(rng).T
        pts, meta = mesh_to_points(mesh, unit["points"])
        yield {
            "id": rid,
            "x": pts,
            "label": unit["label"],
            "split": split,
            "group": rid,
            "meta": {**meta, "synthetic": True, "source": "procedural fallback (not real data)"},
        }


SOURCES: dict[str, Source] = {
    "sweethome3d": Source(
        "sweethome3d",
        _sh3d_units,
        _read_sh3d,
        "Sweet Home 3D furniture (Debian sweethome3d-furniture + sweethome3d): 920 OBJ models, "
        "13 ModelNet-like classes from catalogue names",
    ),
    "mesh_files": Source(
        "mesh_files", _mesh_units, _read_mesh, "OFF/PLY/OBJ/STL meshes via trimesh (ModelNet layout labels)"
    ),
    "arrays": Source(
        "arrays",
        _array_units,
        _read_arrays,
        "point sets in HDF5 (ModelNet40/ShapeNet releases: data + label), NPY or NPZ",
    ),
    "parquet": Source(
        "parquet", _parquet_units, _read_parquet, "long-form Parquet point tables (id, x, y, z)"
    ),
    "procedural": Source(
        "procedural",
        _procedural_units,
        _read_procedural,
        "SYNTHETIC fallback: trimesh primitives with random scale and rotation, for machines without data",
    ),
}
