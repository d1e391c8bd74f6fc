"""Near dedup: SimHash over domain fingerprints, banded LSH, candidates verified by exact cosine.

SimHash (Charikar 2002): the sign of a vector's projection on ``bands * rows_per_band`` random
hyperplanes; two vectors at angle θ agree on one bit with probability ``1 - θ/π``, so an LSH band
of ``r`` bits collides with probability ``(1 - θ/π)^r`` and a pair becomes a candidate when any of
``b`` bands collides. Every candidate pair is then checked with its exact cosine similarity, so LSH
only costs recall (pairs just above the threshold that never share a band), never precision.

The functions work on one *bucket* (rows sharing a band key) at a time, so the same code runs
in-process and inside Ray Data's ``groupby(...).map_groups``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from domains.base import TEST_SPLIT

#: histogram edges in cosine similarity, geometric in ``1 - cosine`` (fine near 1, where dedup decides)
HIST_BINS = np.r_[1.0 - np.geomspace(2.0, 1e-5, 40), 1.0]
#: rows of a bucket compared at once (bounds the similarity block to CHUNK x bucket size)
CHUNK = 2048


def unit_rows(fps: np.ndarray) -> np.ndarray:
    """L2-normalised float32 rows (an all-zero fingerprint stays zero: similar to nothing)."""
    fps = np.asarray(fps, dtype=np.float32)
    norm = np.linalg.norm(fps, axis=1, keepdims=True)
    return fps / np.where(norm > 0, norm, 1.0)


def auto_rows_per_band(threshold: float) -> int:
    """Bits per band such that a pair at exactly ``threshold`` agrees on a whole band with p ≈ 1/4.

    Fewer bits would also bucket the many merely similar pairs (a constant fraction of all pairs:
    0.06 % of z-normalised random-walk fingerprints correlate above 0.95), which grows
    quadratically and turns LSH back into all-pairs; more would lose pairs at the threshold.
    """
    p_bit = 1.0 - np.arccos(np.clip(threshold, -1.0, 1.0)) / np.pi
    return int(np.clip(round(np.log(0.25) / np.log(p_bit)), 1, 256)) if p_bit < 1 else 256


def hyperplanes(dim: int, bands: int, rows_per_band: int, seed: int) -> np.ndarray:
    """``[dim, bands * rows_per_band]`` Gaussian hyperplanes (seeded: same seed, same buckets)."""
    rng = np.random.default_rng([seed, dim, bands, rows_per_band])
    return rng.standard_normal((dim, bands * rows_per_band)).astype(np.float32)


def band_keys(fps: np.ndarray, planes: np.ndarray, bands: int) -> np.ndarray:
    """``[B, bands]`` int64 bucket keys: a band's SimHash bits hashed, salted with the band's index."""
    if len(fps) > CHUNK * 8:  # bounds the [rows, bits] projection in memory
        return np.concatenate(
            [band_keys(fps[i : i + CHUNK * 8], planes, bands) for i in range(0, len(fps), CHUNK * 8)]
        )
    bits = (unit_rows(fps) @ planes) > 0
    r = planes.shape[1] // bands
    bits = bits.reshape(len(bits), bands, r)
    # the salt keeps equal bits in different bands in different buckets
    key = np.broadcast_to(
        np.arange(1, bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15), bits.shape[:2]
    )
    with np.errstate(over="ignore"):
        for start in range(0, r, 56):  # bands wider than 56 bits: fold 56-bit words (FNV-style mixing)
            chunk = bits[:, :, start : start + 56].astype(np.uint64)
            word = (chunk << np.arange(chunk.shape[2], dtype=np.uint64)).sum(axis=2, dtype=np.uint64)
            key = (key ^ word) * np.uint64(0x100000001B3)
    return np.ascontiguousarray(key).view(np.int64)


def bucket_pairs(
    ids: np.ndarray, splits: np.ndarray, fps: np.ndarray, threshold: float
) -> tuple[list[tuple[str, str, float, str]], np.ndarray]:
    """Verified pairs of one bucket and the histogram of all its candidate similarities.

    Pairs are ``(kept, other, cosine, kind)``: kind ``near`` for two training rows (``kept`` is the
    earlier id), ``leak`` for a training row ``other`` near a test row ``kept``. Test-test pairs are
    not candidates: the test split is never altered.
    """
    hist = np.zeros(len(HIST_BINS) - 1, np.int64)
    order = np.argsort(ids, kind="stable")
    ids, splits, vecs = ids[order], splits[order], unit_rows(fps[order])
    is_test = splits == TEST_SPLIT
    out: list[tuple[str, str, float, str]] = []
    n = len(ids)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        sims = vecs[start:stop] @ vecs[:stop].T  # rows j in the chunk against all i <= j
        jj, ii = np.nonzero(np.tri(stop - start, stop, start - 1, dtype=bool))
        both_test = is_test[ii] & is_test[start + jj]
        s = sims[jj, ii]
        hist += np.histogram(np.clip(s[~both_test], -1, 1), HIST_BINS)[0]
        hit = (s >= threshold) & ~both_test
        for j, i, v in zip(start + jj[hit], ii[hit], s[hit], strict=True):
            if is_test[i] or is_test[j]:
                test, train = (i, j) if is_test[i] else (j, i)
                out.append((str(ids[test]), str(ids[train]), float(v), "leak"))
            else:
                out.append((str(ids[i]), str(ids[j]), float(v), "near"))
    return out, hist


def resolve(pairs: list[tuple[str, str, float, str]], drop_leaks: bool) -> tuple[dict[str, str], int]:
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
    """The recipe's ``near_dedup.rows_per_band``, or the automatic choice for its threshold."""
    return cfg.rows_per_band or auto_rows_per_band(cfg.threshold)
