"""TS2Vec's training objective (Yue et al., AAAI 2022; ``yuezhihan/ts2vec``).

A port of ``models/losses.py`` (hierarchical contrastive loss with its instance-wise and temporal
contrastive terms) and of the random "contextual consistency" cropping in ``ts2vec.py::fit``.

As in TS2Vec, similarities are raw dot products of the per-timestamp representations: no
normalisation and no temperature.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _paired_contrast(z: Tensor) -> Tensor:
    """Mean InfoNCE of ``z`` ``[N, 2n, D]`` where, within each of the ``N`` groups, item ``i`` and
    item ``i + n`` are each other's positive and the other ``2n - 2`` items are negatives; the
    anchor itself is not a candidate.

    The same value and gradient as TS2Vec's ``-log_softmax`` over the off-diagonal logits (its
    tril/triu trick), read at the positives; here the diagonal is set to ``-inf`` in place and the
    positives are read off two diagonals, so no ``[N, 2n, 2n - 1]`` copies are made. For the
    temporal term of a long series (``2n`` = twice the crop) those copies cost as much as the
    similarity matmul: this halves the loss's time at a 1,200-step crop.
    """
    n = z.size(1) // 2
    sim = torch.matmul(z, z.transpose(1, 2))  # [N, 2n, 2n]
    sim.diagonal(dim1=1, dim2=2).fill_(float("-inf"))  # in place: matmul's backward needs only z
    log_p = F.log_softmax(sim, dim=-1)
    pos_first = log_p.diagonal(offset=n, dim1=1, dim2=2)  # row i, column n + i
    pos_second = log_p.diagonal(offset=-n, dim1=1, dim2=2)  # row n + i, column i
    return -(pos_first.mean() + pos_second.mean()) / 2


def instance_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Instance-wise contrast of ``[B, T, D]`` views: at each timestamp, sample ``b`` of one view must
    pick its other view among the ``2B - 1`` other representations of the batch at that timestamp."""
    if z1.size(0) == 1:
        return z1.new_tensor(0.0)
    return _paired_contrast(torch.cat([z1, z2], dim=0).transpose(0, 1))  # [T, 2B, D]


def temporal_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Temporal contrast of ``[B, T, D]`` views: within each sample, timestamp ``t`` of one view must
    pick the same timestamp of the other view among the ``2T - 1`` other timestamps of both views."""
    if z1.size(1) == 1:
        return z1.new_tensor(0.0)
    return _paired_contrast(torch.cat([z1, z2], dim=1))  # [B, 2T, D]


def hierarchical_contrastive_loss(
    z1: Tensor, z2: Tensor, alpha: float = 0.5, temporal_unit: int = 0
) -> Tensor:
    """TS2Vec's loss for aligned views ``z1, z2`` ``[B, T, D]`` (same timestamps, same samples).

    At every scale (``T, ⌊T/2⌋, ...`` via max-pooling with kernel 2 along time) add
    ``alpha * instance + (1 - alpha) * temporal`` (the temporal term only from depth ``temporal_unit``
    on); at length 1 only the instance term remains. The sum is divided by the number of scales.
    """
    loss = z1.new_zeros(())
    d = 0
    while z1.size(1) > 1:
        if alpha != 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        if d >= temporal_unit and 1 - alpha != 0:
            loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        d += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)
        z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
    if z1.size(1) == 1:
        if alpha != 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        d += 1  # as in TS2Vec, the last scale counts even when alpha == 0
    return loss / d


def _random_window(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    if x.shape[-1] <= length:
        return x
    offset = int(rng.integers(x.shape[-1] - length + 1))
    return x[..., offset : offset + length]


def ts2vec_crop_pair(
    xs: list[np.ndarray],
    rng: np.random.Generator,
    max_train_length: int | None = None,
    temporal_unit: int = 0,
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """TS2Vec's random overlapping crops ("contextual consistency") for a batch of ``[C, T_b]`` series.

    1. Each series longer than ``max_train_length`` is cut to a random window of that length (TS2Vec
       does this per batch); then every series longer than ``T = min_b T_b`` is cut to a random window
       of length ``T`` so that the batch shares one length, as in TS2Vec's padded batches.
    2. With ``T``: ``crop_l ~ U{2^(temporal_unit+1), ..., T}``, ``crop_left ~ U{0, ..., T - crop_l}``,
       ``crop_right = crop_left + crop_l``, ``crop_eleft ~ U{0, ..., crop_left}``,
       ``crop_eright ~ U{crop_right, ..., T}`` (shared by the batch) and one
       ``offset_b ~ U{-crop_eleft, ..., T - crop_eright}`` per sample.
    3. View 1 of sample ``b`` is ``x[:, offset_b + crop_eleft : offset_b + crop_right]`` (length
       ``crop_right - crop_eleft``, the same for every sample), view 2 is
       ``x[:, offset_b + crop_left : offset_b + crop_eright]`` (length ``crop_eright - crop_left``).

    The two views overlap on ``x[:, offset_b + crop_left : offset_b + crop_right]``: the **last**
    ``crop_l`` steps of view 1 and the **first** ``crop_l`` steps of view 2. Both views lie inside the
    series, and both have length ``>= crop_l``. Returns ``(views1, views2, crop_l)``; the views are
    fresh copies (the inputs are never aliased). NaNs inside a series are kept as they are.
    """
    if not xs:
        raise ValueError("ts2vec_crop_pair: empty batch")
    if max_train_length is not None:
        xs = [_random_window(np.asarray(x), max_train_length, rng) for x in xs]
    ts_l = min(int(np.asarray(x).shape[-1]) for x in xs)
    min_crop = 2 ** (temporal_unit + 1)
    if ts_l < min_crop:
        raise ValueError(f"ts2vec_crop_pair: shortest series has {ts_l} steps, need >= {min_crop}")
    xs = [_random_window(np.asarray(x), ts_l, rng) for x in xs]

    crop_l = int(rng.integers(min_crop, ts_l + 1))
    crop_left = int(rng.integers(ts_l - crop_l + 1))
    crop_right = crop_left + crop_l
    crop_eleft = int(rng.integers(crop_left + 1))
    crop_eright = int(rng.integers(crop_right, ts_l + 1))
    crop_offset = rng.integers(-crop_eleft, ts_l - crop_eright + 1, size=len(xs))

    views1, views2 = [], []
    for x, off in zip(xs, crop_offset.tolist(), strict=True):
        views1.append(x[..., off + crop_eleft : off + crop_right].copy())
        views2.append(x[..., off + crop_left : off + crop_eright].copy())
    return views1, views2, crop_l


class TS2VecObjective:
    """TS2Vec's cropping + hierarchical contrastive loss.

    Usage::

        v1, v2, crop_l = objective.make_views(xs, rng)
        h1, _ = encoder.forward_timestamps(pad(v1))  # [B, T1', D], T1' >= len(v1[0])
        h2, _ = encoder.forward_timestamps(pad(v2))
        loss = objective.loss(h1, h2, v1[0].shape[-1], crop_l)

    ``h1`` / ``h2`` may be right-padded beyond the views' valid lengths (e.g. both views encoded in
    one padded batch); only ``h1[:, len1 - crop_l : len1]`` and ``h2[:, :crop_l]`` (the overlap)
    enter the loss.
    """

    def __init__(
        self, alpha: float = 0.5, max_train_length: int | None = 3000, temporal_unit: int = 0
    ) -> None:
        self.alpha = alpha
        self.max_train_length = max_train_length
        self.temporal_unit = temporal_unit

    def make_views(
        self, xs: list[np.ndarray], rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[np.ndarray], int]:
        return ts2vec_crop_pair(xs, rng, self.max_train_length, self.temporal_unit)

    def loss(self, h1: Tensor, h2: Tensor, len1: int, crop_l: int) -> Tensor:
        """``h1`` ``[B, T1, D]``, ``h2`` ``[B, T2, D]``: per-timestamp reps of view 1 (valid length
        ``len1``) and view 2 (valid length >= ``crop_l``)."""
        if not crop_l <= len1 <= h1.size(1) or crop_l > h2.size(1):
            raise ValueError(
                f"TS2VecObjective.loss: need crop_l <= len1 <= T1 and crop_l <= T2, got crop_l={crop_l}, "
                f"len1={len1}, T1={h1.size(1)}, T2={h2.size(1)}"
            )
        z1 = h1[:, len1 - crop_l : len1]
        z2 = h2[:, :crop_l]
        return hierarchical_contrastive_loss(z1, z2, alpha=self.alpha, temporal_unit=self.temporal_unit)

    def instance_embeddings(self, reps: Tensor, batch: int, len1: int, crop_l: int) -> Tensor:
        """Max-pooled embeddings ``[2B, D]`` of both views' overlap, for pretraining diagnostics."""
        with torch.no_grad():
            return torch.cat(
                [reps[:batch, len1 - crop_l : len1].max(1).values, reps[batch:, :crop_l].max(1).values]
            )

    __call__ = loss
