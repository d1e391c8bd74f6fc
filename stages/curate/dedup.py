"""Exact deduplication by content hash of the normalised sample.

Only training rows are ever removed: the test split is the benchmark and stays as published.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def content_hash(x: np.ndarray) -> str:
    """Hash of shape and float32 bytes (``-0.0`` folded into ``0.0`` so equal values hash equal)."""
    a = np.ascontiguousarray(x, dtype=np.float32) + np.float32(0.0)
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(a.shape, dtype=np.int64).tobytes())
    h.update(a.tobytes())
    return h.hexdigest()


def exact_duplicates(rows: list[dict[str, Any]], hashes: list[str]) -> dict[int, str]:
    """Index → reason for every non-test row whose content equals an earlier non-test row's."""
    first: dict[str, str] = {}
    out = {}
    for i, (row, h) in enumerate(zip(rows, hashes, strict=True)):
        if row.get("split") == "test":
            continue
        if h in first:
            out[i] = f"exact_duplicate: same content as {first[h]}"
        else:
            first[h] = row["id"]
    return out
