"""Near dedup, SemDeDup, balancing, determinism, and the Ray Data path deciding as in-process does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stages.common.cli import Dirs
from stages.common.config import load_recipe
from stages.common.rows import rows_to_table, table_to_rows
from stages.common.storage import read_table, write_table
from stages.curate.__main__ import curate, run
from stages.curate.near import band_hash, band_keys
from stages.curate.rules import decide
from stages.curate.semantic import prune_cluster

REPO = Path(__file__).resolve().parents[3]


def _recipe(*sets: str, tmp: Path | None = None):  # noqa: ANN202
    paths = [f"paths.{k}={tmp / k}" for k in ("data", "models", "metrics", "runs")] if tmp else []
    return load_recipe(
        REPO / "pipelines/timeseries-gunpoint.yaml", REPO / "params.yaml", ["scale=tiny", *paths, *sets]
    )


def _walk(rng: np.random.Generator, n: int = 64) -> np.ndarray:
    return np.cumsum(rng.normal(size=(1, n)), axis=1).astype(np.float32)


def _row(i: str, x: np.ndarray, split: str = "train", group: str | None = None) -> dict:
    return {"id": i, "x": x.astype(np.float32), "label": "0", "split": split, "group": group or i, "meta": {}}


def _planted(seed: int = 0) -> list[dict]:
    """Distinct random walks, with planted exact and near copies, leaks, a shared group and a bad row."""
    rng = np.random.default_rng(seed)
    base = [_walk(rng) for _ in range(40)]
    rows = [_row(f"train/{i:03d}", x) for i, x in enumerate(base)]
    rows += [_row(f"train/{i:03d}-exact", base[i]) for i in (0, 1)]
    rows += [_row(f"train/{i:03d}-near", base[i] + 0.01 * rng.normal(size=base[i].shape)) for i in (2, 3, 4)]
    test = [_walk(rng) for _ in range(10)]
    rows += [_row(f"test/{i:03d}", x, "test") for i, x in enumerate(test)]
    rows += [_row("test/dup-of-test-000", test[0], "test")]  # test duplicates stay
    rows += [_row("train/leak-exact", test[1]), _row("train/leak-near", test[2] + 0.01)]
    rows += [_row("train/shared-group", _walk(rng), group="test/003")]
    rows += [_row("train/nan", np.full((1, 64), np.nan, np.float32))]
    return rows


@pytest.mark.parametrize("kind", ["pstable", "simhash"])
def test_band_keys_agree_for_near_vectors_and_differ_for_random_ones(kind: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 32)).astype(np.float32)
    lsh = band_hash(32, 0.999, 16, 12, seed=0, kind=kind)
    k, k_near = band_keys(x, lsh), band_keys(x + 1e-3 * rng.normal(size=x.shape), lsh)
    k_other = band_keys(rng.normal(size=(200, 32)), lsh)
    assert (k == k_near).any(axis=1).all()  # every near copy shares at least one band
    assert (k == k_other).any(axis=1).mean() < 0.1
    assert np.array_equal(k, band_keys(x, band_hash(32, 0.999, 16, 12, seed=0, kind=kind)))
    # cosine, not scale: a row and a multiple of it land in the same buckets
    assert np.array_equal(k, band_keys(3.5 * x, lsh))


def test_every_rule_finds_its_planted_rows_and_keeps_the_rest() -> None:
    rows = _planted()
    kept, removed, report = curate(_recipe(), rows)
    reasons = {r["id"]: r["reason"].split(":")[0] for r in removed}
    assert reasons == {
        "train/000-exact": "exact_duplicate",
        "train/001-exact": "exact_duplicate",
        "train/002-near": "near_duplicate",
        "train/003-near": "near_duplicate",
        "train/004-near": "near_duplicate",
        "train/leak-exact": "leakage",
        "train/shared-group": "leakage",
        "train/nan": "quality",
    }
    # the originals survive; a train row merely near a test row is reported, not removed, by default
    assert {"train/002", "train/003", "train/004", "train/leak-near"} <= {r["id"] for r in kept}
    assert report["near_leakage_found"] == 1
    assert sum(r["split"] == "test" for r in kept) == 11  # no test row ever goes


def test_near_leakage_can_be_resolved_in_favour_of_test() -> None:
    _, removed, _ = curate(_recipe("curate.near_dedup.leakage=drop_train"), _planted())
    reason = {r["id"]: r["reason"] for r in removed}["train/leak-near"]
    assert reason.startswith("leakage: near duplicate of test row test/002")


def test_semdedup_keeps_the_row_farthest_from_its_centroid_unless_told_otherwise() -> None:
    # a and b are near-identical; a is farther from the centroid (e0); c is distinct
    emb = np.array([[0.90, 0.43, 0.0], [0.95, 0.31, 0.0], [0.6, -0.8, 0.0]], np.float32)
    ids = np.array(["a", "b", "c"], dtype=object)
    csim = (emb / np.linalg.norm(emb, axis=1, keepdims=True))[:, 0]
    args = {"dedup": True, "threshold": 0.98, "max_per_cluster": None, "seed": 0}
    removed, _ = prune_cluster(ids, emb, csim, 0, keep="farthest", **args)
    assert list(removed) == ["b"] and "to a" in removed["b"]
    removed, _ = prune_cluster(ids, emb, csim, 0, keep="closest", **args)
    assert list(removed) == ["a"]


def test_semdedup_removes_planted_copies_and_test_rows_never_change_the_decision() -> None:
    rng = np.random.default_rng(1)
    base = _walk(rng)
    rows = [_row(f"train/c{i}", base + 1e-3 * rng.normal(size=base.shape)) for i in range(4)]
    rows += [_row(f"train/o{i:02d}", _walk(rng)) for i in range(30)]
    sets = ("curate.near_dedup.enabled=false", "curate.semdedup.enabled=true", "curate.embedding.clusters=3")
    recipe = _recipe(*sets, "curate.semdedup.threshold=0.999")
    d = decide(recipe, rows)
    assert len(d.removed) == 3 and all(i.startswith("train/c") for i in d.removed)
    assert d.clusters == 3 and d.hist_semantic.sum() == 34 - 3  # every row but each cluster's first
    # k-means is fit on training rows only: adding test rows changes nothing about training rows
    d2 = decide(recipe, rows + [_row(f"test/t{i}", _walk(rng), "test") for i in range(30)])
    assert d2.removed == d.removed


def test_balance_caps_every_cluster() -> None:
    rng = np.random.default_rng(2)
    rows = [_row(f"train/{i:03d}", _walk(rng)) for i in range(60)]
    sets = ("curate.near_dedup.enabled=false", "curate.balance.enabled=true", "curate.embedding.clusters=4")
    kept, removed, report = curate(_recipe(*sets, "curate.balance.max_per_cluster=5"), rows)
    assert len(kept) <= 4 * 5 and report["removed_by_rule"] == {"balance": len(removed)}


@pytest.mark.e2e
def test_ray_path_decides_like_in_process(tmp_path: Path, ray_address: str) -> None:
    import os

    sets = ("curate.semdedup.enabled=true", "curate.balance.enabled=true", "curate.balance.max_per_cluster=8")
    sets += (
        "curate.embedding.clusters=3",
        "curate.semdedup.threshold=0.98",
        "curate.max_removed_fraction=1.0",
    )
    rows = _planted()
    expected = decide(_recipe(*sets), rows)
    assert any(r.startswith("balance") for r in expected.removed.values())

    recipe = _recipe(*sets, "curate.ray_min_rows=0", tmp=tmp_path)
    dirs = Dirs.of(recipe)
    # shuffled and split over two shards: decisions must not depend on row or shard order
    order = np.random.default_rng(7).permutation(len(rows))
    for s, part in enumerate(np.array_split(order, 2)):
        write_table(f"{dirs.data}/ingested/part-{s}.parquet", rows_to_table([rows[i] for i in part]))
    import ray

    connected = ray.is_initialized()
    os.environ["RAY_ADDRESS"] = ray_address
    shards = Path(dirs.data, "embeddings")
    try:
        run(recipe, dirs)
        kept = {r["id"] for r in table_to_rows(read_table(f"{dirs.data}/curated"))}
        assert kept == {r["id"] for r in rows} - set(expected.removed)
        removed = Path(dirs.data, "removed.jsonl").read_text().splitlines()
        assert len(removed) == len(expected.removed)
        # a changed SemDeDup threshold reuses the cached embeddings: the shards are not rewritten
        stamps = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.parquet")}
        assert stamps
        sets2 = (*sets[:-2], "curate.semdedup.threshold=0.95", sets[-1])
        run(_recipe(*sets2, "curate.ray_min_rows=0", tmp=tmp_path), dirs)
        assert {p.name: p.stat().st_mtime_ns for p in shards.glob("*.parquet")} == stamps
        kept = {r["id"] for r in table_to_rows(read_table(f"{dirs.data}/curated"))}
        assert kept == {r["id"] for r in rows} - set(decide(_recipe(*sets2), rows).removed)
    finally:
        os.environ.pop("RAY_ADDRESS", None)
        if not connected:  # leave a session another test opened alone
            ray.shutdown()


def test_same_seed_gives_byte_identical_curated_output(tmp_path: Path) -> None:
    blobs = []
    for attempt in range(2):
        recipe = _recipe(
            "curate.semdedup.enabled=true", "curate.embedding.clusters=3", tmp=tmp_path / str(attempt)
        )
        dirs = Dirs.of(recipe)
        write_table(f"{dirs.data}/ingested/part-0.parquet", rows_to_table(_planted()))
        run(recipe, dirs)
        blobs.append([p.read_bytes() for p in sorted(Path(dirs.data, "curated").iterdir())])
        blobs[-1].append(Path(dirs.data, "removed.jsonl").read_bytes())
    assert blobs[0] == blobs[1]
