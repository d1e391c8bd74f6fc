"""Detection quality: plant exact and near duplicates (augmented copies) into real UCR training sets
and report each dedup method's precision and recall against the planted copies.

Per data set: 10 % of the real training rows get an exact copy and another 10 % a near copy
(``jitter(σ)`` then ``scaling(σ=0.02)`` from the domain's own augmentations, re-z-normalised). A
copy's id sorts after its original, so a correct method removes the copy and keeps the original.
Each method runs through the curate stage's own rules (``stages.curate.rules.decide``) with only
that rule on. A planted pair counts as found when either of its two rows is removed (SemDeDup keeps
the row farthest from its centroid, which may be the copy); precision counts every removed row
outside the planted pairs as a false positive, though real data can hold genuine near duplicates
of its own.

    .venv/bin/python -m bench.curation_quality [--sets OSULeaf ACSF1 PLAID] [--sigmas 0.03 0.1]

Second domain, point clouds (``--domain pointcloud``): the real Sweet Home 3D training clouds of
``pipelines/pointcloud-sweethome3d.yaml`` (1024 FPS points per model, from its curated table; built
by ingest/curate when missing). Near copies are re-exports of the sampled cloud
(``bench.curation_downstream.near_pointcloud``: points shuffled, jitter, a small rotation about Z,
anisotropic rescale, back on the unit sphere) at two strengths. Methods: exact hash, SimHash/LSH at
the recipe's threshold (0.999) and looser ones, SemDeDup on random-init PointNet embeddings (at the
params.yaml default 0.95 and stricter) and on a PointNet briefly pretrained in-process on the
planted pool (``pretrained`` rows: k-means and pruning through ``stages.curate.rules.semantic``).
Rows of each domain replace only that domain's earlier rows in curation_quality.json.

    .venv/bin/python -m bench.curation_quality --domain pointcloud [--strengths light moderate]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench._meta import BenchRun
from domains import get_domain
from domains.timeseries.views import jitter, scaling
from stages.common.config import load_recipe
from stages.curate.rules import Decisions, decide, semantic

OUT = Path(__file__).resolve().parent / "results"
BASE = ["curate.quality_filter=false", "curate.exact_dedup=false", "curate.near_dedup.enabled=false"]
METHODS = {
    "exact (content hash)": ["curate.exact_dedup=true"],
    "near SimHash/LSH @0.999": ["curate.near_dedup.enabled=true", "curate.near_dedup.threshold=0.999"],
    "near SimHash/LSH @0.995": ["curate.near_dedup.enabled=true", "curate.near_dedup.threshold=0.995"],
    "SemDeDup random-init @0.999": ["curate.semdedup.enabled=true", "curate.semdedup.threshold=0.999"],
    "SemDeDup random-init @0.99": ["curate.semdedup.enabled=true", "curate.semdedup.threshold=0.99"],
}


def train_rows(name: str) -> list[dict]:
    domain = get_domain("timeseries")
    source = "ucr_archive" if name == "PLAID" else "ucr_bundled"
    rows = []
    for unit in domain.sources[source].list_units(name=name):
        rows += [r for r in domain.sources[source].read_unit(unit) if r.get("split") == "train"]
    return [{**r, "x": domain.normalise(r["x"])} for r in rows if domain.validate(r) is None]


def plant(
    rows: list[dict], sigma: float, seed: int = 0, near_fn: Callable | None = None
) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    """Rows plus copies; returns the copies as ``{copy id: original id}`` (exact, near).
    ``near_fn(x, rng)`` makes a near copy (default: the time-series jitter + scaling at ``sigma``)."""
    domain = get_domain("timeseries")
    rng = np.random.default_rng(seed)
    k = max(1, len(rows) // 10)
    pick = rng.choice(len(rows), 2 * k, replace=False)
    exact = [{**rows[i], "id": f"{rows[i]['id']}~exact"} for i in pick[:k]]
    near = []
    for i in pick[k:]:
        if near_fn is None:
            x = domain.normalise(scaling(jitter(rows[i]["x"], rng, sigma=sigma), rng, sigma=0.02))
        else:
            x = near_fn(rows[i]["x"], rng)
        near.append({**rows[i], "id": f"{rows[i]['id']}~near", "x": x})
    return (
        rows + exact + near,
        {r["id"]: r["id"].split("~")[0] for r in exact},
        {r["id"]: r["id"].split("~")[0] for r in near},
    )


PC_RECIPE = "pipelines/pointcloud-sweethome3d.yaml"
PC_METHODS = {
    "exact (content hash)": ["curate.exact_dedup=true"],
    "near SimHash/LSH @0.999 (recipe)": [
        "curate.near_dedup.enabled=true",
        "curate.near_dedup.threshold=0.999",
    ],
    "near SimHash/LSH @0.995": ["curate.near_dedup.enabled=true", "curate.near_dedup.threshold=0.995"],
    "near SimHash/LSH @0.99": ["curate.near_dedup.enabled=true", "curate.near_dedup.threshold=0.99"],
    "near SimHash/LSH @0.98": ["curate.near_dedup.enabled=true", "curate.near_dedup.threshold=0.98"],
    "SemDeDup random-init @0.999": ["curate.semdedup.enabled=true", "curate.semdedup.threshold=0.999"],
    "SemDeDup random-init @0.99": ["curate.semdedup.enabled=true", "curate.semdedup.threshold=0.99"],
    "SemDeDup random-init @0.95 (default)": [
        "curate.semdedup.enabled=true",
        "curate.semdedup.threshold=0.95",
    ],
}
#: SemDeDup thresholds on the briefly pretrained encoder's embeddings
PC_PRETRAINED = (0.999, 0.99, 0.95)


def score(
    rows: list[dict], exact: dict[str, str], near: dict[str, str], removed: set[str]
) -> dict[str, float | int | None]:
    pairs = {**exact, **near}
    members = set(pairs) | set(pairs.values())

    def found(copies: dict[str, str]) -> float:
        return round(sum(c in removed or o in removed for c, o in copies.items()) / len(copies), 3)

    return {
        "rows": len(rows),
        "removed": len(removed),
        "precision": round(len(removed & members) / len(removed), 3) if removed else None,
        "recall_exact": found(exact),
        "recall_near": found(near),
        "recall_all": found(pairs),
        "originals_removed": len(removed & set(pairs.values())),
    }


def pointcloud_rows(strengths: list[str], seed: int = 0) -> list[dict]:
    import torch

    from bench.curation_downstream import SETUPS, load_rows, near_pointcloud, pretrain
    from stages.common.encoders import embed

    base = ["curate.embedding.clusters=16", "curate.max_removed_fraction=1.0"]
    recipe = load_recipe(PC_RECIPE, "params.yaml", BASE)
    train, _, plan = load_rows(recipe)
    results = []
    for strength in strengths:
        rows, exact, near = plant(
            train, 0.0, seed, near_fn=lambda x, rng, s=strength: near_pointcloud(x, rng, s)
        )
        common = {"domain": "pointcloud", "set": "sweethome3d", "near_strength": strength}
        for method, sets in PC_METHODS.items():
            recipe = load_recipe(PC_RECIPE, "params.yaml", [*BASE, *sets, *base])
            t = time.perf_counter()
            removed = set(decide(recipe, rows).removed)
            row = {**common, "method": method, **score(rows, exact, near, removed)}
            row["seconds"] = round(time.perf_counter() - t, 2)
            print(json.dumps(row), flush=True)
            results.append(row)
        # SemDeDup on a briefly pretrained encoder (the downstream bench's small PointNet, 2 epochs on
        # the planted pool's 256-point FPS prefixes; embeddings of the full 1024-point clouds)
        small = load_recipe(PC_RECIPE, "params.yaml", SETUPS["pointcloud"]["sets"])
        xs = [get_domain("pointcloud").normalise(r["x"][:256]) for r in rows]
        t = time.perf_counter()
        encoder, info = pretrain(small, plan, xs, 2, len(xs) // small.pretrain.batch_size, seed)
        torch.set_num_threads(1)
        emb = embed(encoder, "pointcloud", [r["x"] for r in rows])
        t_pre = time.perf_counter() - t
        ids = np.array([r["id"] for r in rows], dtype=object)
        for thr in PC_PRETRAINED:
            recipe = load_recipe(
                PC_RECIPE,
                "params.yaml",
                [*BASE, "curate.semdedup.enabled=true", f"curate.semdedup.threshold={thr}", *base],
            )
            t = time.perf_counter()
            d = Decisions()
            semantic(recipe, ids, emb, d)
            method = f"SemDeDup pretrained ({info['steps']} steps) @{thr}"
            row = {**common, "method": method, **score(rows, exact, near, set(d.removed))}
            row["seconds"] = round(time.perf_counter() - t + t_pre, 2)
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--domain", choices=["timeseries", "pointcloud"], default="timeseries")
    p.add_argument("--sets", nargs="+", default=["OSULeaf", "ACSF1", "PLAID"])
    p.add_argument(
        "--sigmas", type=float, nargs="+", default=[0.03, 0.1], help="jitter of near copies (z-normalised)"
    )
    p.add_argument("--strengths", nargs="+", default=["light", "moderate"], help="point-cloud near copies")
    args = p.parse_args()
    run = BenchRun()
    if args.domain == "pointcloud":
        results = pointcloud_rows(args.strengths)
    else:
        results = timeseries_rows(args.sets, args.sigmas)
    path = OUT / "curation_quality.json"
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    keep = [r for r in old if r.get("domain", "timeseries") != args.domain]
    for r in results:
        r["meta"] = run.meta()  # rows of several runs share the file: each says where it ran
    run.write_json(path, {"rows": keep + results})


def timeseries_rows(sets: list[str], sigmas: list[float]) -> list[dict]:
    results = []
    for name, sigma in [(n, s) for n in sets for s in sigmas]:
        rows, exact, near = plant(train_rows(name), sigma)
        for method, overrides in METHODS.items():
            recipe = load_recipe(
                "pipelines/timeseries-gunpoint.yaml",
                "params.yaml",
                [*BASE, *overrides, "curate.embedding.clusters=8", "curate.max_removed_fraction=1.0"],
            )
            t = time.perf_counter()
            removed = set(decide(recipe, rows).removed)
            wall = time.perf_counter() - t
            row = {"set": name, "near_sigma": sigma, "method": method, **score(rows, exact, near, removed)}
            row["seconds"] = round(wall, 2)
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


if __name__ == "__main__":
    main()
