"""SemDeDup's embeddings are computed once per encoder and data: a changed threshold reuses them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import stages.curate.rules as rules
from stages.common.cli import Dirs
from stages.common.rows import rows_to_table
from stages.common.storage import write_table
from stages.curate import cache
from stages.curate.__main__ import run
from tests.stages.curate.test_dedup_rules import _planted, _recipe, _row, _walk

REPO = Path(__file__).resolve().parents[3]
SETS = ("curate.semdedup.enabled=true", "curate.embedding.clusters=3", "curate.max_removed_fraction=1.0")


class Counter:
    """Wraps the embedding function: how many calls and rows it embedded."""

    def __init__(self) -> None:
        self.calls, self.rows = 0, 0

    def __call__(self, encoder, domain, xs, batch_size):  # noqa: ANN001, ANN204
        self.calls += 1
        self.rows += len(xs)
        return self.real(encoder, domain, xs, batch_size)


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> Counter:
    c = Counter()
    c.real = rules.embed
    monkeypatch.setattr(rules, "embed", c)
    return c


def _run(tmp: Path, rows: list[dict], *sets: str) -> set[str]:
    recipe = _recipe(*SETS, *sets, tmp=tmp)
    dirs = Dirs.of(recipe)
    write_table(f"{dirs.data}/ingested/part-0.parquet", rows_to_table(rows))
    run(recipe, dirs)
    return {json.loads(line)["id"] for line in Path(dirs.data, "removed.jsonl").read_text().splitlines()}


def test_a_changed_threshold_reuses_the_embeddings_and_changed_data_embeds_only_new_rows(
    tmp_path: Path, embedded: Counter
) -> None:
    rows = _planted()
    pool = [r for r in rows if r["split"] == "train" and np.isfinite(r["x"]).all()]
    _run(tmp_path, rows)
    assert embedded.calls >= 1 and embedded.rows == len(pool)  # every training row that passes quality

    # thresholds of SemDeDup and near dedup, clusters, balancing: no embedding at all, and the same
    # decisions as a run that embeds from scratch
    changed = (
        "curate.semdedup.threshold=0.9",
        "curate.near_dedup.threshold=0.99",
        "curate.embedding.clusters=2",
    )
    before = embedded.rows
    removed = _run(
        tmp_path, rows, *changed, "curate.balance.enabled=true", "curate.balance.max_per_cluster=9"
    )
    assert embedded.rows == before
    fresh = rules.decide(
        _recipe(*SETS, *changed, "curate.balance.enabled=true", "curate.balance.max_per_cluster=9"), rows
    )
    assert removed == set(fresh.removed) and any(r.startswith("semantic") for r in fresh.removed.values())

    # changed data: one row's content changes and one row is added; only those two are embedded
    rng = np.random.default_rng(5)
    rows2 = [dict(r, x=_walk(rng)) if r["id"] == "train/010" else r for r in rows] + [
        _row("train/new", _walk(rng))
    ]
    before = embedded.rows
    _run(tmp_path, rows2)
    assert embedded.rows - before == 2

    # a changed encoder (a random init depends on the seed) embeds everything again
    before = embedded.rows
    _run(tmp_path, rows2, "curate.seed=1")
    assert embedded.rows - before == len(pool) + 1


def test_the_cache_holds_exactly_the_pool_and_a_tampered_signature_is_not_trusted(
    tmp_path: Path, embedded: Counter
) -> None:
    rows = _planted()
    _run(tmp_path, rows)
    folder = tmp_path / "data/timeseries-gunpoint" / cache.FOLDER
    t = cache.read(str(folder))
    assert sorted(t.column("id").to_pylist()) == sorted(
        r["id"] for r in rows if r["split"] == "train" and np.isfinite(r["x"]).all()
    )
    sig = json.loads((folder / cache.SIGNATURE).read_text())
    sig["encoder"]["out_dim"] = 7
    (folder / cache.SIGNATURE).write_text(json.dumps(sig))
    before = embedded.rows
    _run(tmp_path, rows)
    assert embedded.rows > before  # another encoder's embeddings are never reused


def test_without_semdedup_the_declared_output_still_exists_and_an_old_cache_is_kept(tmp_path: Path) -> None:
    rows = _planted()
    _run(tmp_path, rows)
    folder = tmp_path / "data/timeseries-gunpoint" / cache.FOLDER
    shard = folder / cache.SHARD
    stamp = shard.stat().st_mtime_ns
    recipe = _recipe("curate.semdedup.enabled=false", tmp=tmp_path)
    run(recipe, Dirs.of(recipe))
    assert shard.stat().st_mtime_ns == stamp  # kept for the next run that wants it

    empty = _recipe("curate.semdedup.enabled=false", tmp=tmp_path / "other")
    write_table(f"{Dirs.of(empty).data}/ingested/part-0.parquet", rows_to_table(rows))
    run(empty, Dirs.of(empty))
    assert (tmp_path / "other/data/timeseries-gunpoint" / cache.FOLDER / cache.SIGNATURE).is_file()


def test_dvc_declares_the_cache_as_a_persisted_output_of_curate() -> None:
    outs = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["curate"]["do"]["outs"]
    assert {"data/${key}/" + cache.FOLDER: {"persist": True}} in outs
