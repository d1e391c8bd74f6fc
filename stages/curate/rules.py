"""The curation rules in order, in-process: quality → content hash (exact dedup + content leakage) →
group leakage → near dedup (fingerprints) → SemDeDup and balancing (embeddings, training rows only).

Each rule sees only the rows that survived the ones before it. ``stages.curate.distributed`` runs
the same per-group functions on Ray Data for data that does not fit one process; both return a
:class:`Decisions`, and for the same input they decide the same.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from domains import get_domain
from domains.base import TEST_SPLIT, is_train
from stages.common.cli import StageError
from stages.common.encoders import embed
from stages.common.schema import NearDedupCfg, Recipe
from stages.curate import cache
from stages.curate.dedup import content_hash, hash_group
from stages.curate.filters import quality_reasons
from stages.curate.leakage import group_leaks, test_groups
from stages.curate.near import HIST_BINS, bits_per_band, near_pairs, resolve
from stages.curate.semantic import assign, build_embedder, fit_kmeans, in_fit_sample, prune_cluster

Row = dict[str, Any]


@dataclass
class Decisions:
    """Which rows go and why, plus what the report shows about the similarity distributions."""

    removed: dict[str, str] = field(default_factory=dict)
    leakage_found: int = 0
    #: training rows near (not equal to) a test row, removed only with ``near_dedup.leakage: drop_train``
    near_leakage_found: int = 0
    hist_near: np.ndarray = field(default_factory=lambda: np.zeros(len(HIST_BINS) - 1, np.int64))
    hist_semantic: np.ndarray = field(default_factory=lambda: np.zeros(len(HIST_BINS) - 1, np.int64))
    clusters: int = 0
    #: test rows removed by the quality filter (only with ``curate.test_rows: drop_and_report``)
    test_rows_removed: int = 0

    def add(self, reasons: dict[str, str]) -> None:
        for row_id, reason in reasons.items():
            self.removed.setdefault(row_id, reason)

    def add_leaks(self, reasons: dict[str, str], drop: bool) -> None:
        self.leakage_found += len(reasons)
        if drop:
            self.add(reasons)


def wants_embeddings(recipe: Recipe) -> bool:
    return recipe.curate.semdedup.enabled or recipe.curate.balance.enabled


def embedder_for(recipe: Recipe, rows: list[Row]) -> Any:
    cfg = cache.encoder_cfg(recipe, rows[0]["x"])
    return build_embedder(recipe.domain, cfg, recipe.curate.embedding.encoder, recipe.curate.seed)


def embed_rows(recipe: Recipe, rows: list[Row]) -> np.ndarray:
    """``[N, D]`` embeddings of ``rows`` by the curation embedder (the expensive step the cache saves)."""
    return embed(
        embedder_for(recipe, rows), recipe.domain, [r["x"] for r in rows], recipe.curate.embedding.batch_size
    )


def cached_embeddings(recipe: Recipe, pool: list[Row], hashes: dict[str, str], folder: str) -> np.ndarray:
    """Embeddings of the ``pool`` rows, reusing those cached in ``folder`` (``stages.curate.cache``)
    and embedding only the rest; the cache is rewritten to hold exactly ``pool`` when it did not."""
    sig = cache.signature(recipe, cache.encoder_cfg(recipe, pool[0]["x"]))
    ids = [r["id"] for r in pool]
    row_hashes = [hashes[i] for i in ids]
    emb, missing, exact = cache.reuse(folder, sig, ids, row_hashes)
    if missing.any():
        new = embed_rows(recipe, [pool[i] for i in np.flatnonzero(missing)])
        if emb is None:
            emb = new
        else:
            emb[missing] = new
    if not exact:
        cache.save(folder, sig, ids, row_hashes, emb)
    return emb


def near_cfg(recipe: Recipe) -> NearDedupCfg:
    """``curate.near_dedup`` with its threshold resolved (unset: the domain's ``near_threshold``)."""
    nd = recipe.curate.near_dedup
    if nd.threshold is not None:
        return nd
    return nd.model_copy(update={"threshold": get_domain(recipe.domain).near_threshold})


def decide(recipe: Recipe, rows: list[Row], embeddings: str | None = None) -> Decisions:
    """Run every enabled rule over ``rows`` (in memory) and return the decisions.

    ``embeddings``: the folder of SemDeDup's embedding cache (``stages.curate.cache``); None embeds
    the surviving training rows without caching."""
    cfg = recipe.curate
    domain = get_domain(recipe.domain)
    drop = cfg.leakage == "drop_train"
    d = Decisions()

    def alive() -> list[Row]:
        return [r for r in rows if r["id"] not in d.removed]

    if cfg.quality_filter:
        found = quality_reasons(domain, rows)
        add_quality(recipe, d, ((rows[i]["id"], rows[i].get("split"), r) for i, r in found.items()))

    # what SemDeDup may embed: training rows that pass the quality filter (a function of the data,
    # so the embedding cache does not change with the dedup thresholds)
    pool = [r for r in alive() if is_train(r)]
    hashes = {r["id"]: content_hash(r["x"]) for r in alive()}
    by_hash: dict[str, list[Row]] = defaultdict(list)
    for r in alive():
        by_hash[hashes[r["id"]]].append(r)
    for group in by_hash.values():
        if len(group) > 1:
            exact, leaks = hash_group(
                [r["id"] for r in group], [r.get("split") for r in group], cfg.exact_dedup
            )
            d.add(exact)
            d.add_leaks(leaks, drop)
    d.add_leaks(group_leaks(alive(), test_groups(rows)), drop)

    if cfg.near_dedup.enabled:
        live = alive()
        if live:
            nd = near_cfg(recipe)
            fps = domain.fingerprint([r["x"] for r in live])
            ids = np.array([r["id"] for r in live], dtype=object)
            splits = np.array([r.get("split") or "" for r in live], dtype=object)
            # exact all-pairs for small inputs, LSH above (stages.curate.near.EXACT_MAX_ROWS)
            pairs, hist = near_pairs(
                ids, splits, fps, nd.threshold, nd.bands, bits_per_band(nd), cfg.seed, kind=nd.hash
            )
            d.hist_near += hist
            removed, d.near_leakage_found = resolve(pairs, nd.leakage == "drop_train")
            d.add(removed)

    if wants_embeddings(recipe):
        train = [r for r in alive() if is_train(r)]
        if train:
            if embeddings is None:
                emb = embed_rows(recipe, train)
            else:
                at = {r["id"]: i for i, r in enumerate(pool)}
                emb = cached_embeddings(recipe, pool, hashes, embeddings)[[at[r["id"]] for r in train]]
            semantic(recipe, np.array([r["id"] for r in train], dtype=object), emb, d)
    return d


def add_quality(recipe: Recipe, d: Decisions, found: Iterable[tuple[str, str | None, str]]) -> None:
    """Record the quality filter's removals ``(id, split, reason)``; a test row among them stops the
    stage (one line naming it) unless ``curate.test_rows`` is ``drop_and_report``.

    The test split is the benchmark: silently scoring on fewer rows than published would change it.
    """
    found = sorted(found)
    test = [(i, r) for i, s, r in found if s == TEST_SPLIT]
    if test and recipe.curate.test_rows == "fail":
        i, reason = test[0]
        more = f" (and {len(test) - 1} more test rows)" if len(test) > 1 else ""
        raise StageError(
            f"test row {i!r} fails the quality filter ({reason.removeprefix('quality: ')}){more}; "
            "test rows are never removed silently: fix the data, or set curate.test_rows=drop_and_report"
        )
    d.test_rows_removed += len(test)
    d.add({i: r for i, _, r in found})


def semantic(recipe: Recipe, ids: np.ndarray, emb: np.ndarray, d: Decisions) -> None:
    """SemDeDup and balancing over the training rows' embeddings (k-means fit on a sample of them)."""
    cfg = recipe.curate
    m = in_fit_sample(ids, len(ids), cfg)
    centroids, mean = fit_kmeans(ids[m], emb[m], cfg)
    emb = emb - mean
    d.clusters = len(centroids)
    cluster, csim = assign(emb, centroids)
    for c in np.unique(cluster):
        m = cluster == c
        removed, hist = prune_cluster(ids[m], emb[m], csim[m], int(c), **prune_args(recipe))
        d.add(removed)
        d.hist_semantic += hist


def prune_args(recipe: Recipe) -> dict[str, Any]:
    cfg = recipe.curate
    return {
        "dedup": cfg.semdedup.enabled,
        "threshold": cfg.semdedup.threshold,
        "keep": cfg.semdedup.keep,
        "max_per_cluster": cfg.balance.max_per_cluster if cfg.balance.enabled else None,
        "seed": cfg.seed,
    }


def buckets(keys: np.ndarray) -> list[np.ndarray]:
    """Row indices of every LSH bucket with two or more rows (one bucket per band and key)."""
    flat = keys.reshape(-1)
    rows = np.repeat(np.arange(keys.shape[0]), keys.shape[1])
    order = np.argsort(flat, kind="stable")
    flat, rows = flat[order], rows[order]
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    sizes = np.diff(np.r_[starts, len(flat)])
    return [rows[s : s + n] for s, n in zip(starts, sizes, strict=True) if n > 1]
