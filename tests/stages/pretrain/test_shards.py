"""How the training rows reach the Ray Train workers: every global batch is a uniform draw from all
rows, never a shard in stored order (where the rows' sources sit in runs, each worker then saw one
source only)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from stages.common.rows import rows_to_table
from stages.pretrain.__main__ import rank_datasets
from stages.pretrain.shards import ShardReader, list_batches

N, LOCAL, WORLD = 64, 8, 2


def test_the_ranks_slices_make_up_the_in_process_batch_at_every_step() -> None:
    xs = list(range(N))
    for epoch in (0, 3):
        whole = list(list_batches(xs, LOCAL * WORLD, epoch, seed=7))
        ranks = [list(list_batches(xs, LOCAL, epoch, 7, WORLD, r)) for r in range(WORLD)]
        assert len(whole) == len(ranks[0]) == len(ranks[1]) == N // (LOCAL * WORLD)
        for step, batch in enumerate(whole):
            assert ranks[0][step] + ranks[1][step] == batch
    # one rank: the in-process loop's batches, unchanged
    assert list(list_batches(xs, LOCAL, 1, 7, 1, 0)) == list(list_batches(xs, LOCAL, 1, 7))


def _sorted_rows(ray: Any) -> Any:  # noqa: ANN401
    # two sources in runs, as ingest writes them: rows 0-31 from one, 32-63 from the other
    rows = [{"id": f"r{i}", "x": np.full((1, 4), i, np.float32)} for i in range(N)]
    return ray.data.from_arrow(rows_to_table(rows).select(["x", "shape"]))


def _reader(monkeypatch: pytest.MonkeyPatch, datasets: dict[str, Any], rank: int, layout: str) -> ShardReader:
    import ray.train

    # what Ray Train hands a worker for its dataset: an iterator over it
    monkeypatch.setattr(ray.train, "get_dataset_shard", lambda name: datasets[name].iterator())
    return ShardReader(LOCAL, 512.0, rank, WORLD, layout)


def _value(x: np.ndarray) -> int:
    return int(x.ravel()[0])


def test_rows_that_fit_go_whole_to_every_rank_and_steps_draw_from_all_of_them(
    ray_session: Any,  # noqa: ANN401
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    datasets, layout = rank_datasets(_sorted_rows(ray_session), WORLD, cache_mb=512.0, seed=0)
    assert layout == "all" and sorted(datasets) == ["train_rank0", "train_rank1"]
    readers = [_reader(monkeypatch, datasets, r, layout) for r in range(WORLD)]
    got = [[[_value(x) for x in b] for b in reader.batches(epoch=2, seed=5)] for reader in readers]
    want = list(list_batches(list(range(N)), LOCAL * WORLD, 2, 5))  # the in-process loop's epoch 2
    assert [a + b for a, b in zip(got[0], got[1], strict=True)] == want
    # each rank's rows span both sources
    assert all(min(v for b in g for v in b) < N // 2 <= max(v for b in g for v in b) for g in got)


def test_rows_too_large_to_hold_are_split_from_a_shuffle_not_in_stored_order(
    ray_session: Any,  # noqa: ANN401
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    datasets, layout = rank_datasets(_sorted_rows(ray_session), WORLD, cache_mb=0.0, seed=0)
    assert layout == "split"
    shards = [
        sorted(_value(x) for x in _reader(monkeypatch, datasets, r, layout)._read_all() or [])
        for r in range(WORLD)
    ]
    assert len(shards[0]) == len(shards[1]) == N // WORLD and not set(shards[0]) & set(shards[1])
    for shard in shards:  # each shard mixes both sources
        assert sum(v < N // 2 for v in shard) not in (0, len(shard))
    again, _ = rank_datasets(_sorted_rows(ray_session), WORLD, cache_mb=0.0, seed=0)
    assert sorted(_value(x) for x in _reader(monkeypatch, again, 0, layout)._read_all() or []) == shards[0]
