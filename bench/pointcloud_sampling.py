"""Mesh → point-cloud throughput of the point-cloud ingest path on the Sweet Home 3D furniture.

Per mesh: read the OBJ from its .sh3f zip, parse it with trimesh (``force="mesh"``,
``skip_materials=True``), sample 2N surface points and farthest-point-sample N. Reports meshes/s
in one process and the per-phase split; the result's ``meta`` has the machine and the load average
at start and end (the numbers are only comparable at similar load). Writes
``bench/results/pointcloud_sampling.json``.

    python -m bench.pointcloud_sampling [--models 64] [--points 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import trimesh

from bench._meta import BenchRun
from domains.pointcloud.readers import SH3D_APT, SH3D_DIR, _sh3d_units
from domains.pointcloud.sampling import farthest_point_sampling, geometry_seed, load_mesh

OUT = Path(__file__).parent / "results" / "pointcloud_sampling.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=64)
    ap.add_argument("--points", type=int, default=1024)
    args = ap.parse_args(argv)
    run = BenchRun()
    if not os.path.isdir(SH3D_DIR):
        raise SystemExit(SH3D_APT)
    models = [(u["archive"], m) for u in _sh3d_units(points=args.points) for m in u["models"]]
    # an even spread over the catalogues (sizes differ a lot between them)
    pick = np.linspace(0, len(models) - 1, min(args.models, len(models))).astype(int)
    phases = {"parse": 0.0, "sample": 0.0, "fps": 0.0}
    faces = []
    t0 = time.perf_counter()
    for i in pick:
        archive, m = models[i]
        t = time.perf_counter()
        with zipfile.ZipFile(archive) as z:
            mesh = load_mesh(z.read(m["model"].lstrip("/")), "obj")
        t1 = time.perf_counter()
        dense, _ = trimesh.sample.sample_surface(mesh, 2 * args.points, seed=geometry_seed(mesh))
        t2 = time.perf_counter()
        farthest_point_sampling(np.asarray(dense), args.points)
        t3 = time.perf_counter()
        phases["parse"] += t1 - t
        phases["sample"] += t2 - t1
        phases["fps"] += t3 - t2
        faces.append(len(mesh.faces))
    total = time.perf_counter() - t0
    result = {
        "meshes": len(pick),
        "points": args.points,
        "seconds": round(total, 3),
        "meshes_per_s": round(len(pick) / total, 3),
        "seconds_by_phase": {k: round(v, 3) for k, v in phases.items()},
        "median_faces": int(np.median(faces)),
        "processes": 1,
        "trimesh": trimesh.__version__,
    }
    print(json.dumps(result, indent=2))
    return 0 if run.write_json(OUT, result) else 1


if __name__ == "__main__":
    raise SystemExit(main())
