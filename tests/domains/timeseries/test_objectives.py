"""TS2Vec objective: losses match a loop-based reading of the definition; crops keep the overlap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from domains.timeseries.encoders import TS2VecEncoder
from domains.timeseries.objectives import (
    TS2VecObjective,
    hierarchical_contrastive_loss,
    instance_contrastive_loss,
    temporal_contrastive_loss,
    ts2vec_crop_pair,
)


def _nll_positive(vectors: torch.Tensor, anchor: int, positive: int) -> float:
    """-log softmax over all candidates but the anchor itself, evaluated at the positive."""
    a = vectors[anchor]
    others = [j for j in range(vectors.size(0)) if j != anchor]
    scores = [float(a @ vectors[j]) for j in others]
    return -(float(a @ vectors[positive]) - math.log(sum(math.exp(s) for s in scores)))


def ref_instance(z1: torch.Tensor, z2: torch.Tensor) -> float:
    B, T = z1.size(0), z1.size(1)
    if B == 1:
        return 0.0
    total = 0.0
    for t in range(T):
        vectors = torch.cat([z1[:, t], z2[:, t]], dim=0)  # [2B, D]; partner of a is (a + B) % 2B
        total += sum(_nll_positive(vectors, a, (a + B) % (2 * B)) for a in range(2 * B))
    return total / (T * 2 * B)


def ref_temporal(z1: torch.Tensor, z2: torch.Tensor) -> float:
    B, T = z1.size(0), z1.size(1)
    if T == 1:
        return 0.0
    total = 0.0
    for b in range(B):
        vectors = torch.cat([z1[b], z2[b]], dim=0)  # [2T, D]
        total += sum(_nll_positive(vectors, a, (a + T) % (2 * T)) for a in range(2 * T))
    return total / (B * 2 * T)


def _pool2(z: torch.Tensor) -> torch.Tensor:
    B, T, D = z.shape
    return z[:, : (T // 2) * 2].reshape(B, T // 2, 2, D).amax(dim=2)


def ref_hierarchical(z1: torch.Tensor, z2: torch.Tensor, alpha: float) -> float:
    total, scales = 0.0, 0
    while z1.size(1) > 1:
        total += alpha * ref_instance(z1, z2) + (1 - alpha) * ref_temporal(z1, z2)
        scales += 1
        z1, z2 = _pool2(z1), _pool2(z2)
    total += alpha * ref_instance(z1, z2)  # length 1
    return total / (scales + 1)


def _pair(B: int, T: int, D: int = 4, seed: int = 0, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = scale * torch.randn(B, T, D, generator=g, dtype=torch.float64)
    z2 = scale * torch.randn(B, T, D, generator=g, dtype=torch.float64)
    return z1, z2


@pytest.mark.parametrize("B,T", [(1, 3), (2, 1), (3, 4)])
def test_instance_and_temporal_match_reference(B: int, T: int) -> None:
    z1, z2 = _pair(B, T, seed=B * 10 + T)
    assert float(instance_contrastive_loss(z1, z2)) == pytest.approx(ref_instance(z1, z2), abs=1e-5)
    assert float(temporal_contrastive_loss(z1, z2)) == pytest.approx(ref_temporal(z1, z2), abs=1e-5)


@pytest.mark.parametrize("T", [1, 2, 5, 8])
@pytest.mark.parametrize("alpha", [0.5, 0.0, 1.0])
def test_hierarchical_matches_reference(T: int, alpha: float) -> None:
    z1, z2 = _pair(3, T, seed=T)
    got = float(hierarchical_contrastive_loss(z1, z2, alpha=alpha))
    assert got == pytest.approx(ref_hierarchical(z1, z2, alpha), abs=1e-5)


def test_identical_views_beat_unrelated_views() -> None:
    z1, z2 = _pair(4, 8, D=16, seed=1, scale=5.0)
    same = float(hierarchical_contrastive_loss(z1, z1.clone()))
    unrelated = float(hierarchical_contrastive_loss(z1, z2))
    # Raw dot products (no normalisation): after max-pooling a larger-norm negative can still outscore
    # the positive, so the identical-view loss is not ~0, but it is far below the unrelated one.
    assert same < 0.1 * unrelated


def test_gradient_flows_to_inputs() -> None:
    z1, z2 = _pair(3, 6, seed=2)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    hierarchical_contrastive_loss(z1, z2).backward()
    for z in (z1, z2):
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def _tril_triu_port(z1: torch.Tensor, z2: torch.Tensor, temporal: bool) -> torch.Tensor:
    """TS2Vec's own formulation (``models/losses.py``), kept to check the cheaper one against it."""
    n = z1.size(1) if temporal else z1.size(0)
    z = torch.cat([z1, z2], dim=1) if temporal else torch.cat([z1, z2], dim=0).transpose(0, 1)
    sim = torch.matmul(z, z.transpose(1, 2))
    logits = torch.tril(sim, diagonal=-1)[:, :, :-1] + torch.triu(sim, diagonal=1)[:, :, 1:]
    logits = -torch.nn.functional.log_softmax(logits, dim=-1)
    i = torch.arange(n)
    return (logits[:, i, n + i - 1].mean() + logits[:, n + i, i].mean()) / 2


@pytest.mark.parametrize("temporal", [False, True])
def test_losses_and_gradients_equal_ts2vec_formulation(temporal: bool) -> None:
    # Large logits (scale 3, D 4) so a softmax that kept the anchor's own score would differ.
    z1, z2 = _pair(5, 7, seed=11, scale=3.0)
    ours = temporal_contrastive_loss if temporal else instance_contrastive_loss
    grads = []
    for fn in (ours, lambda a, b: _tril_triu_port(a, b, temporal)):
        a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        value = fn(a, b)
        value.backward()
        grads.append((value.item(), a.grad, b.grad))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-10)
    torch.testing.assert_close(grads[0][1], grads[1][1])
    torch.testing.assert_close(grads[0][2], grads[1][2])


def _batch(lengths: list[int], channels: int = 2) -> list[np.ndarray]:
    # Distinct values everywhere: series b, channel c, step t holds 10000 * b + 1000 * c + t.
    return [
        (10000 * b + 1000 * np.arange(channels)[:, None] + np.arange(n)[None, :]).astype(np.float32)
        for b, n in enumerate(lengths)
    ]


@pytest.mark.parametrize("seed", range(5))
def test_crop_pair_overlap_invariant(seed: int) -> None:
    xs = _batch([20, 13, 31, 13])
    v1, v2, crop_l = ts2vec_crop_pair(xs, np.random.default_rng(seed))
    assert 2 <= crop_l <= 13
    assert len({v.shape for v in v1}) == 1 and len({v.shape for v in v2}) == 1
    for x, a, b in zip(xs, v1, v2, strict=True):
        assert a.shape[0] == b.shape[0] == x.shape[0]
        assert a.shape[1] >= crop_l and b.shape[1] >= crop_l
        np.testing.assert_array_equal(a[:, -crop_l:], b[:, :crop_l])
        for v in (a, b):  # contiguous windows of the original series
            start = int(v[0, 0] - x[0, 0])
            np.testing.assert_array_equal(v, x[:, start : start + v.shape[1]])
    assert not np.shares_memory(v1[0], xs[0])


def test_crop_pair_deterministic_and_max_length() -> None:
    xs = _batch([50, 60, 70])
    a = ts2vec_crop_pair(xs, np.random.default_rng(7), max_train_length=16)
    b = ts2vec_crop_pair(xs, np.random.default_rng(7), max_train_length=16)
    assert a[2] == b[2]
    for u, w in zip(a[0] + a[1], b[0] + b[1], strict=True):
        np.testing.assert_array_equal(u, w)
    assert all(v.shape[1] <= 16 for v in a[0] + a[1])
    with pytest.raises(ValueError):
        ts2vec_crop_pair(_batch([5, 1]), np.random.default_rng(0))


def test_objective_with_padded_encoder_batch() -> None:
    torch.manual_seed(0)
    encoder = TS2VecEncoder(in_channels=2, hidden_dim=8, out_dim=8, depth=1)
    objective = TS2VecObjective(max_train_length=40)
    v1, v2, crop_l = objective.make_views(_batch([30, 25, 40]), np.random.default_rng(3))
    len1, len2 = v1[0].shape[1], v2[0].shape[1]
    # Both views right-padded with NaN to one length and encoded in a single batch.
    width = max(len1, len2)
    batch = np.full((6, 2, width), np.nan, dtype=np.float32)
    for i, v in enumerate(v1 + v2):
        batch[i, :, : v.shape[1]] = v / 10000.0
    h, _ = encoder.forward_timestamps(torch.from_numpy(batch))
    loss = objective.loss(h[:3], h[3:], len1, crop_l)
    expected = hierarchical_contrastive_loss(h[:3, len1 - crop_l : len1], h[3:, :crop_l])
    assert torch.allclose(loss, expected) and torch.isfinite(loss)
    loss.backward()
    assert encoder.input_fc.weight.grad is not None and encoder.input_fc.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        objective.loss(h[:3], h[3:], width + 1, crop_l)
    assert len2 >= crop_l
