"""Near dedup: banded LSH over domain fingerprints, candidates verified by exact cosine.

Two hash families, both over unit-length fingerprints (cosine ``t`` is Euclidean distance
``d_t = sqrt(2 (1 - t))`` on the unit sphere):

p-stable LSH (Datar et al. 2004, the default): ``floor(a·x / w + u)`` with ``a`` Gaussian and ``u``
uniform; two rows at distance ``d`` share one value with probability ``p(w / d)``
(``pstable_collision``), which falls off faster with distance than a SimHash bit's collision
probability at the small angles near dedup works at. With the
bucket width ``w = PSTABLE_WIDTH * d_t`` a band of 13 projections does what SimHash needs 97 bits
for at cosine 0.999 (a pair at the threshold shares a band with probability ~1/4, pairs at 0.95
share one less often than with SimHash), so hashing, the dominant cost, projects on 7.5x fewer
directions.

SimHash (Charikar 2002): the sign of a vector's projection on random hyperplanes; two vectors at
angle θ agree on one bit with probability ``1 - θ/π``, so an LSH band of ``r`` bits collides with
probability ``(1 - θ/π)^r`` and a pair becomes a candidate when any of ``b`` bands collides. Every
candidate pair is then checked with its exact cosine similarity, so LSH only costs recall (pairs
just above the threshold that never share a band), never precision.

Every band has hyperplanes of its own. (Drawing all bands from one shared pool of, say, 512 bits
would cut the projection, the dominant cost, 4x, but a pair that happens to disagree on many pool
bits then fails every band at once: at the default threshold 4 % of the pairs at exactly 0.999
were lost against 0.3 % with independent bands.)

``near_pairs`` is the in-process entry point: below ``EXACT_MAX_ROWS`` rows it compares all pairs
(blocked matrix products: cheaper there than hashing, and exact), above it buckets with numpy sorts
and verifies every candidate pair at once. ``band_keys``/``bucket_pairs`` work on one *bucket*
(rows sharing a band key) at a time for Ray Data's ``groupby(...).map_groups``; both paths use the
same keys and the same cosine threshold, so they find the same pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from domains.base import TEST_SPLIT

#: histogram edges in cosine similarity, geometric in ``1 - cosine`` (fine near 1, where dedup decides)
HIST_BINS = np.r_[1.0 - np.geomspace(2.0, 1e-5, 40), 1.0]
#: rows of a bucket compared at once (bounds the similarity block to CHUNK x bucket size)
CHUNK = 2048
#: rows hashed at once (the ``[rows, bits]`` projection block stays in cache)
HASH_CHUNK = 4096
#: candidate pairs verified at once
VERIFY_CHUNK = 1 << 16
#: up to this many rows ``near_pairs`` compares all pairs: its cost grows with n², hashing's with n;
#: measured on 32-dim fingerprints (2 cores, best of 5), all-pairs 2.2 ms vs LSH 3.6 ms at 1,000
#: rows, 9.9 vs 6.3 ms at 2,000 (both scale with the dimension, so the crossover hardly moves)
EXACT_MAX_ROWS = 1500
#: buckets larger than this are verified with a blocked matrix product rather than pair lists
BIG_BUCKET = 256
#: p-stable bucket width in units of the threshold's distance: wider buckets need more projections
#: per band (13 at 8) but keep pairs well below the threshold apart (at cosine 0.95 a band collides
#: with p 9e-6 against SimHash's 3e-5; at 0.8, 3e-9 against 2e-10)
PSTABLE_WIDTH = 8.0

HashKind = Literal["pstable", "simhash"]

Pair = tuple[str, str, float, str]


def unit_rows(fps: np.ndarray) -> np.ndarray:
    """L2-normalised float32 rows (an all-zero fingerprint stays zero: similar to nothing)."""
    fps = np.asarray(fps, dtype=np.float32)
    norm = np.linalg.norm(fps, axis=1, keepdims=True)
    return fps / np.where(norm > 0, norm, 1.0)


def pstable_collision(c: float) -> float:
    """Probability that two points at distance ``d`` share ``floor(a·x / w + u)``, for ``c = w / d``
    (Datar et al. 2004, eq. for the Gaussian, 2-stable, case). ``2 Φ(-c) = erfc(c / √2)``: the
    standard library's erfc, not SciPy's ``norm.cdf``, whose import (scipy.stats, 1 s) every curate
    process paid for this one line."""
    return float(
        1 - math.erfc(c / math.sqrt(2)) - 2 / (math.sqrt(2 * math.pi) * c) * (1 - math.exp(-c * c / 2))
    )


def auto_rows_per_band(threshold: float, kind: HashKind = "pstable") -> int:
    """Hash values per band such that a pair at exactly ``threshold`` shares a whole band with p ≈ 1/4.

    Fewer would also bucket the many merely similar pairs (a constant fraction of all pairs:
    0.06 % of z-normalised random-walk fingerprints correlate above 0.95), which grows
    quadratically and turns LSH back into all-pairs; more would lose pairs at the threshold.
    p-stable: 13 projections whatever the threshold (the width scales with it); SimHash: 97 bits
    at 0.999.
    """
    if kind == "pstable":
        p_one = pstable_collision(PSTABLE_WIDTH)
    else:
        p_one = 1.0 - np.arccos(np.clip(threshold, -1.0, 1.0)) / np.pi
    return int(np.clip(round(np.log(0.25) / np.log(p_one)), 1, 256)) if p_one < 1 else 256


@dataclass(frozen=True)
class BandHash:
    """``bands`` bucket keys per row; the same seed and configuration give the same buckets."""

    kind: HashKind
    planes: np.ndarray  # [dim, bands * rows_per_band]; p-stable: already divided by the width
    offsets: np.ndarray  # [bands * rows_per_band] p-stable shifts in [0, 1) buckets (SimHash: unused)
    bands: int

    @property
    def rows_per_band(self) -> int:
        return self.planes.shape[1] // self.bands


def band_hash(
    dim: int, threshold: float, bands: int, rows_per_band: int, seed: int, kind: HashKind = "pstable"
) -> BandHash:
    """Seeded Gaussian projections (and p-stable shifts) for ``bands`` bands of ``rows_per_band``."""
    rng = np.random.default_rng([seed, dim, bands, rows_per_band])
    planes = rng.standard_normal((dim, bands * rows_per_band)).astype(np.float32)
    offsets = rng.random(bands * rows_per_band).astype(np.float32)
    if kind == "pstable":
        width = PSTABLE_WIDTH * np.sqrt(2.0 * max(1.0 - threshold, 1e-12))
        planes = planes / np.float32(width)
    return BandHash(kind, planes, offsets, bands)


GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every key bit depends on every input bit (keys are also used mod P)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def band_keys(fps: np.ndarray, h: BandHash) -> np.ndarray:
    """``[B, bands]`` int64 bucket keys: a band's hash values hashed, salted with the band's index.

    Rows go through in blocks of ``HASH_CHUNK`` so the ``[rows, values]`` projection stays small
    (at 1M rows it would be GBs); a band's values are packed to bytes (SimHash: 8 bits a byte;
    p-stable: each bucket index modulo 256, which only merges buckets 256 widths apart) and hashed
    as 64-bit words.
    """
    planes, bands = h.planes, h.bands
    fps = unit_rows(fps) if h.kind == "pstable" else np.asarray(fps, dtype=np.float32)
    n, r = len(fps), h.rows_per_band
    nbytes = -(-r // 8) if h.kind == "simhash" else r
    words = -(-nbytes // 8)
    salt = np.arange(1, bands + 1, dtype=np.uint64) * GOLDEN
    out = np.empty((n, bands), np.uint64)
    buf = np.zeros((min(n, HASH_CHUNK), bands, words * 8), np.uint8)
    with np.errstate(over="ignore"):
        for s in range(0, n, HASH_CHUNK):
            e = min(n, s + HASH_CHUNK)
            proj = fps[s:e] @ planes
            if h.kind == "simhash":  # the sign does not depend on the row's norm
                buf[: e - s, :, :nbytes] = np.packbits((proj > 0).reshape(e - s, bands, r), axis=2)
            else:  # bucket index floor(a·x / w + u); its low byte (two's complement) keys the band
                proj += h.offsets
                np.floor(proj, out=proj)
                buf[: e - s, :, :nbytes] = proj.astype(np.int32).astype(np.uint8).reshape(e - s, bands, r)
            w = buf[: e - s].view(np.uint64)
            # the words folded by multiply-add, then one full mix: two mixes cost a third of hashing
            key = np.broadcast_to(salt, (e - s, bands))
            for i in range(words):
                key = key * GOLDEN + w[:, :, i]
            out[s:e] = _mix(key)
    return out.view(np.int64)


def bucket_pairs(
    ids: np.ndarray, splits: np.ndarray, fps: np.ndarray, threshold: float
) -> tuple[list[Pair], np.ndarray]:
    """Verified pairs of one bucket and the histogram of all its candidate similarities.

    Pairs are ``(kept, other, cosine, kind)``: kind ``near`` for two training rows (``kept`` is the
    earlier id), ``leak`` for a training row ``other`` near a test row ``kept``. Test-test pairs are
    not candidates: the test split is never altered.
    """
    vecs, is_test = unit_rows(fps), np.asarray(splits == TEST_SPLIT, bool)
    i, j, s = _block_pairs(vecs, is_test, None)
    hist = np.histogram(np.clip(s, -1, 1), HIST_BINS)[0]
    return _verified(ids, is_test, vecs, i, j, s, threshold), hist


def _block_pairs(
    vecs: np.ndarray, is_test: np.ndarray, floor: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of ``vecs`` (unit rows) but test-test ones, with its cosine; with
    ``floor``, only pairs at or above it. Blocked so memory stays ``CHUNK x n``."""
    out_i, out_j, out_s = [], [], []
    n = len(vecs)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        sims = vecs[start:stop] @ vecs[start:].T  # rows of the block against themselves and later rows
        if floor is None:
            r, c = np.nonzero(np.triu(np.ones(sims.shape, bool), 1))
        else:
            r, c = np.nonzero(sims >= floor)
            keep = c > r
            r, c = r[keep], c[keep]
        s = sims[r, c]
        i, j = start + r, start + c
        ok = ~(is_test[i] & is_test[j])
        out_i.append(i[ok])
        out_j.append(j[ok])
        out_s.append(s[ok])
    cat = lambda parts, t: np.concatenate(parts) if parts else np.zeros(0, t)  # noqa: E731
    return cat(out_i, np.int64), cat(out_j, np.int64), cat(out_s, np.float32)


#: a matrix product and a row-wise dot product of the same two rows can differ in the last float32
#: bits: pairs this close below the threshold are recomputed the one way every path shares
MARGIN = 1e-5


def _cosines(vecs: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cosine of each pair ``(i[k], j[k])`` of unit rows, computed the same way on every path."""
    parts = [
        np.einsum("ij,ij->i", vecs[i[k : k + VERIFY_CHUNK]], vecs[j[k : k + VERIFY_CHUNK]])
        for k in range(0, len(i), VERIFY_CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _verified(
    ids: np.ndarray,
    is_test: np.ndarray,
    vecs: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    s: np.ndarray,
    threshold: float,
) -> list[Pair]:
    """The pairs at or above ``threshold``, by their shared-way cosine (``s``: any close estimate)."""
    near = s >= threshold - MARGIN
    i, j = i[near], j[near]
    s = _cosines(vecs, i, j)
    hit = s >= threshold
    return _pairs(ids, is_test, i[hit], j[hit], s[hit])


def _pairs(ids: np.ndarray, is_test: np.ndarray, i: np.ndarray, j: np.ndarray, s: np.ndarray) -> list[Pair]:
    """``(kept, other, cosine, kind)`` tuples of verified pairs given as row indices."""
    out: list[Pair] = []
    for a, b, v in zip(i.tolist(), j.tolist(), s.tolist(), strict=True):
        if is_test[a] or is_test[b]:
            test, train = (a, b) if is_test[a] else (b, a)
            out.append((str(ids[test]), str(ids[train]), float(v), "leak"))
        else:
            ka, kb = str(ids[a]), str(ids[b])
            out.append((ka, kb, float(v), "near") if ka <= kb else (kb, ka, float(v), "near"))
    return out


def candidate_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Row pairs sharing a bucket in any band: ``(i, j, bands shared)`` with ``i < j``, each pair once,
    plus the members of buckets over ``BIG_BUCKET`` rows (left to a blocked matrix product).

    One sort per band (of ``key | row``: the key's high bits with the row index packed in the low
    ones, cheaper than an argsort; truncating keys only merges a few buckets, which costs a few
    verified candidates, never a pair)."""
    n, bands = keys.shape
    shift = np.uint64(max(1, int(n - 1).bit_length()))
    low = (np.uint64(1) << shift) - np.uint64(1)
    rows = np.arange(n, dtype=np.uint64)
    codes, big = [], []
    for b in range(bands):
        v = np.sort((keys[:, b].view(np.uint64) & ~low) | rows)
        grp, idx = v >> shift, (v & low).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, grp[1:] != grp[:-1]])
        sizes = np.diff(np.r_[starts, n])
        for s, m in zip(starts[sizes > BIG_BUCKET], sizes[sizes > BIG_BUCKET], strict=True):
            big.append(idx[s : s + m])
        small = (sizes > 1) & (sizes <= BIG_BUCKET)
        if not small.any():
            continue
        # positions inside small buckets, each with its bucket's end; pairs (p, p + d) for every offset d
        pos = _ranges(starts[small], sizes[small])
        end = np.repeat(starts[small] + sizes[small], sizes[small])
        for d in range(1, int(sizes[small].max())):
            live = pos + d < end
            pos, end = pos[live], end[live]
            if not len(pos):
                break
            a, c = idx[pos], idx[pos + d]
            codes.append(np.minimum(a, c) * n + np.maximum(a, c))
    if not codes:
        e = np.zeros(0, np.int64)
        return e, e, e, big
    pair, count = np.unique(np.concatenate(codes), return_counts=True)
    return pair // n, pair % n, count, big


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + m) ...])`` without a Python loop."""
    offs = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(starts, sizes) + offs


def near_pairs(
    ids: np.ndarray,
    splits: np.ndarray,
    fps: np.ndarray,
    threshold: float,
    bands: int,
    rows_per_band: int,
    seed: int,
    method: Literal["auto", "exact", "lsh"] = "auto",
    kind: HashKind = "pstable",
) -> tuple[list[Pair], np.ndarray]:
    """Verified near pairs of all rows (as ``bucket_pairs`` gives them) and the similarity histogram.

    ``auto``: exact all-pairs up to ``EXACT_MAX_ROWS`` rows, LSH above. The histogram counts each LSH
    candidate pair once per bucket it shares (as the per-bucket Ray path does); the exact path counts
    every pair at or above ``hist_floor(threshold)`` (below it, pairs are too many to bin cheaply and
    LSH would almost never make them candidates anyway)."""
    n = len(ids)
    is_test = np.asarray(splits == TEST_SPLIT, bool)
    vecs = unit_rows(fps)
    if method == "exact" or (method == "auto" and n <= EXACT_MAX_ROWS):
        i, j, s = _block_pairs(vecs, is_test, min(hist_floor(threshold), threshold - MARGIN))
        shown = s >= hist_floor(threshold)
        hist = np.histogram(np.clip(s[shown], -1, 1), HIST_BINS)[0]
        return _verified(ids, is_test, vecs, i, j, s, threshold), hist
    keys = band_keys(fps, band_hash(fps.shape[1], threshold, bands, rows_per_band, seed, kind))
    i, j, count, big = candidate_pairs(keys)
    ok = ~(is_test[i] & is_test[j])
    i, j, count = i[ok], j[ok], count[ok]
    s = _cosines(vecs, i, j)
    hist = np.histogram(np.clip(s, -1, 1), HIST_BINS, weights=count)[0].astype(np.int64)
    out = _verified(ids, is_test, vecs, i, j, s, threshold)
    for m in big:  # buckets too large for pair lists: one blocked product each
        m = np.sort(m)
        bi, bj, bs = _block_pairs(vecs[m], is_test[m], None)
        hist += np.histogram(np.clip(bs, -1, 1), HIST_BINS)[0]
        out += _verified(ids, is_test, vecs, m[bi], m[bj], bs, threshold)
    return out, hist


def hist_floor(threshold: float) -> float:
    """Lowest cosine the exact path bins: ten times the threshold's distance from 1 below it."""
    return max(-1.0, 1.0 - 10.0 * (1.0 - threshold))


def resolve(pairs: list[Pair], drop_leaks: bool) -> tuple[dict[str, str], int]:
    """Reasons for the training rows to remove, and how many distinct rows leak near test rows.

    Greedy in id order, so the result never depends on bucket or shard order: a training row goes
    when it is near a test row (``drop_leaks``) or near an earlier training row that is kept. Unlike
    connected components this never removes a row whose only near duplicate was itself removed.
    """
    best_leak: dict[str, tuple[float, str]] = {}
    near: dict[tuple[str, str], float] = {}
    for a, b, sim, kind in pairs:
        if kind == "leak":
            if b not in best_leak or (sim, a) > best_leak[b]:
                best_leak[b] = (sim, a)
        else:
            near[(a, b)] = sim
    removed: dict[str, str] = {}
    if drop_leaks:
        for row, (sim, test) in best_leak.items():
            removed[row] = f"leakage: near duplicate of test row {test} (cosine {sim:.4f})"
    for (a, b), sim in sorted(near.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if b not in removed and a not in removed:
            removed[b] = f"near_duplicate: cosine {sim:.4f} to {a}"
    return removed, len(best_leak)


def bits_per_band(cfg: Any) -> int:
    """The recipe's ``near_dedup.rows_per_band``, or the automatic choice for its hash and threshold."""
    return cfg.rows_per_band or auto_rows_per_band(cfg.threshold, cfg.hash)
