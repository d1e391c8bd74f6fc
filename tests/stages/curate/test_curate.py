"""Curation: quality filter, exact dedup and leakage — every removal recorded, test split untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.common.config import load_recipe
from stages.curate.__main__ import curate
from stages.curate.dedup import content_hash

REPO = Path(__file__).resolve().parents[3]


def _row(i: str, x: np.ndarray, split: str, group: str | None = None) -> dict:
    return {"id": i, "x": x.astype(np.float32), "label": "0", "split": split, "group": group or i, "meta": {}}


def test_content_hash_sees_values_and_shape() -> None:
    x = np.arange(6, dtype=np.float32)
    assert content_hash(x.reshape(1, 6)) == content_hash(x.copy().reshape(1, 6))
    assert content_hash(x.reshape(1, 6)) != content_hash(x.reshape(2, 3))
    assert content_hash(np.array([0.0], np.float32)) == content_hash(np.array([-0.0], np.float32))


def test_curate_removes_duplicates_leaks_and_bad_rows_but_never_test_rows() -> None:
    recipe = load_recipe(REPO / "pipelines/timeseries-gunpoint.yaml", REPO / "params.yaml")
    rng = np.random.default_rng(0)
    a, b, t = (rng.normal(size=(1, 20)) for _ in range(3))
    rows = [
        _row("train/a", a, "train"),
        _row("train/a-copy", a, "train"),  # exact duplicate
        _row("train/b", b, "train"),
        _row("train/t-copy", t, "train"),  # the same content as a test row: leakage
        _row("train/nan", np.full((1, 20), np.nan), "train"),  # quality
        _row("train/shared-group", rng.normal(size=(1, 20)), "train", group="patient-7"),
        _row("test/t", t, "test"),
        _row("test/t-dup", t, "test"),  # test duplicates are reported, never removed
        _row("test/p7", rng.normal(size=(1, 20)), "test", group="patient-7"),
    ]
    kept, removed, report = curate(recipe, rows)
    kept_ids = {r["id"] for r in kept}
    assert kept_ids == {"train/a", "train/b", "test/t", "test/t-dup", "test/p7"}
    reasons = {r["id"]: r["reason"].split(":")[0] for r in removed}
    assert reasons == {
        "train/a-copy": "exact_duplicate",
        "train/t-copy": "leakage",
        "train/nan": "quality",
        "train/shared-group": "leakage",
    }
    assert report["rows_in"] == len(rows) and report["rows_out"] + report["removed"] == len(rows)


def test_leakage_report_only_keeps_rows() -> None:
    recipe = load_recipe(
        REPO / "pipelines/timeseries-gunpoint.yaml", REPO / "params.yaml", ["curate.leakage=report"]
    )
    t = np.ones((1, 8))
    kept, _, report = curate(recipe, [_row("train/t", t, "train"), _row("test/t", t, "test")])
    assert len(kept) == 2 and report["leakage_found"] == 1
