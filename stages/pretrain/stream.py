"""Views made by Ray Data ahead of the trainer (``pretrain.online_views: stream``).

In the loop mode a training worker calls ``domain.augment`` inside its own step, so on a small
machine it spends a large part of every step making views (audio 45 %, medical 18 %) and on a GPU
nearly all of it. Streaming moves that CPU work into a Ray Data pipeline: a pool of view-making
actors (``pretrain.view_workers``, each holding one CPU apart from the training workers' own)
makes every local batch's views, and each training worker reads them with
``get_dataset_shard(...).iter_batches(prefetch_batches=...)`` so augmentation overlaps the step
and scales onto the CPU nodes of a cluster.

One stream covers the whole run (every remaining epoch), so the trainer pays Ray Data's start-up
once, not per epoch. Its content is fixed by the seed alone, never by timing or placement:

* the driver lays out, for each epoch ``e`` and each rank ``r``, which training rows make up the
  worker's local batches (the global batch of step ``s`` is ``perm_e[s*B:(s+1)*B]``, with
  ``perm_e`` the same per-epoch permutation as the in-process loop; rank ``r`` takes its
  ``r``-th slice), as small ``(epoch, row)`` blocks;
* a view-making actor turns a block into views, each row's from its own generator
  ``default_rng([seed, epoch, row])``: fresh views every epoch, reproducible with a seed;
* ``preserve_order`` keeps the blocks in that order, and every rank gets its own dataset (not a
  ``streaming_split``, which assigns blocks to whichever worker asks first).

The training rows travel once through the object store (``ray.put``); the blocks carry indices.
Losses that need the raw rows keep the loop mode (:func:`unsupported` says which and why).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pyarrow as pa

from domains import get_domain
from domains.base import ViewPolicy

#: the dataset name of rank ``r``'s view stream in the trainer's ``datasets``
STREAM_NAME = "views_rank{}"
#: blocks per stream at most (one local batch per block up to this): enough to pipeline, few
#: enough that the driver's plan stays small for long runs
MAX_BLOCKS = 4096


def stream_name(rank: int) -> str:
    return STREAM_NAME.format(rank)


#: the dataset name of rank ``r``'s share of the training rows (or of the views bank)
SHARD_NAME = "train_rank{}"


def shard_name(rank: int) -> str:
    return SHARD_NAME.format(rank)


def unsupported(objective: bool, materialize: int, small_crops: int) -> str | None:
    """Why views cannot be streamed for this loss and views setting (None: they can)."""
    if objective:
        return "the domain objective makes its own views from the raw rows in the step"
    if materialize:
        return "views.materialize draws views from the views stage's bank"
    if small_crops:
        return "views.small_crops cuts its crops from the raw row in the step"
    return None


def epoch_order(n_rows: int, epoch: int, seed: int) -> np.ndarray:
    """The rows of epoch ``epoch`` in training order (the in-process loop shuffles the same way)."""
    return np.random.default_rng(seed + epoch).permutation(n_rows)


def rank_offsets(steps: int, local_batch: int, world: int, rank: int) -> np.ndarray:
    """``(steps, local_batch)`` positions in an epoch's order that rank ``rank`` trains on: at step
    ``s`` its ``rank``-th slice of the global batch ``[s*G, (s+1)*G)``, ``G = world * local_batch``
    (``DistributedSampler``'s layout). The ranks' slices at a step make up one global batch, so
    ``world`` ranks train on exactly the in-process loop's batches."""
    global_batch = local_batch * world
    return np.arange(steps)[:, None] * global_batch + rank * local_batch + np.arange(local_batch)


def stream_plan(
    n_rows: int, seed: int, start_epoch: int, epochs: int, steps: int, local_batch: int, world: int, rank: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(epoch, row)`` of every sample rank ``rank`` trains on from ``start_epoch`` on, in order."""
    global_batch = local_batch * world
    if steps * global_batch > n_rows:
        raise ValueError(f"{steps} steps of {global_batch} rows need more than the {n_rows} training rows")
    offsets = rank_offsets(steps, local_batch, world, rank).ravel()
    eps = np.arange(start_epoch, epochs)
    rows = [epoch_order(n_rows, e, seed)[offsets] for e in eps]
    return (
        np.repeat(eps, len(offsets)).astype(np.int64),
        np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64),
    )


def encode_views(epochs: np.ndarray, rows: np.ndarray, views: list[list[np.ndarray]]) -> pa.Table:
    """One batch of views as Arrow: ``epoch``, ``row`` and per row its views (flattened) and shapes,
    the view bank's layout (``stages.common.bank``). Built from offsets, without Python lists of
    floats, so a batch of volumes costs one copy."""
    flat = [np.asarray(v, dtype=np.float32) for row_views in views for v in row_views]
    n_views = len(views[0]) if views else 0
    lengths = np.array([v.size for v in flat], dtype=np.int64)
    inner = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)),
        pa.array(np.concatenate([v.reshape(-1) for v in flat]) if flat else np.zeros(0, np.float32)),
    )
    shape_lens = np.array([v.ndim for v in flat], dtype=np.int64)
    shapes = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(shape_lens)]).astype(np.int32)),
        pa.array(
            np.concatenate([np.asarray(v.shape, np.int32) for v in flat]) if flat else np.zeros(0, np.int32)
        ),
    )
    outer = pa.array(np.arange(0, len(flat) + 1, max(n_views, 1), dtype=np.int32))
    return pa.table(
        {
            "epoch": pa.array(epochs, pa.int64()),
            "row": pa.array(rows, pa.int64()),
            "views": pa.ListArray.from_arrays(outer, inner),
            "shapes": pa.ListArray.from_arrays(outer, shapes),
        }
    )


def decode_views(batch: dict[str, np.ndarray], n_views: int) -> list[list[np.ndarray]]:
    """A numpy batch of the stream as the loop lays views out: ``n_views`` lists of one view per row."""
    per_row = [
        [np.asarray(v, dtype=np.float32).reshape(s) for v, s in zip(vs, ss, strict=True)]
        for vs, ss in zip(batch["views"], batch["shapes"], strict=True)
    ]
    return [[row[j] for row in per_row] for j in range(n_views)]


class ViewMaker:
    """Ray Data actor: ``(epoch, row)`` blocks → those rows' views. Holds the training rows (fetched
    once from the object store) and the domain, so a batch costs only its augmentations."""

    def __init__(self, rows: list[Any], domain: str, policy: dict[str, Any], n_views: int, seed: int) -> None:
        import ray

        # the rows' ObjectRef comes wrapped in a list, so Ray hands it over unresolved
        self.xs = ray.get(rows[0])
        self.domain = get_domain(domain)
        self.policy = ViewPolicy(**policy)
        self.n_views = n_views
        self.seed = seed

    def views_of(self, epoch: int, row: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, row])
        return [self.domain.augment(self.xs[row], rng, self.policy) for _ in range(self.n_views)]

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        epochs, rows = batch["epoch"], batch["row"]
        views = [self.views_of(int(e), int(r)) for e, r in zip(epochs, rows, strict=True)]
        return encode_views(epochs, rows, views)


def view_stream(
    rows_ref: Any,  # noqa: ANN401 - a ray.ObjectRef of the training rows (a list of arrays)
    n_rows: int,
    config: dict[str, Any],
    rank: int,
    start_epoch: int,
    maker: type[ViewMaker] = ViewMaker,
) -> Any:  # noqa: ANN401 - a ray.data.Dataset
    """Rank ``rank``'s stream of views from ``start_epoch`` to the last epoch (lazy; runs when read).

    ``config`` is the worker config; ``config["view_stream"]`` holds ``workers`` (actors),
    ``cpus`` (per actor) and ``prefetch_batches``.
    """
    import ray.data

    pre, stream = config["pretrain"], config["view_stream"]
    local_batch, steps = int(config["local_batch"]), int(config["steps_per_epoch"])
    epochs, rows = stream_plan(
        n_rows, pre["seed"], start_epoch, pre["epochs"], steps, local_batch, config.get("world_size", 1), rank
    )
    batches = max(1, len(rows) // local_batch)
    per_block = local_batch * math.ceil(batches / MAX_BLOCKS)
    blocks = [
        pa.table({"epoch": epochs[i : i + per_block], "row": rows[i : i + per_block]})
        for i in range(0, max(len(rows), 1), per_block)
    ]
    return ray.data.from_arrow(blocks).map_batches(
        maker,
        fn_constructor_kwargs={
            "rows": [rows_ref],
            "domain": config["domain"],
            "policy": config["policy"],
            "n_views": config.get("views", {}).get("n_views", 2),
            "seed": pre["seed"],
        },
        batch_size=local_batch,
        batch_format="numpy",
        # a fixed pool, each actor holding its CPUs apart from the training workers' own
        compute=ray.data.ActorPoolStrategy(size=stream["workers"]),
        num_cpus=stream["cpus"],
        udf_modifying_row_count=False,
    )


def ingest_options() -> Any:  # noqa: ANN401 - ray.data.ExecutionOptions
    """Ray Train's ingest options with ``preserve_order``: a stream's order is part of its content."""
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


def plan_view_workers(
    mode: str,
    reason: str | None,
    requested: int | None,
    cluster_cpus: float,
    trainer_cpus: float,
    local: bool,
    steps: int = 0,
    min_steps: int = 0,
    gpu: bool = False,
) -> tuple[int, float, str]:
    """How many view actors to run, with how many CPUs each, and why (0 actors: views in the loop).

    ``auto`` streams when the views can be streamed, the run has at least ``min_steps`` steps per
    worker (``steps``; not asked of GPU training workers, whose steps are mostly the views they
    would make: 49-97 % of a demo-scale step on an H200, bench/results/gpu_smoke.md) and a CPU is
    left beside the training workers:
    on a cluster by Ray's count; when every node is on this machine (``local``) also by its cores
    (an embedded instance's logical CPUs include two extra for Ray Data, which on a 2-core machine
    are not real: there, views made beside two training workers only take the cores they train on).
    """
    if mode == "loop":
        return 0, 0.0, "pretrain.online_views=loop"
    if reason is not None:
        return 0, 0.0, f"views made in the training loop: {reason}"
    if mode == "auto" and steps < min_steps and not gpu:
        return (
            0,
            0.0,
            f"views made in the training loop: {steps} steps, fewer than "
            f"pretrain.stream_min_steps={min_steps} (streaming's start-up would cost more)",
        )
    spare = cluster_cpus - trainer_cpus
    if local:
        spare = min(spare, (os.cpu_count() or 1) - trainer_cpus)
    if mode == "auto" and spare < 1:
        return (
            0,
            0.0,
            f"views made in the training loop: no CPU beside the training workers' {trainer_cpus:g}",
        )
    workers = requested or max(1, int(spare))
    # with no spare CPU (online_views=stream forced), the actors share the trainers' cores
    cpus = min(1.0, max(spare, 0.0) / workers)
    return workers, cpus, f"views streamed from Ray Data: {workers} view worker(s) x {cpus:g} CPU"
