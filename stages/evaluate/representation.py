"""What evaluate can say about an encoder without a single label.

On a fixed, seeded sample of rows (the test rows when there are any, else training rows; at most
``evaluate.diagnostic_rows``): alignment of two augmented views of each row, uniformity, and the
effective rank (RankMe) of the embeddings, for the pretrained and the random-init encoders; and
nearest-neighbour retrieval examples (cosine) for a few query rows.

The metrics are ``stages/common/diagnostics.py``'s, the same functions pretraining logs (Wang &
Isola's alignment and uniformity on L2-normalised embeddings; Garrido et al.'s RankMe on the raw
embedding matrix), on up to 1,024 rows, so RankMe can reach the embedding dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from domains.base import Row, ViewPolicy, is_test
from stages.common.diagnostics import alignment, effective_rank, uniformity


@dataclass
class Sample:
    rows: list[Row]
    #: "test rows" or "training rows": which part of the data the sample came from, for the report
    source: str


def diagnostic_sample(rows: list[Row], n: int, seed: int) -> Sample:
    """Up to ``n`` rows drawn with ``seed``: test rows when present, else training rows."""
    test = [r for r in rows if is_test(r)]
    pool, source = (test, "test rows") if test else (rows, "training rows (no row is marked test)")
    if len(pool) > n:
        keep = np.sort(np.random.default_rng(seed).choice(len(pool), n, replace=False))
        pool = [pool[i] for i in keep]
    return Sample(pool, source)


def diagnostics(
    feats: np.ndarray,
    view_feats: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, float | None]:
    """Alignment (``None`` without views), uniformity and RankMe of ``[N, D]`` features."""
    z = torch.from_numpy(np.asarray(feats, dtype=np.float64))
    out: dict[str, float | None] = {
        "alignment": None,
        "uniformity": uniformity(z) if len(z) >= 2 else None,
        "rankme": effective_rank(z),
    }
    if view_feats is not None:
        out["alignment"] = alignment(torch.from_numpy(view_feats[0]), torch.from_numpy(view_feats[1]))
    return out


def two_views(
    augment: Callable[[np.ndarray, np.random.Generator, ViewPolicy], np.ndarray],
    xs: list[np.ndarray],
    policy: ViewPolicy,
    seed: int,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two augmented views of every sample, as pretraining draws them (seeded)."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for x in xs:
        a.append(augment(x, rng, policy))
        b.append(augment(x, rng, policy))
    return a, b


def nearest_neighbours(feats: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices [Q, k], cosine distances [Q, k])`` of each query's ``k`` nearest other rows."""
    f = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    sim = f[queries] @ f.T
    sim[np.arange(len(queries)), queries] = -np.inf  # a row is not its own neighbour
    k = min(k, len(feats) - 1)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return order, 1.0 - np.take_along_axis(sim, order, axis=1)


def retrieval(
    feats: np.ndarray, ids: list[str], n_queries: int, k: int, seed: int
) -> list[dict[str, object]]:
    """For ``n_queries`` seeded query rows: their ``k`` nearest rows by cosine (ids, distances)."""
    if len(ids) < 2 or n_queries == 0 or k == 0:
        return []
    queries = np.sort(np.random.default_rng(seed).choice(len(ids), min(n_queries, len(ids)), replace=False))
    idx, dist = nearest_neighbours(feats, queries, k)
    return [
        {
            "query": ids[q],
            "neighbours": [ids[j] for j in row],
            "distances": [round(float(d), 4) for d in drow],
            "_index": [int(q), *map(int, row)],  # positions in the sample, for drawing; not written
        }
        for q, row, drow in zip(queries, idx, dist, strict=True)
    ]
