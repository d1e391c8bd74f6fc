"""How a pretraining worker gets its training rows: its Ray Data dataset read into batches
(``ShardReader``), or an in-memory list cut into the same batches (``list_batches``).

``make_trainer`` (stages/pretrain/__main__.py) lays the rows out over the workers; every layout
gives rank ``r`` at step ``s`` its slice of a global batch (``stream.rank_offsets``), so the
workers' batches together are the in-process loop's batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from stages.common.bank import decode_bank
from stages.common.rows import decode_x
from stages.pretrain.stream import epoch_order, rank_offsets, shard_name


class ShardReader:
    """Batches from this worker's Ray Data dataset (``make_trainer`` lays the datasets out).

    * ``layout="all"`` (the rows fit ``pretrain.shard_cache_mb``): every worker reads every row once
      and at each step trains on its slice of the epoch's global batch, as ``DistributedSampler``
      does: the ranks' batches at a step together are the in-process loop's batch at that step.
    * ``layout="split"``: this worker's own shard of a seeded shuffle of the rows. Each pass over a
      streaming shard costs a coordination round with Ray Data (about a second on a small machine),
      which dominates epochs of a few steps, so a shard that fits ``cache_mb`` is read once into
      worker memory and reshuffled locally every epoch; a larger one streams every epoch. Every
      worker holds the same number of rows (``equal=True`` split).
    """

    def __init__(
        self, local_batch: int, cache_mb: float, rank: int, world: int = 1, layout: str = "split"
    ) -> None:
        import ray.train

        self.shard = ray.train.get_dataset_shard(shard_name(rank))
        self.local_batch, self.rank, self.world, self.layout = local_batch, rank, world, layout
        self.cache_bytes = cache_mb * 2**20
        self.cached: list[np.ndarray] | None = None
        self.streaming = cache_mb <= 0 and layout != "all"

    def _read_all(self) -> list[np.ndarray] | None:
        xs: list[np.ndarray] = []
        size = 0
        for batch in self.shard.iter_batches(batch_size=1024, batch_format="numpy"):
            for x in decode_rows(batch):
                xs.append(x)
                size += sum(v.nbytes for v in x) if isinstance(x, list) else x.nbytes
            # the driver chose "all" because every row fits: a rank must then hold them all
            if size > self.cache_bytes and self.layout != "all":
                return None
        return xs

    def batches(self, epoch: int, seed: int) -> Iterator[list[np.ndarray]]:
        """``seed``: ``pretrain.seed``, the same on every rank."""
        if self.cached is None and not self.streaming:
            self.cached = self._read_all()
            self.streaming = self.cached is None
        if self.cached is not None and self.layout == "all":
            yield from list_batches(self.cached, self.local_batch, epoch, seed, self.world, self.rank)
            return
        if self.cached is not None:  # a shard of its own: its own order
            yield from list_batches(self.cached, self.local_batch, epoch, seed + self.rank)
            return
        for batch in self.shard.iter_batches(
            batch_size=self.local_batch,
            batch_format="numpy",
            drop_last=True,
            local_shuffle_buffer_size=max(4 * self.local_batch, 256),
            local_shuffle_seed=seed + self.rank + epoch,
        ):
            yield decode_rows(batch)


def decode_rows(batch: dict[str, np.ndarray]) -> list:
    """A numpy batch of the training dataset as samples: arrays, or banks (lists of views) when
    the views were materialised."""
    if "views" in batch:
        return [decode_bank(v, s) for v, s in zip(batch["views"], batch["shapes"], strict=True)]
    return [decode_x(x, s) for x, s in zip(batch["x"], batch["shape"], strict=True)]


def list_batches(
    xs: list[np.ndarray], local_batch: int, epoch: int, seed: int, world: int = 1, rank: int = 0
) -> Iterator[list[np.ndarray]]:
    """Epoch ``epoch``'s batches of ``xs``: rank ``rank``'s slice of each global batch of the
    epoch's permutation (``rank_offsets``, the view stream's layout too); one rank takes whole
    batches. The last incomplete global batch is dropped."""
    order = epoch_order(len(xs), epoch, seed)
    for positions in rank_offsets(len(xs) // (local_batch * world), local_batch, world, rank):
        yield [xs[i] for i in order[positions]]
