"""Views streamed from Ray Data (``pretrain.online_views: stream``, stages/pretrain/stream.py).

The layout, the Arrow encoding and the choice of where views are made, without Ray; the stream
itself on the session's Ray instance is tested in test_stream_ray.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.common.schema import PretrainCfg
from stages.pretrain.shards import list_batches
from stages.pretrain.stream import (
    decode_views,
    encode_views,
    plan_view_workers,
    stream_plan,
    unsupported,
)

N_ROWS, LOCAL_BATCH, STEPS = 48, 8, 3


def _config(epochs: int = 2, workers: int = 1) -> dict[str, Any]:
    pre = PretrainCfg(
        epochs=epochs, batch_size=LOCAL_BATCH, lr=3e-3, temperature=0.2, head={"hidden_dim": 16, "out_dim": 8}
    ).model_dump()
    return {
        "domain": "timeseries",
        "encoder": {"in_channels": 1, "hidden_dim": 8, "out_dim": 16, "depth": 2},
        "pretrain": pre,
        "policy": {"name": "default", "params": {}},
        "local_batch": LOCAL_BATCH,
        "steps_per_epoch": STEPS,
        "world_size": 1,
        "diagnostic_sample": [],  # the diagnostics augment in the trainer: kept out of these runs
        "view_stream": {"workers": workers, "cpus": 0.5, "prefetch_batches": 2},
    }


def _data(n: int = N_ROWS) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 40, dtype=np.float32)
    return [
        np.sin(2 * np.pi * (1 + i % 4) * t + rng.uniform(0, 6))[None].astype(np.float32) for i in range(n)
    ]


def test_the_plan_gives_each_rank_its_slice_of_the_in_process_batches() -> None:
    xs = list(range(N_ROWS))
    for epoch in (0, 1):
        batches = list(list_batches(xs, 2 * LOCAL_BATCH, epoch, seed=5))[:STEPS]
        for rank in (0, 1):
            eps, rows = stream_plan(N_ROWS, 5, epoch, epoch + 1, STEPS, LOCAL_BATCH, world=2, rank=rank)
            assert (eps == epoch).all()
            expected = [b[rank * LOCAL_BATCH : (rank + 1) * LOCAL_BATCH] for b in batches]
            assert rows.tolist() == [r for b in expected for r in b]
    eps, _ = stream_plan(N_ROWS, 5, 1, 3, STEPS, LOCAL_BATCH, world=1, rank=0)  # resumed at epoch 1
    assert sorted(set(eps.tolist())) == [1, 2] and len(eps) == 2 * STEPS * LOCAL_BATCH


def test_views_round_trip_through_arrow_with_ragged_shapes() -> None:
    views = [
        [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((1, 4), np.float32)],
        [np.zeros((3,)), np.ones((2, 2))],
    ]
    table = encode_views(np.array([0, 0]), np.array([4, 7]), views)
    batch = {k: table.column(k).to_numpy(zero_copy_only=False) for k in ("views", "shapes")}
    out = decode_views(batch, 2)  # n_views lists of one view per row
    np.testing.assert_array_equal(out[0][0], views[0][0])
    np.testing.assert_array_equal(out[1][0], views[0][1])
    np.testing.assert_array_equal(out[0][1], views[1][0])
    assert out[1][1].shape == (2, 2)


def test_where_views_are_made() -> None:
    assert unsupported(objective=True, materialize=0, small_crops=0).startswith("the domain objective")
    assert "small_crops" in unsupported(objective=False, materialize=0, small_crops=2)
    assert unsupported(objective=False, materialize=0, small_crops=0) is None
    # a cluster with CPUs beside the training workers: one view actor per spare CPU
    assert plan_view_workers("auto", None, None, 10, 2, local=False)[:2] == (8, 1.0)
    assert plan_view_workers("auto", None, 3, 10, 2, local=False)[:2] == (3, 1.0)
    # nothing spare: auto keeps the loop, a forced stream shares the trainers' CPUs
    assert plan_view_workers("auto", None, None, 2, 2, local=False)[0] == 0
    assert plan_view_workers("stream", None, None, 2, 2, local=False)[:2] == (1, 0.0)
    # a loss that needs the raw rows keeps the loop, and says why
    workers, _, why = plan_view_workers("stream", "the domain objective ...", None, 10, 2, local=False)
    assert workers == 0 and "domain objective" in why
    assert plan_view_workers("loop", None, None, 10, 2, local=False)[0] == 0
    # a run shorter than stream_min_steps: auto keeps the loop (the stream's start-up would cost
    # more) and says so; a forced stream and a long enough run stream
    workers, _, why = plan_view_workers("auto", None, None, 10, 2, local=False, steps=8, min_steps=100)
    assert workers == 0 and "8 steps" in why and "pretrain.stream_min_steps=100" in why
    assert plan_view_workers("stream", None, None, 10, 2, local=False, steps=8, min_steps=100)[0] == 8
    assert plan_view_workers("auto", None, None, 10, 2, local=False, steps=100, min_steps=100)[0] == 8
    # GPU training workers: the views are most of a step, so a short run streams too
    assert plan_view_workers("auto", None, None, 10, 2, local=False, steps=8, min_steps=100, gpu=True)[0] == 8
    # ... but still not without a spare CPU
    assert plan_view_workers("auto", None, None, 2, 2, local=False, steps=8, min_steps=100, gpu=True)[0] == 0
