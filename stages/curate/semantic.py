"""SemDeDup and cluster balancing over encoder embeddings (k-means with faiss, training rows only).

SemDeDup (Abbas et al. 2023, arXiv 2303.09540; ``facebookresearch/SemDeDup``): embed, k-means,
then within each cluster a row whose cosine similarity to a row that is kept exceeds ``1 - ε``
(here ``threshold``) is removed. The paper keeps "the example with the lowest cosine similarity to
the cluster centroid" (the repository's ``keep_hard=True``: rows sorted farthest-first, each row
compared with those before it); ``keep: farthest`` does that, ``keep: closest`` the reverse.

Balancing follows the spirit of hierarchical k-means curation (Vo et al. 2024,
``facebookresearch/ssl-data-curation``), one level deep: an over-represented cluster is cut down to
``max_per_cluster`` rows, drawn uniformly by a seeded hash of the id (order-independent).

The clustering is fit on training rows only and only training rows are embedded and assigned, so
the test split never influences which training rows are kept.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

from stages.curate.near import HIST_BINS, unit_rows


def build_embedder(domain_name: str, encoder_cfg: dict[str, Any], path: str | None, seed: int) -> nn.Module:
    """The encoder at ``path`` (a previous run's ``pretrained/``), else a seeded random-init one."""
    from stages.common.encoders import build_encoder, load_encoder

    if path:
        return load_encoder(path)
    torch.manual_seed(seed)
    return build_encoder(domain_name, encoder_cfg).eval()


#: k-means is fit on at most this many training embeddings per centroid (faiss' own default cap)
POINTS_PER_CENTROID = 256


def in_fit_sample(ids: np.ndarray, n_train: int, cfg: Any) -> np.ndarray:
    """Mask of the rows k-means is fit on: a seeded sample by id hash, independent of row order,
    of about ``clusters x 256`` training rows, so the driver's memory does not grow with the data."""
    frac = min(1.0, cfg.embedding.clusters * POINTS_PER_CENTROID / max(1, n_train))
    if frac >= 1.0:
        return np.ones(len(ids), bool)
    cut = int(frac * 2**64)
    return np.array([int(draw_key(str(i), cfg.seed + 1), 16) < cut for i in ids], bool)


def fit_kmeans(ids: np.ndarray, emb: np.ndarray, cfg: Any) -> tuple[np.ndarray, np.ndarray]:
    """``[k', D]`` unit-norm centroids (spherical k-means, as SemDeDup; k' = min(k, rows)) of the
    embeddings centred on their mean, and that mean.

    Centring matters: a random-init encoder maps every input near one direction (cosine > 0.99
    between almost all GunPoint series), which would make everything a "semantic duplicate".
    Rows are sorted by id first: faiss seeds its centroids from the row order it is given."""
    import faiss

    mean = emb.astype(np.float64).mean(axis=0).astype(np.float32)
    x = np.ascontiguousarray(unit_rows(emb[np.argsort(ids.astype(str), kind="stable")] - mean))
    k = max(1, min(cfg.embedding.clusters, len(x)))
    km = faiss.Kmeans(
        x.shape[1], k, niter=cfg.embedding.kmeans_iters, seed=cfg.seed, spherical=True, verbose=False
    )
    km.train(x)
    return unit_rows(km.centroids), mean


def assign(emb: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row and its cosine similarity to it."""
    sims = unit_rows(emb) @ centroids.T
    cluster = sims.argmax(axis=1)
    return cluster.astype(np.int64), sims[np.arange(len(sims)), cluster].astype(np.float32)


def draw_key(row_id: str, seed: int) -> str:
    return hashlib.blake2b(f"{seed}:{row_id}".encode(), digest_size=8).hexdigest()


def prune_cluster(
    ids: np.ndarray,
    emb: np.ndarray,
    centroid_sim: np.ndarray,
    cluster: int,
    *,
    dedup: bool,
    threshold: float,
    keep: str,
    max_per_cluster: int | None,
    seed: int,
) -> tuple[dict[str, str], np.ndarray]:
    """Reasons for the rows of one cluster to remove, and the histogram of each row's highest
    similarity to an earlier row of the cluster (SemDeDup's ``M``)."""
    # farthest first (lowest centroid similarity) keeps the paper's representative; ids break ties
    sign = 1.0 if keep == "farthest" else -1.0
    order = np.lexsort((ids, sign * centroid_sim))
    ids, vecs = ids[order], unit_rows(emb[order])
    removed: dict[str, str] = {}
    hist = np.zeros(len(HIST_BINS) - 1, np.int64)
    if dedup and len(ids) > 1:
        best_sim, best_row, kept = greedy_kept(vecs, threshold)
        hist += np.histogram(np.clip(best_sim[1:], -1, 1), HIST_BINS)[0]
        for j in np.flatnonzero(~kept):
            removed[str(ids[j])] = (
                f"semantic_duplicate: cosine {best_sim[j]:.4f} to {ids[best_row[j]]} (cluster {cluster})"
            )
    if max_per_cluster is not None:
        survivors = [str(i) for i in ids if str(i) not in removed]
        if len(survivors) > max_per_cluster:
            drop = sorted(survivors, key=lambda i: (draw_key(i, seed), i))[max_per_cluster:]
            for i in drop:
                removed[i] = (
                    f"balance: cluster {cluster} capped at {max_per_cluster} of {len(survivors)} rows"
                )
    return removed, hist


#: rows decided at once by ``greedy_kept`` (one matrix product against the kept rows per block)
BLOCK = 1024


def greedy_kept(vecs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SemDeDup's greedy pass in row order: a row is kept unless its cosine to an earlier *kept* row
    exceeds ``threshold``. Returns each row's highest cosine to an earlier kept row (row 0: -inf),
    which row that is, and the kept mask.

    Blocked: a block's rows are compared with all kept rows before it in one matrix product, and
    with each other in another; only rows with an earlier near row inside their own block need the
    row-by-row pass (their fate depends on whether that row is kept)."""
    n = len(vecs)
    best = np.full(n, -np.inf, np.float32)
    arg = np.full(n, -1, np.int64)
    kept = np.zeros(n, bool)
    kept_idx = np.zeros(0, np.int64)
    for s in range(0, n, BLOCK):
        e = min(n, s + BLOCK)
        v = vecs[s:e]
        if len(kept_idx):
            prev = v @ vecs[kept_idx].T
            a = prev.argmax(axis=1)
            best[s:e], arg[s:e] = prev[np.arange(e - s), a], kept_idx[a]
        intra = np.tril(v @ v.T, -1)
        intra[np.triu_indices(e - s)] = -np.inf
        k = best[s:e] <= threshold
        for j in np.flatnonzero((intra > threshold).any(axis=1)):
            k[j] = k[j] and not (intra[j, :j][k[:j]] > threshold).any()
        masked = np.where(k[None, :], intra, -np.inf)
        a = masked.argmax(axis=1)
        m = masked[np.arange(e - s), a]
        better = m > best[s:e]
        best[s:e] = np.where(better, m, best[s:e])
        arg[s:e] = np.where(better, s + a, arg[s:e])
        kept[s:e] = k
        kept_idx = np.r_[kept_idx, s + np.flatnonzero(k)]
    return best, arg, kept
