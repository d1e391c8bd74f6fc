"""Embedding-quality diagnostics for contrastive pretraining.

The metric functions take (N, D) torch tensors, run without gradients, and return python scalars,
so they can be logged cheaply from any training loop.

**On what they are computed.** Pretraining computes them at checkpoint epochs (and the last epoch)
on a *fixed, seeded sample* of up to ``pretrain.diagnostic_rows`` (1,024) training rows
(:func:`sample_indices`), embedded by the encoder in eval mode (features ``h``, before the
projection head): uniformity, RankMe and the collapse warning on the rows themselves, alignment
between two seeded augmented views of each row (the same views at every epoch, so the curve tracks
the encoder, not the draw). Not on a training batch: the effective rank of an ``N x D`` matrix is
at most ``min(N, D)``, so a batch-based RankMe can never exceed the number of rows in the batch
(twice the local batch with two views), whatever the encoder learnt.

RankMe (Garrido et al. 2023) is ``exp`` of the Shannon entropy of the L1-normalised singular values
of the embedding matrix, as :func:`effective_rank` computes it; the paper evaluates it on the
embeddings of a large sample of the data (25,600 images), so that ``N >> D`` and the bound is the
embedding dimension. Up to 1,024 rows is a compromise for small data sets and cheap checkpoint
epochs: RankMe here can reach ``min(1024, D)``; with ``D`` above the sample it saturates at the
sample size, and the figure is comparable across runs only at the same ``diagnostic_rows``.
solo-learn's utilities have no RankMe; its online weighted kNN accumulates the features of a whole
validation pass (not one training batch), as ``online_knn`` here embeds a fixed labelled sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "SAMPLE_BYTES",
    "alignment",
    "effective_rank",
    "is_collapsed",
    "knn_accuracy",
    "normalized_std",
    "sample_indices",
    "sample_metrics",
    "uniformity",
]

#: the diagnostic sample's raw rows stay under this size (it travels in the workers' config and is
#: held with two augmented views per row): 1,024 rows of 32^3 volumes would be 400 MB
SAMPLE_BYTES = 32 * 2**20


def sample_indices(n_rows: int, n: int, seed: int, row_bytes: int = 0) -> np.ndarray:
    """Sorted indices of the fixed diagnostic sample: up to ``n`` of ``n_rows`` rows, seeded, and
    at most ``SAMPLE_BYTES // row_bytes`` of them."""
    if row_bytes > 0:
        n = min(n, max(2, SAMPLE_BYTES // row_bytes))
    return np.sort(np.random.default_rng([seed, 1024]).permutation(n_rows)[:n])


@torch.no_grad()
def sample_metrics(h: torch.Tensor, h_view0: torch.Tensor, h_view1: torch.Tensor) -> dict[str, float | int]:
    """The logged diagnostics of a sample's features ``h`` and of two augmented views of each row."""
    h, h_view0, h_view1 = h.double(), h_view0.double(), h_view1.double()
    return {
        "alignment": alignment(h_view0, h_view1),
        "uniformity": uniformity(h),
        "rankme": effective_rank(h),
        "collapsed": int(is_collapsed(h)),
    }


def _check_2d(z: torch.Tensor, min_rows: int = 1) -> None:
    if z.dim() != 2 or z.shape[0] < min_rows:
        raise ValueError(f"expected an (N, D) tensor with N >= {min_rows}, got {tuple(z.shape)}")


@torch.no_grad()
def alignment(z0: torch.Tensor, z1: torch.Tensor, alpha: float = 2) -> float:
    """Alignment of positive pairs (Wang & Isola 2020): E ||f(x) - f(y)||^alpha.

    Computed on L2-normalised embeddings; 0 for identical views, lower is better.
    """
    _check_2d(z0)
    if z0.shape != z1.shape:
        raise ValueError(f"shape mismatch: {tuple(z0.shape)} vs {tuple(z1.shape)}")
    diff = F.normalize(z0.double(), dim=1) - F.normalize(z1.double(), dim=1)
    return float(diff.norm(dim=1).pow(alpha).mean())


@torch.no_grad()
def uniformity(z: torch.Tensor, t: float = 2) -> float:
    """Uniformity (Wang & Isola 2020): log E_{i<j} exp(-t ||z_i - z_j||^2).

    Computed on L2-normalised embeddings; 0 when all embeddings coincide, more
    negative (lower) is more uniform on the hypersphere.
    """
    _check_2d(z, min_rows=2)
    sq_dists = torch.pdist(F.normalize(z.double(), dim=1), p=2).pow(2)
    return float(sq_dists.mul(-t).exp().mean().log())


@torch.no_grad()
def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe effective rank (Garrido et al. 2023).

    ``exp(-sum_k p_k log p_k)`` with ``p_k = sigma_k / ||sigma||_1 + eps`` and
    ``sigma`` the singular values of the (uncentred, unnormalised) embedding
    matrix, as in the paper.  Ranges from ~1 (rank-1 / collapsed) up to
    ``min(N, D)``.  Returns 0.0 for an all-zero matrix.
    """
    _check_2d(z)
    sigma = torch.linalg.svdvals(z.double())
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma / total + eps
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def normalized_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std of L2-normalised embeddings.

    For embeddings spread uniformly on the unit sphere in D dimensions this is
    ~1/sqrt(D); under complete collapse it is 0 (SimSiam, Chen & He 2021).
    """
    _check_2d(z, min_rows=2)
    return float(F.normalize(z.double(), dim=1).std(dim=0).mean())


def is_collapsed(z: torch.Tensor, threshold: float = 0.1) -> bool:
    """True when the embeddings have (nearly) collapsed.

    Rule: ``normalized_std(z) < threshold / sqrt(D)``.  Since a healthy,
    spread-out embedding has ``normalized_std ~ 1/sqrt(D)`` whatever D is,
    ``threshold`` is a fraction of that reference value: the default 0.1 flags
    embeddings whose spread is less than 10% of the uniform-sphere spread.
    Note this detects complete collapse (all points near one direction); for
    dimensional collapse look at :func:`effective_rank`.
    """
    _check_2d(z, min_rows=2)
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    return normalized_std(z) < threshold / math.sqrt(z.shape[1])


@torch.no_grad()
def knn_accuracy(
    bank: torch.Tensor,
    bank_labels: Sequence,
    queries: torch.Tensor,
    query_labels: Sequence,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Weighted kNN accuracy of ``queries`` against a labelled ``bank`` (online kNN of solo-learn).

    The protocol of Wu et al. 2018 (InstDisc), used by solo-learn's online kNN: the
    ``min(k, len(bank))`` nearest bank rows by cosine similarity ``s`` vote for their label with
    weight ``exp(s / temperature)``; returns the fraction of queries whose top-voted label is right.
    """
    _check_2d(bank)
    _check_2d(queries)
    if len(bank_labels) != bank.shape[0] or len(query_labels) != queries.shape[0]:
        raise ValueError("one label per bank row and per query row is needed")
    from sklearn.neighbors import KNeighborsClassifier

    def weights(cosine_distance: np.ndarray) -> np.ndarray:
        return np.exp((1.0 - cosine_distance) / temperature)

    knn = KNeighborsClassifier(
        n_neighbors=min(k, bank.shape[0]), metric="cosine", algorithm="brute", weights=weights
    )
    knn.fit(bank.double().cpu().numpy(), np.asarray(bank_labels))
    return float(knn.score(queries.double().cpu().numpy(), np.asarray(query_labels)))
