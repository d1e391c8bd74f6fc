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
        kept: list[int] = []
        for j in range(len(ids)):
            if kept:
                sims = vecs[kept] @ vecs[j]
                best = int(sims.argmax())
                hist += np.histogram(np.clip(sims[best], -1, 1), HIST_BINS)[0]
                if sims[best] > threshold:
                    removed[str(ids[j])] = (
                        f"semantic_duplicate: cosine {sims[best]:.4f} to {ids[kept[best]]} (cluster {cluster})"
                    )
                    continue
            kept.append(j)
    if max_per_cluster is not None:
        survivors = [str(i) for i in ids if str(i) not in removed]
        if len(survivors) > max_per_cluster:
            drop = sorted(survivors, key=lambda i: (draw_key(i, seed), i))[max_per_cluster:]
            for i in drop:
                removed[i] = (
                    f"balance: cluster {cluster} capped at {max_per_cluster} of {len(survivors)} rows"
                )
    return removed, hist
