"""Train/test leakage by group: training rows sharing a ``group`` (patient, speaker...) with a test row.

Content leakage (a training row equal to a test row) is found with the content hashes
(``dedup.hash_group``), near leakage with the near-dedup buckets (``near.resolve``).
"""

from __future__ import annotations

from typing import Any

from domains.base import is_test, is_train


def test_groups(rows: list[dict[str, Any]]) -> set[str]:
    return {r["group"] for r in rows if is_test(r) and r.get("group") is not None}


def group_leaks(rows: list[dict[str, Any]], groups: set[str]) -> dict[str, str]:
    """Id → reason for every non-test row whose group is also in the test split."""
    return {
        r["id"]: f"leakage: group {r['group']!r} is also in the test split"
        for r in rows
        if is_train(r) and r.get("group") is not None and r["group"] in groups
    }
