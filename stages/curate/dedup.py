"""Exact deduplication by content hash of the normalised sample.

Only training rows are ever removed: the test split is the benchmark and stays as published.
"""

from __future__ import annotations

import hashlib

import numpy as np

from domains.base import TEST_SPLIT


def content_hash(x: np.ndarray) -> str:
    """Hash of shape and float32 bytes (``-0.0`` folded into ``0.0`` so equal values hash equal)."""
    a = np.ascontiguousarray(x, dtype=np.float32) + np.float32(0.0)
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(a.shape, dtype=np.int64).tobytes())
    h.update(a.tobytes())
    return h.hexdigest()


def hash_group(
    ids: list[str], splits: list[str | None], exact: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """Rows sharing one content hash → (exact duplicates, training rows leaking that content).

    A group that holds a test row leaks: its training rows go to the leakage rule (test wins).
    Otherwise the smallest id is kept, so the choice never depends on row or shard order.
    """
    tests = sorted(i for i, s in zip(ids, splits, strict=True) if s == TEST_SPLIT)
    train = sorted(i for i, s in zip(ids, splits, strict=True) if s != TEST_SPLIT)
    if tests:
        return {}, {i: f"leakage: same content as test row {tests[0]}" for i in train}
    if not exact or len(train) < 2:
        return {}, {}
    return {i: f"exact_duplicate: same content as {train[0]}" for i in train[1:]}, {}
