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
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from domains import get_domain
from domains.timeseries.views import jitter, scaling
from stages.common.config import load_recipe
from stages.curate.rules import decide

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


def plant(rows: list[dict], sigma: float, seed: int = 0) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    """Rows plus copies; returns the copies as ``{copy id: original id}`` (exact, near)."""
    domain = get_domain("timeseries")
    rng = np.random.default_rng(seed)
    k = max(1, len(rows) // 10)
    pick = rng.choice(len(rows), 2 * k, replace=False)
    exact = [{**rows[i], "id": f"{rows[i]['id']}~exact"} for i in pick[:k]]
    near = []
    for i in pick[k:]:
        x = scaling(jitter(rows[i]["x"], rng, sigma=sigma), rng, sigma=0.02)
        near.append({**rows[i], "id": f"{rows[i]['id']}~near", "x": domain.normalise(x)})
    return (
        rows + exact + near,
        {r["id"]: r["id"].split("~")[0] for r in exact},
        {r["id"]: r["id"].split("~")[0] for r in near},
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sets", nargs="+", default=["OSULeaf", "ACSF1", "PLAID"])
    p.add_argument(
        "--sigmas", type=float, nargs="+", default=[0.03, 0.1], help="jitter of near copies (z-normalised)"
    )
    args = p.parse_args()
    results = []
    for name, sigma in [(n, s) for n in args.sets for s in args.sigmas]:
        rows, exact, near = plant(train_rows(name), sigma)
        for method, sets in METHODS.items():
            recipe = load_recipe(
                "pipelines/timeseries-gunpoint.yaml",
                "params.yaml",
                [*BASE, *sets, "curate.embedding.clusters=8", "curate.max_removed_fraction=1.0"],
            )
            t = time.perf_counter()
            removed = set(decide(recipe, rows).removed)
            wall = time.perf_counter() - t
            pairs = {**exact, **near}
            members = set(pairs) | set(pairs.values())

            def found(copies: dict[str, str], removed: set[str] = removed) -> float:
                return round(sum(c in removed or o in removed for c, o in copies.items()) / len(copies), 3)

            row = {
                "set": name,
                "near_sigma": sigma,
                "rows": len(rows),
                "method": method,
                "removed": len(removed),
                "precision": round(len(removed & members) / len(removed), 3) if removed else None,
                "recall_exact": found(exact),
                "recall_near": found(near),
                "recall_all": found(pairs),
                "originals_removed": len(removed & set(pairs.values())),
                "seconds": round(wall, 2),
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    OUT.mkdir(exist_ok=True)
    (OUT / "curation_quality.json").write_text(json.dumps({"rows": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
