"""The curation rules on Ray Data, for data that does not fit one process.

Per-row work (validation, content hashes, fingerprints, LSH keys, embeddings) runs in streaming
``map_batches`` tasks; grouping (content hash, LSH bucket, k-means cluster) is a hash shuffle
(``groupby(...).map_groups``). Content hashes and LSH keys are grouped by a coarse *partition* of
the key (``key mod P``, P growing with the data) and grouped exactly inside each partition with
numpy, because Ray calls ``map_groups`` once per group in Python: one call per LSH bucket would be
tens of millions of calls. LSH runs in two passes: the first ships only int64 keys and returns the
keys that occur twice or more; the second ships fingerprints of the rows in those buckets only.
(``groupby().count()``, Ray's aggregation, costs ~45 s of fixed overhead per call here: avoided.)
The driver holds only what it must decide on: removed ids with their reasons, verified pairs,
test groups, a k-means sample of at most ``clusters x 256`` embeddings, histograms.

The per-group functions are the in-process path's (``stages.curate.rules``), so both decide alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from domains import get_domain
from stages.common.rows import decode_x, train_mask
from stages.common.schema import Recipe
from stages.common.storage import atomic_dir, join, write_json
from stages.curate import cache
from stages.curate.dedup import content_hash, hash_group
from stages.curate.near import HIST_BINS, BandHash, band_hash, band_keys, bits_per_band, bucket_pairs, resolve
from stages.curate.rules import Decisions, add_quality, near_cfg, prune_args, wants_embeddings
from stages.curate.semantic import assign, build_embedder, fit_kmeans, in_fit_sample, prune_cluster

#: what every group function returns: a verified pair (kind near/leak: a kept, b the other), a
#: removal (kind exact/leak/semantic: b removed for ``reason``) or a histogram bin (kind hist)
RECORDS = pa.schema(
    [
        ("kind", pa.string()),
        ("a", pa.string()),
        ("b", pa.string()),
        ("sim", pa.float64()),
        ("reason", pa.string()),
    ]
)
HIST = len(HIST_BINS) - 1


def _xs(batch: pa.Table) -> list[np.ndarray]:
    flat = batch.column("x").combine_chunks()
    values, offsets = flat.values.to_numpy(zero_copy_only=False), flat.offsets.to_numpy()
    shapes = batch.column("shape").to_pylist()
    return [decode_x(values[offsets[i] : offsets[i + 1]], s) for i, s in enumerate(shapes)]


def featurise(batch: pa.Table, domain_name: str, quality: bool) -> pa.Table:
    """Per row: id, split, group, content hash, quality reason ('' if usable) and fingerprint."""
    domain = get_domain(domain_name)
    xs = _xs(batch)
    reasons = [(domain.validate({"x": x}) or "") if quality else "" for x in xs]
    ok = [i for i, r in enumerate(reasons) if not r]
    fps = domain.fingerprint([xs[i] for i in ok]) if ok else np.zeros((0, 1), np.float32)
    full = np.zeros((len(xs), fps.shape[1]), np.float32)
    full[ok] = fps
    return pa.table(
        {
            "id": batch.column("id"),
            "split": pc.fill_null(batch.column("split"), ""),
            "group": batch.column("group"),
            "hash": [content_hash(x) for x in xs],
            "quality": reasons,
            "fp": pa.FixedSizeListArray.from_arrays(pa.array(full.reshape(-1)), full.shape[1]),
        }
    )


def _drop(batch: pa.Table, removed: np.ndarray, train_only: bool = False) -> pa.Table:
    mask = pc.invert(pc.is_in(batch.column("id"), value_set=pa.array(removed, pa.string())))
    if train_only:
        mask = pc.and_(mask, train_mask(batch.column("split")))
    return batch.filter(mask)


def _column(ds: Any, key: str) -> list[Any]:
    return [
        v for t in ds.iter_batches(batch_format="pyarrow", batch_size=None) for v in t.column(key).to_pylist()
    ]


def _records(rows: list[tuple[str, str, str, float, str]]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(RECORDS.names)
    return pa.table({n: list(c) for n, c in zip(RECORDS.names, cols, strict=True)}, schema=RECORDS)


def _hist_records(hist: np.ndarray) -> list[tuple[str, str, str, float, str]]:
    # histograms travel as records too, so every group function returns one schema
    return [("hist", str(i), "", float(c), "") for i, c in enumerate(hist) if c]


def _removals(kind: str, reasons: dict[str, str]) -> list[tuple[str, str, str, float, str]]:
    return [(kind, "", i, 0.0, r) for i, r in reasons.items()]


def _iter_records(ds: Any) -> Any:
    for t in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        yield from zip(*(t.column(c).to_pylist() for c in RECORDS.names), strict=True)


def explode_keys(batch: pa.Table, lsh: BandHash, keep: np.ndarray | None) -> pa.Table:
    """One row per (row, band): its bucket key; with ``keep``, only colliding keys, with the fingerprint."""
    fps = batch.column("fp").combine_chunks().flatten().to_numpy().reshape(len(batch), -1)
    keys = band_keys(fps, lsh).reshape(-1)
    idx = np.repeat(np.arange(len(batch)), lsh.bands)
    if keep is None:
        return pa.table({"key": keys})
    m = np.isin(keys, keep)
    idx = idx[m]
    return pa.table(
        {
            "key": keys[m],
            "id": batch.column("id").take(idx),
            "split": batch.column("split").take(idx),
            "fp": batch.column("fp").take(idx),
        }
    )


class Embed:
    """Ray Data actor: builds the encoder once, then embeds batches of rows (with their content hash,
    the key of the embedding cache)."""

    def __init__(self, domain_name: str, encoder_cfg: dict[str, Any], path: str | None, seed: int, bs: int):
        from stages.common.encoders import embed

        self.domain, self.bs, self.embed = domain_name, bs, embed
        self.encoder = build_embedder(domain_name, encoder_cfg, path, seed)

    def __call__(self, batch: pa.Table) -> pa.Table:
        xs = _xs(batch)
        emb = self.embed(self.encoder, self.domain, xs, self.bs)
        return cache.table(batch.column("id").to_pylist(), [content_hash(x) for x in xs], emb)


def _emb(batch: pa.Table) -> np.ndarray:
    return batch.column("emb").combine_chunks().flatten().to_numpy().reshape(len(batch), -1)


def assign_batch(batch: pa.Table, centroids: np.ndarray, mean: np.ndarray) -> pa.Table:
    """Centre the embeddings (as k-means saw them), then add each row's cluster and centroid cosine."""
    emb = _emb(batch) - mean
    cluster, csim = assign(emb, centroids)
    return pa.table(
        {
            "id": batch.column("id"),
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1]),
            "cluster": pa.array(cluster),
            "csim": pa.array(csim),
        }
    )


def cluster_records(batch: pa.Table, args: dict[str, Any]) -> pa.Table:
    ids = np.array(batch.column("id").to_pylist(), dtype=object)
    c = int(batch.column("cluster")[0].as_py())
    removed, hist = prune_cluster(ids, _emb(batch), batch.column("csim").to_numpy(), c, **args)
    return _records(_removals("semantic", removed) + _hist_records(hist))


@dataclass
class RayRules:
    """What the rules of one ``decide_ray`` call share: the recipe, every row's features
    (materialised once) and the decisions so far, which each rule extends."""

    recipe: Recipe
    feats: Any  # ray.data.Dataset: id, split, group, hash, quality, fp
    n_rows: int
    d: Decisions = field(default_factory=Decisions)

    @property
    def drop_leaks(self) -> bool:
        return self.recipe.curate.leakage == "drop_train"

    def removed(self) -> np.ndarray:
        return np.array(sorted(self.d.removed), dtype=object)

    def alive(self, ds: Any, train_only: bool = False) -> Any:
        """``ds`` without the rows removed so far (fixed now: later removals do not reach it)."""
        return ds.map_batches(
            _drop, batch_format="pyarrow", fn_kwargs={"removed": self.removed(), "train_only": train_only}
        )


def decide_ray(recipe: Recipe, files: list[str], embeddings: str | None = None) -> Decisions:
    """The same decisions as ``rules.decide``, computed with Ray Data over Parquet ``files``;
    ``embeddings``: the folder of SemDeDup's embedding cache (None: embed without caching)."""
    import ray

    cfg = recipe.curate
    raw = ray.data.read_parquet(files)
    st = featurised(recipe, raw)
    if cfg.quality_filter:
        quality_rule(st)
    after_quality = st.removed()  # SemDeDup's pool: training rows alive here (see stages.curate.cache)
    hash_rule(st)
    group_leakage_rule(st)
    if cfg.near_dedup.enabled:
        near_rule(st)
    if wants_embeddings(recipe):
        semantic_rule(st, raw, after_quality, embeddings)
    return st.d


def featurised(recipe: Recipe, raw: Any) -> RayRules:
    """Every row's id, split, group, content hash, quality reason and fingerprint, computed once."""
    feats = raw.map_batches(
        featurise,
        batch_format="pyarrow",
        batch_size=1024,
        fn_kwargs={"domain_name": recipe.domain, "quality": recipe.curate.quality_filter},
    ).materialize()
    return RayRules(recipe, feats, feats.count())


def quality_rule(st: RayRules) -> None:
    """Rows the domain's ``validate`` rejects (a test row among them stops the stage, see ``add_quality``)."""
    bad = st.feats.map_batches(
        lambda t: t.filter(pc.not_equal(t.column("quality"), "")), batch_format="pyarrow"
    ).select_columns(["id", "split", "quality"])
    found = [
        (i, s, f"quality: {q}")
        for t in bad.iter_batches(batch_format="pyarrow", batch_size=None)
        for i, s, q in zip(*(t.column(c).to_pylist() for c in ("id", "split", "quality")), strict=True)
    ]
    add_quality(st.recipe, st.d, found)


def hash_rule(st: RayRules) -> None:
    """Exact duplicates and content leakage: rows grouped by content hash (coarse partitions of it)."""
    parts = _parts(st.n_rows)
    recs = (
        st.alive(st.feats)
        .select_columns(["id", "split", "hash"])
        .map_batches(_with_part, batch_format="pyarrow", fn_kwargs={"parts": parts})
        .groupby("part", num_partitions=min(parts, 64))
        .map_groups(
            hash_part_records, batch_format="pyarrow", fn_kwargs={"exact": st.recipe.curate.exact_dedup}
        )
    )
    exact, leaks = {}, {}
    for kind, _, b, _, reason in _iter_records(recs):
        (exact if kind == "exact" else leaks)[b] = reason
    st.d.add(exact)
    st.d.add_leaks(leaks, st.drop_leaks)


def group_leakage_rule(st: RayRules) -> None:
    """Training rows whose group (patient, speaker, ...) also has a row in the test split."""
    test = st.feats.map_batches(
        lambda t: t.filter(pc.and_(pc.equal(t.column("split"), "test"), pc.is_valid(t.column("group")))),
        batch_format="pyarrow",
    )
    groups = np.array(sorted(set(_column(test.select_columns(["group"]), "group"))), dtype=object)
    if not len(groups):
        return
    leaking = st.alive(st.feats, train_only=True).map_batches(
        lambda t, g: t.filter(pc.is_in(t.column("group"), value_set=pa.array(g, pa.string()))),
        batch_format="pyarrow",
        fn_kwargs={"g": groups},
    )
    for t in leaking.select_columns(["id", "group"]).iter_batches(batch_format="pyarrow", batch_size=None):
        ids, grp = t.column("id").to_pylist(), t.column("group").to_pylist()
        reasons = {
            i: f"leakage: group {g!r} is also in the test split" for i, g in zip(ids, grp, strict=True)
        }
        st.d.add_leaks(reasons, st.drop_leaks)


def near_rule(st: RayRules) -> None:
    """Near duplicates (and near leaks) of fingerprints: LSH in two passes, then ``resolve``."""
    nd = near_cfg(st.recipe)
    live = st.alive(st.feats).materialize()
    dim = len(live.take(1)[0]["fp"]) if live.count() else 0
    if not dim:
        return
    kw = {"lsh": band_hash(dim, nd.threshold, nd.bands, bits_per_band(nd), st.recipe.curate.seed, nd.hash)}
    hot = colliding_keys(live, kw, _parts(st.n_rows * nd.bands))
    if not len(hot):
        return
    pairs = []
    for kind, a, b, sim, _ in _iter_records(verified_buckets(live, kw, hot, nd.threshold)):
        if kind == "hist":
            st.d.hist_near[int(a)] += int(sim)
        else:
            pairs.append((a, b, sim, kind))
    near_removed, st.d.near_leakage_found = resolve(pairs, nd.leakage == "drop_train")
    st.d.add(near_removed)


def colliding_keys(live: Any, kw: dict[str, Any], parts: int) -> np.ndarray:
    """Pass one: only int64 band keys travel; the keys two or more rows share."""
    keys = live.map_batches(explode_keys, batch_format="pyarrow", fn_kwargs={**kw, "keep": None})
    hot = (
        keys.map_batches(_with_part, batch_format="pyarrow", fn_kwargs={"parts": parts})
        .groupby("part", num_partitions=min(parts, 64))
        .map_groups(hot_keys, batch_format="pyarrow")
    )
    return np.array(_column(hot, "key"), dtype=np.int64)


def verified_buckets(live: Any, kw: dict[str, Any], hot: np.ndarray, threshold: float) -> Any:
    """Pass two: fingerprints of the rows in colliding buckets only → verified pairs and histograms."""
    parts = _parts(len(hot) * 4)
    cand = live.map_batches(explode_keys, batch_format="pyarrow", fn_kwargs={**kw, "keep": hot})
    return (
        cand.map_batches(_with_part, batch_format="pyarrow", fn_kwargs={"parts": parts})
        .groupby("part", num_partitions=min(parts, 64))
        .map_groups(bucket_part_records, batch_format="pyarrow", fn_kwargs={"threshold": threshold})
    )


#: rows per coarse partition of a grouping (each is one ``map_groups`` call, held in memory)
ROWS_PER_PARTITION = 500_000


def _parts(n: int) -> int:
    return int(min(4096, max(1, -(-n // ROWS_PER_PARTITION))))


def _runs(keys: np.ndarray) -> list[np.ndarray]:
    """Indices of each run of equal keys with two or more members."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    sizes = np.diff(np.r_[starts, len(k)])
    return [order[s : s + m] for s, m in zip(starts, sizes, strict=True) if m > 1]


def hash_part_records(batch: pa.Table, exact: bool) -> pa.Table:
    """All rows of one partition of content hashes → exact-duplicate and leakage removals."""
    hashes = np.array(batch.column("hash").to_pylist(), dtype=object)
    ids, splits = batch.column("id").to_pylist(), batch.column("split").to_pylist()
    out = []
    for members in _runs(hashes):
        exact_r, leaks = hash_group([ids[i] for i in members], [splits[i] for i in members], exact)
        out += _removals("exact", exact_r) + _removals("leak", leaks)
    return _records(out)


def hot_keys(batch: pa.Table) -> pa.Table:
    """Keys of one partition that occur at least twice (LSH buckets worth verifying)."""
    keys, counts = np.unique(batch.column("key").to_numpy(), return_counts=True)
    return pa.table({"key": keys[counts > 1]})


def bucket_part_records(batch: pa.Table, threshold: float) -> pa.Table:
    """All (row, band) entries of one partition of colliding keys → verified pairs + histogram."""
    keys = batch.column("key").to_numpy()
    fps = batch.column("fp").combine_chunks().flatten().to_numpy().reshape(len(batch), -1)
    ids = np.array(batch.column("id").to_pylist(), dtype=object)
    splits = np.array(batch.column("split").to_pylist(), dtype=object)
    out, hist = [], np.zeros(HIST, np.int64)
    for m in _runs(keys):
        pairs, h = bucket_pairs(ids[m], splits[m], fps[m], threshold)
        out += [(k, a, b, s, "") for a, b, s, k in pairs]
        hist += h
    return _records(out + _hist_records(hist))


def _with_part(batch: pa.Table, parts: int) -> pa.Table:
    if "key" in batch.column_names:
        part = np.mod(batch.column("key").to_numpy(), parts)
    else:
        part = np.array([int(h[:15], 16) % parts for h in batch.column("hash").to_pylist()], np.int64)
    return batch.append_column("part", pa.array(part, pa.int64()))


def semantic_rule(st: RayRules, raw: Any, after_quality: np.ndarray, folder: str | None) -> None:
    """SemDeDup and balancing over the surviving training rows' embeddings (k-means fit on a sample)."""
    recipe, cfg = st.recipe, st.recipe.curate
    first = st.alive(raw, train_only=True).take(1)
    if not first:
        return
    enc_cfg = cache.encoder_cfg(recipe, decode_x(first[0]["x"], first[0]["shape"]))
    if folder is None:
        emb = _embed(recipe, st.alive(raw, train_only=True), enc_cfg)
    else:
        emb = pool_embeddings(st, raw, after_quality, enc_cfg, folder)
    live = st.alive(emb).materialize()
    n = live.count()
    sample = live.map_batches(
        lambda t: t.filter(pa.array(in_fit_sample(np.array(t.column("id").to_pylist(), object), n, cfg))),
        batch_format="pyarrow",
    )
    parts = list(sample.iter_batches(batch_format="pyarrow", batch_size=None))
    fit_ids = np.array([i for t in parts for i in t.column("id").to_pylist()], dtype=object)
    centroids, mean = fit_kmeans(fit_ids, np.concatenate([_emb(t) for t in parts]), cfg)
    st.d.clusters = len(centroids)
    assigned = live.map_batches(
        assign_batch, batch_format="pyarrow", fn_kwargs={"centroids": centroids, "mean": mean}
    )
    recs = assigned.groupby("cluster", num_partitions=min(64, _parts(n))).map_groups(
        cluster_records, batch_format="pyarrow", fn_kwargs={"args": prune_args(recipe)}
    )
    for kind, a, b, sim, reason in _iter_records(recs):
        if kind == "hist":
            st.d.hist_semantic[int(a)] += int(sim)
        else:
            st.d.add({b: reason})


def _embed(recipe: Recipe, rows: Any, enc_cfg: dict[str, Any]) -> Any:
    """``rows`` (a Dataset of stored rows) embedded by ``Embed`` actors: id, hash, emb."""
    cfg = recipe.curate
    return rows.map_batches(
        Embed,
        batch_format="pyarrow",
        batch_size=cfg.embedding.batch_size,
        fn_constructor_args=(
            recipe.domain,
            enc_cfg,
            cfg.embedding.encoder,
            cfg.seed,
            cfg.embedding.batch_size,
        ),
        concurrency=(1, max(1, recipe.ray.num_workers)),
    )


def _keys(t: pa.Table) -> set[str]:
    return set(cache.keys(t.column("id").to_pylist(), t.column("hash").to_pylist()))


def _id_hash_batches(ds: Any) -> Any:
    return ds.select_columns(["id", "hash"]).iter_batches(batch_format="pyarrow", batch_size=None)


def _with_key(batch: pa.Table) -> pa.Table:
    return batch.append_column(
        "key", pa.array(cache.keys(batch.column("id").to_pylist(), batch.column("hash").to_pylist()))
    )


def _keep_keys(batch: pa.Table, keys: np.ndarray) -> pa.Table:
    t = _with_key(batch)
    return t.filter(pc.is_in(t.column("key"), value_set=pa.array(keys, pa.string()))).drop_columns(["key"])


def _as_cache(batch: pa.Table) -> pa.Table:
    # one schema for cached and fresh shards (a fixed-size list read back from Parquet may not be one)
    return cache.table(batch.column("id").to_pylist(), batch.column("hash").to_pylist(), _emb(batch))


def pool_embeddings(
    st: RayRules, raw: Any, after_quality: np.ndarray, enc_cfg: dict[str, Any], folder: str
) -> Any:
    """Embeddings (id, hash, emb; materialised) of SemDeDup's pool — training rows that passed the
    quality filter — reusing the cache in ``folder`` and embedding only rows it lacks; the cache is
    rewritten to hold exactly the pool when it did not."""
    import ray

    from stages.common.ray_session import shard_names

    sig = cache.signature(st.recipe, enc_cfg)
    pool_feats = st.feats.map_batches(
        _drop, batch_format="pyarrow", fn_kwargs={"removed": after_quality, "train_only": True}
    )
    pool = {k for t in _id_hash_batches(pool_feats) for k in _keys(t)}
    have = _keys(cache.read(folder, ["id", "hash"])) if cache.matches(folder, sig) else set()
    if have == pool:
        return (
            ray.data.read_parquet(cache.shards(folder))
            .map_batches(_as_cache, batch_format="pyarrow")
            .materialize()
        )
    todo = np.array(sorted(pool - have), dtype=object)
    rows = raw.map_batches(
        _drop, batch_format="pyarrow", fn_kwargs={"removed": after_quality, "train_only": True}
    )
    if have:
        rows = rows.map_batches(
            lambda t, ids: t.filter(pc.is_in(t.column("id"), value_set=pa.array(ids, pa.string()))),
            batch_format="pyarrow",
            fn_kwargs={"ids": np.array([k.split("\x00")[0] for k in todo], dtype=object)},
        )
    emb = _embed(st.recipe, rows, enc_cfg)
    if have & pool:
        kept = ray.data.read_parquet(cache.shards(folder)).map_batches(
            _keep_keys,
            batch_format="pyarrow",
            fn_kwargs={"keys": np.array(sorted(have & pool), dtype=object)},
        )
        emb = kept.map_batches(_as_cache, batch_format="pyarrow").union(emb)
    emb = emb.materialize()  # before the old shards are replaced
    with atomic_dir(folder) as tmp:
        emb.write_parquet(tmp, filename_provider=shard_names())
        write_json(join(tmp, cache.SIGNATURE), sig)
    return emb
