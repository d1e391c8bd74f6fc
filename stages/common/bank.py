"""Materialised views (``views.materialize: K``): K augmented views of every training row, made
once by Ray Data in the views stage and stored as ``views/bank/*.parquet``.

Pretraining then draws ``views.n_views`` distinct views of a row's bank per step instead of
augmenting online. It pays for itself when augmentation costs more than the training step (audio
pitch shift, mesh resampling, a slow simulator render); the price is that a row is seen in at most
``K`` forms rather than a fresh one every epoch.

A row's views depend only on ``views.seed`` and the row's id, never on how Ray Data batches or
places the rows, so the bank (and its DVC hash) is the same on a laptop and on a cluster.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import pyarrow as pa

from domains import get_domain
from domains.base import ViewPolicy
from stages.common.rows import decode_x

BANK_DIR = "bank"
BANK_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("views", pa.list_(pa.list_(pa.float32()))),  # K flattened views
        ("shapes", pa.list_(pa.list_(pa.int32()))),  # their shapes (crops may change the length)
    ]
)


def row_rng(seed: int, row_id: str) -> np.random.Generator:
    """The random stream of one row's bank: a function of the seed and the row id only."""
    key = int.from_bytes(hashlib.sha256(row_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, key])


def bank_views(
    x: np.ndarray, domain: Any, policy: ViewPolicy, k: int, rng: np.random.Generator
) -> list[np.ndarray]:  # noqa: ANN401
    return [np.asarray(domain.augment(x, rng, policy), dtype=np.float32) for _ in range(k)]


def bank_batch(batch: pa.Table, domain: str, policy: dict[str, Any], k: int, seed: int) -> pa.Table:
    """Ray Data ``map_batches`` function: curated rows (id, x, shape) → their banks."""
    dom, pol = get_domain(domain), ViewPolicy(**policy)
    ids = batch.column("id").to_pylist()
    xs = batch.column("x").to_numpy(zero_copy_only=False)
    shapes = batch.column("shape").to_numpy(zero_copy_only=False)
    out_views, out_shapes = [], []
    for rid, flat, shape in zip(ids, xs, shapes, strict=True):
        views = bank_views(decode_x(flat, shape), dom, pol, k, row_rng(seed, rid))
        out_views.append([v.reshape(-1) for v in views])
        out_shapes.append([list(v.shape) for v in views])
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "views": pa.array(out_views, BANK_SCHEMA.field("views").type),
            "shapes": pa.array(out_shapes, BANK_SCHEMA.field("shapes").type),
        },
        schema=BANK_SCHEMA,
    )


def decode_bank(views: Any, shapes: Any) -> list[np.ndarray]:  # noqa: ANN401 - Arrow/numpy lists
    """One row's bank back as arrays."""
    return [decode_x(v, s) for v, s in zip(views, shapes, strict=True)]


def draw_views(banks: list[list[np.ndarray]], n: int, rng: np.random.Generator) -> list[list[np.ndarray]]:
    """``n`` distinct views from each row's bank, laid out as the online path makes them: ``n``
    lists holding one view per row."""
    picks = [rng.choice(len(b), size=n, replace=False) for b in banks]
    return [[b[p[j]] for b, p in zip(banks, picks, strict=True)] for j in range(n)]


def materialize(curated: str, out: str, domain: str, policy: ViewPolicy, k: int, seed: int) -> dict[str, Any]:
    """Write the banks of every non-test row of ``curated`` under ``out`` (Ray Data); returns stats."""
    import ray.data

    from stages.common.ray_session import shard_names
    from stages.common.rows import train_expr

    ray.data.DataContext.get_current().execution_options.preserve_order = True  # stable shard contents
    start = time.perf_counter()
    ds = (
        ray.data.read_parquet(curated, file_extensions=["parquet"], columns=["id", "x", "shape", "split"])
        .filter(expr=train_expr())  # test rows never shape what pretraining sees
        .map_batches(
            bank_batch,
            batch_format="pyarrow",
            batch_size=64,
            fn_kwargs={
                "domain": domain,
                "policy": {"name": policy.name, "params": policy.params},
                "k": k,
                "seed": seed,
            },
        )
    )
    ds.write_parquet(out, filename_provider=shard_names())
    seconds = time.perf_counter() - start
    rows = ray.data.read_parquet(out, file_extensions=["parquet"]).count()
    return {
        "rows": rows,
        "views": rows * k,
        "seconds": round(seconds, 2),
        "views_per_s": round(rows * k / seconds, 1),
    }
