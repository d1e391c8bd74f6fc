"""What the pretrain stage reads and hands its workers: training rows only, never test rows; the
diagnostics drawn from those rows; live metrics beside the stage's other metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stages.common.cli import Dirs, StageError
from stages.common.config import load_recipe
from stages.common.rows import rows_to_table
from stages.common.storage import join, write_table
from stages.pretrain.__main__ import read_train_rows, worker_extras

REPO = Path(__file__).resolve().parents[3]


def _dirs(tmp_path: Path, metrics: str | None = None) -> Dirs:
    return Dirs(
        data=str(tmp_path / "data"),
        models=str(tmp_path / "models"),
        metrics=metrics or str(tmp_path / "metrics"),
        runs=str(tmp_path / "runs"),
        reports=str(tmp_path / "reports"),
    )


def _write_curated(dirs: Dirs, splits: list[str | None]) -> None:
    rows = [
        {
            "id": f"r{i}",
            "x": np.full((1, 24), i, np.float32),
            "label": str(i % 2),
            "split": s,
            "group": f"g{i}",
        }
        for i, s in enumerate(splits)
    ]
    write_table(join(dirs.data, "curated", "part-0.parquet"), rows_to_table(rows))


def test_reads_training_rows_and_rows_without_a_split_never_test_rows(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path)
    _write_curated(dirs, ["train", "test", None, "train", "test"])
    table, rows = read_train_rows(dirs)
    assert [r["id"] for r in rows] == ["r0", "r2", "r3"]
    assert table.num_rows == 3 and table.column("id").to_pylist() == ["r0", "r2", "r3"]


def test_no_training_rows_is_a_one_line_error(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path)
    _write_curated(dirs, ["test", "test"])
    with pytest.raises(StageError, match="no training rows after curation"):
        read_train_rows(dirs)


def test_worker_extras_come_from_the_training_rows(tmp_path: Path) -> None:
    recipe = load_recipe(REPO / "pipelines/timeseries-gunpoint.yaml", REPO / "params.yaml")
    dirs = _dirs(tmp_path)
    _write_curated(dirs, ["train", "test"] * 20)
    _, rows = read_train_rows(dirs)
    extras = worker_extras(recipe, dirs, rows)
    train_x = {r["x"].tobytes() for r in rows}
    assert extras["diagnostic_sample"] and all(x.tobytes() in train_x for x in extras["diagnostic_sample"])
    knn = extras["online_knn"]
    assert all(x.tobytes() in train_x for x in knn["bank_x"] + knn["query_x"])
    assert extras["live_dir"] == str(tmp_path / "metrics" / "pretrain")
    # remote metrics (an object store): no local live directory for dvclive
    assert worker_extras(recipe, _dirs(tmp_path, "s3://bucket/metrics"), rows)["live_dir"] is None
