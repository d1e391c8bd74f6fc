"""Validation mode (``data.holdout: validation``): the published test rows never survive ingest, a
seeded, stratified, group-safe part of the training rows becomes the test split instead."""

from __future__ import annotations

from collections import Counter

import pytest

from domains.base import is_test
from stages.common.config import ConfigError, load_recipe
from stages.common.schema import DataCfg
from stages.ingest import holdout


def _rows() -> list[dict]:
    """60 training rows in 20 groups of 3 (two classes) and 30 published test rows."""
    rows = []
    for i in range(60):
        g = i // 3
        rows.append({"id": f"S/train/{i:03d}", "label": str(g % 2), "group": f"g{g}", "split": "train"})
    for i in range(30):
        rows.append({"id": f"S/test/{i:03d}", "label": str(i % 2), "group": f"t{i}", "split": "test"})
    return rows


def test_no_published_test_row_survives_and_validation_is_group_safe() -> None:
    out = holdout.apply_rows(_rows(), val_fraction=0.25, seed=0)
    assert not any(r["id"].startswith("S/test/") for r in out)
    assert len(out) == 60
    val = [r for r in out if is_test(r)]
    train = [r for r in out if not is_test(r)]
    assert 0 < len(val) < 60
    assert {r["group"] for r in val}.isdisjoint({r["group"] for r in train})
    # stratified: both classes on both sides, roughly the requested share of the rows
    assert set(Counter(r["label"] for r in val)) == {"0", "1"}
    assert abs(len(val) / 60 - 0.25) <= 0.1


def test_validation_split_is_deterministic_and_seeded() -> None:
    a = holdout.validation_ids(_rows(), 0.2, seed=3)
    assert a == holdout.validation_ids(_rows(), 0.2, seed=3)
    assert a != holdout.validation_ids(_rows(), 0.2, seed=4)


def test_ungrouped_rows_are_split_by_row_with_stratification() -> None:
    rows = [{"id": f"r{i}", "label": "ab"[i % 2], "group": None, "split": "train"} for i in range(40)]
    val = holdout.validation_ids(rows, 0.2, seed=0)
    assert len(val) == 8 and Counter(r["label"] for r in rows if r["id"] in val) == {"a": 4, "b": 4}


def test_recipe_key_is_validated() -> None:
    assert DataCfg(source="s").holdout == "none"
    with pytest.raises(ConfigError, match="data.holdout"):
        load_recipe("pipelines/timeseries-gunpoint.yaml", "params.yaml", ["data.holdout=test"])
    with pytest.raises(ConfigError, match="data.val_fraction"):
        load_recipe("pipelines/timeseries-gunpoint.yaml", "params.yaml", ["data.val_fraction=1.5"])


def test_ray_dataset_path_matches_the_in_memory_rule(ray_session) -> None:  # noqa: ANN001
    import ray.data

    rows = _rows()
    cfg = DataCfg(source="s", holdout="validation", val_fraction=0.25, val_seed=0)
    ds, info = holdout.apply(ray.data.from_items(rows), cfg)
    got = sorted(ds.take_all(), key=lambda r: r["id"])
    assert got == sorted(holdout.apply_rows(rows, 0.25, 0), key=lambda r: r["id"])
    assert info["holdout_published_test_dropped"] == 30
    assert info["holdout_validation_rows"] + info["holdout_training_rows"] == 60
    same, none = holdout.apply(ray.data.from_items(rows), DataCfg(source="s"))
    assert none == {} and same.count() == 90
