"""Row encoding round trips and atomic outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stages.common.rows import rows_to_table, table_to_rows
from stages.common.storage import atomic_dir, join, read_json, read_table, write_json, write_table


def _rows() -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "id": "a",
            "x": rng.normal(size=(1, 5)).astype(np.float32),
            "label": "1",
            "split": "train",
            "group": "g1",
            "meta": {"k": 1},
        },
        {
            "id": "b",
            "x": rng.normal(size=(3, 7)).astype(np.float32),
            "label": None,
            "split": None,
            "group": None,
            "meta": {},
        },
    ]


def test_rows_round_trip_through_parquet(tmp_path: Path) -> None:
    write_table(str(tmp_path / "t.parquet"), rows_to_table(_rows()))
    back = table_to_rows(read_table(str(tmp_path / "t.parquet")))
    for a, b in zip(_rows(), back, strict=True):
        np.testing.assert_array_equal(a["x"], b["x"])
        assert {k: a[k] for k in ("id", "label", "split", "group", "meta")} == {
            k: b[k] for k in ("id", "label", "split", "group", "meta")
        }


def test_atomic_dir_replaces_on_success_and_leaves_old_on_failure(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    with atomic_dir(out) as tmp:
        write_json(join(tmp, "a.json"), {"v": 1})
    assert read_json(join(out, "a.json")) == {"v": 1}
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        write_json(join(tmp, "a.json"), {"v": 2})
        raise RuntimeError("interrupted")
    assert read_json(join(out, "a.json")) == {"v": 1}  # the old output survives intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir left behind


def test_file_uri_works_like_a_path(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/m.json"
    write_json(uri, {"ok": True})
    assert read_json(uri) == {"ok": True}


def test_write_json_writes_strict_json_with_undefined_figures_as_null(tmp_path: Path) -> None:
    # A NaN figure (a Dice over classes no test patch has) must not make the whole metrics file
    # unreadable to strict JSON readers (jq, JavaScript, dvc plots' front end)
    uri = str(tmp_path / "m.json")
    write_json(
        uri,
        {
            "dice": float("nan"),
            "r2": [0.5, np.float32("nan"), float("inf"), -float("inf")],
            "acc": np.float64(0.75),
            "n": np.int64(3),
            "nested": {"std": np.float32(0.25), "ok": True, "name": "x", "none": None},
        },
    )

    def reject(token: str) -> None:
        raise AssertionError(f"non-JSON token {token} written")

    import json

    data = json.loads(Path(uri).read_text(), parse_constant=reject)
    assert data == {
        "dice": None,
        "r2": [0.5, None, None, None],
        "acc": 0.75,
        "n": 3,
        "nested": {"std": 0.25, "ok": True, "name": "x", "none": None},
    }
    assert read_json(uri) == data
