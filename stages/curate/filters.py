"""Quality filters: rows the domain's ``validate`` rejects (re-checked here, after ingest)."""

from __future__ import annotations

from typing import Any

from domains.base import Domain


def quality_reasons(domain: Domain, rows: list[dict[str, Any]]) -> dict[int, str]:
    """Index → reason for every row the domain finds unusable."""
    out = {}
    for i, row in enumerate(rows):
        reason = domain.validate(row)
        if reason is not None:
            out[i] = f"quality: {reason}"
    return out
