"""Train/test leakage: training rows that equal a test row, or share a group with one."""

from __future__ import annotations

from typing import Any


def leakage(rows: list[dict[str, Any]], hashes: list[str]) -> dict[int, str]:
    """Index → reason for every non-test row that leaks test content or a test group."""
    test_hash = {h: r["id"] for r, h in zip(rows, hashes, strict=True) if r.get("split") == "test"}
    test_groups = {r["group"] for r in rows if r.get("split") == "test" and r.get("group") is not None}
    out = {}
    for i, (row, h) in enumerate(zip(rows, hashes, strict=True)):
        if row.get("split") == "test":
            continue
        if h in test_hash:
            out[i] = f"leakage: same content as test row {test_hash[h]}"
        elif row.get("group") is not None and row["group"] in test_groups:
            out[i] = f"leakage: group {row['group']!r} is also in the test split"
    return out
