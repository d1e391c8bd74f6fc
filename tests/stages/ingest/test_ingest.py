"""Ingest quarantines unreadable units and bad rows with their reasons; it never crashes on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stages.common.rows import decode_row
from stages.ingest.__main__ import read_unit


def test_corrupt_unit_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    bad = tmp_path / "broken_TRAIN.ts"
    bad.write_text("@problemName x\n@univariate true\n@data\n1,2,3:not-a-label:extra:junk\n")
    out = read_unit({"unit": json.dumps({"path": str(bad)})}, "timeseries", "ts_file")
    assert len(out) == 1 and out[0]["row"] is None
    assert out[0]["reason"].startswith("unreadable:")


def test_nan_and_short_rows_are_rejected_good_rows_normalised(tmp_path: Path) -> None:
    root = tmp_path / "Toy"
    root.mkdir()
    (root / "Toy_TRAIN.tsv").write_text("1\t1\t2\t3\t4\n2\t1\tnan\t3\t4\n1\t5\tnan\tnan\tnan\n")
    unit = {"root": str(tmp_path), "name": "Toy", "split": "train"}
    from domains.timeseries.readers import SOURCES

    units = SOURCES["ucr_tsv"].list_units(root=str(tmp_path), name="Toy")
    unit = next(u for u in units if "TRAIN" in json.dumps(u))
    out = read_unit({"unit": json.dumps(unit)}, "timeseries", "ucr_tsv")
    kept = [o for o in out if o["reason"] is None]
    rejected = {o["id"]: o["reason"] for o in out if o["reason"] is not None}
    assert len(kept) == 1 and len(rejected) == 2
    assert any("non-finite" in r for r in rejected.values()) and any(
        "too short" in r for r in rejected.values()
    )
    x = decode_row(kept[0]["row"])["x"]
    np.testing.assert_allclose([x.mean(), x.std()], [0.0, 1.0], atol=1e-5)
