"""A test row that fails the quality filter stops curation naming it, or is removed and counted when told."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stages.common.cli import StageError, main
from stages.common.rows import rows_to_table, table_to_rows
from stages.common.storage import read_table, write_table
from stages.curate.__main__ import curate, run

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "pipelines/timeseries-gunpoint.yaml"


def _row(i: str, x: np.ndarray, split: str) -> dict:
    return {"id": i, "x": x.astype(np.float32), "label": "0", "split": split, "group": i, "meta": {}}


def _rows() -> list[dict]:
    rng = np.random.default_rng(0)
    rows = [_row(f"train/{i}", rng.normal(size=(1, 32)), "train") for i in range(6)]
    rows += [_row(f"test/{i}", rng.normal(size=(1, 32)), "test") for i in range(4)]
    rows.append(_row("test/broken", np.full((1, 32), np.nan), "test"))
    return rows


def _paths(tmp: Path) -> list[str]:
    return [f"paths.{k}={tmp / k}" for k in ("data", "models", "metrics", "runs", "reports")]


def test_a_test_row_failing_a_quality_rule_stops_curation_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stages.common.config import load_recipe

    with pytest.raises(StageError, match=r"test row 'test/broken' fails the quality filter \(non-finite"):
        curate(load_recipe(RECIPE, REPO / "params.yaml"), _rows())

    # through the command line: exit code 2 and one line on stderr, nothing written
    write_table(str(tmp_path / "data/timeseries-gunpoint/ingested/part-0.parquet"), rows_to_table(_rows()))
    argv = ["--recipe", str(RECIPE), "--params", str(REPO / "params.yaml")]
    assert main("curate", run, argv + [f"--set={s}" for s in _paths(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "test/broken" in err and "curate.test_rows" in err
    assert not (tmp_path / "data/timeseries-gunpoint/curated").exists()


def test_drop_and_report_removes_the_test_row_and_counts_it(tmp_path: Path) -> None:
    argv = ["--recipe", str(RECIPE), "--params", str(REPO / "params.yaml")]
    sets = [*_paths(tmp_path), "curate.test_rows=drop_and_report"]
    write_table(str(tmp_path / "data/timeseries-gunpoint/ingested/part-0.parquet"), rows_to_table(_rows()))
    assert main("curate", run, argv + [f"--set={s}" for s in sets]) == 0
    data = tmp_path / "data/timeseries-gunpoint"
    kept = {r["id"] for r in table_to_rows(read_table(str(data / "curated")))}
    assert "test/broken" not in kept and sum(k.startswith("test/") for k in kept) == 4
    report = json.loads((data / "curated/curation_report.json").read_text())
    metrics = json.loads((tmp_path / "metrics/timeseries-gunpoint/curate.json").read_text())
    assert report["test_rows_removed"] == metrics["test_rows_removed"] == 1
    assert report["test_rows_policy"] == "drop_and_report"
    assert json.loads((data / "removed.jsonl").read_text())["id"] == "test/broken"
