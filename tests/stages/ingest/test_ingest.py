"""Ingest quarantines unreadable units and bad rows with their reasons; it never crashes on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from stages.common.rows import decode_row
from stages.ingest.__main__ import read_tasks, read_unit, unnest_rows


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


def _toy(tmp_path: Path, test_lines: str) -> None:
    root = tmp_path / "Toy"
    root.mkdir(exist_ok=True)
    (root / "Toy_TRAIN.tsv").write_text("1\t1\t2\t3\t4\n2\t4\t3\t2\t1\n")
    (root / "Toy_TEST.tsv").write_text(test_lines)


def test_test_rows_carry_their_split_and_published_test_files_count_every_row(tmp_path: Path) -> None:
    from domains.timeseries.readers import SOURCES

    _toy(tmp_path, "1\t1\t2\t3\t5\n2\t1\tnan\t3\t4\n")
    units = SOURCES["ucr_tsv"].list_units(root=str(tmp_path), name="Toy")
    out = [o for u in units for o in read_unit({"unit": json.dumps(u)}, "timeseries", "ucr_tsv")]
    test = [o for o in out if o["split"] == "test"]
    assert len(test) == 2 and all(o["published"] for o in test)  # counted before validation
    assert not any(o["published"] for o in out if o["split"] == "train")
    assert [o["id"] for o in test if o["reason"]] == ["Toy/test/00001"]


def _recipe(*sets: str):  # noqa: ANN202
    from stages.common.config import load_recipe

    repo = Path(__file__).resolve().parents[3]
    return load_recipe(repo / "pipelines/timeseries-gunpoint.yaml", repo / "params.yaml", list(sets))


def _ingest_argv(tmp_path: Path, name: str, *sets: str) -> list[str]:
    """The ingest stage's command line: the GunPoint recipe reading the UCR TSV set ``name`` under
    ``tmp_path``, every output under ``tmp_path``, plus ``sets``."""
    repo = Path(__file__).resolve().parents[3]
    paths = [f"paths.{k}={tmp_path / k}" for k in ("data", "models", "metrics", "runs", "reports")]
    source = ["data.source=ucr_tsv", f"data.options={{root: {tmp_path}, name: {name}}}"]
    argv = [
        "--recipe",
        str(repo / "pipelines/timeseries-gunpoint.yaml"),
        "--params",
        str(repo / "params.yaml"),
    ]
    return argv + [f"--set={s}" for s in [*paths, *source, *sets]]


def test_a_rejected_test_row_fails_ingest_naming_it_unless_drop_and_report() -> None:
    from stages.ingest.__main__ import check_test_rows

    rejected = [
        {"id": "Toy/train/00003", "reason": "too short", "split": "train"},
        {"id": "Toy/test/00001", "reason": "non-finite values", "split": "test"},
    ]
    counts = {"test_rows": 1, "test_rows_published": 2}
    n, error = check_test_rows(_recipe(), rejected, counts, published_units=1)
    assert n == 1 and error is not None and "'Toy/test/00001' rejected: non-finite values" in error
    assert "ingest.test_rows=drop_and_report" in error and "\n" not in error
    assert check_test_rows(_recipe("ingest.test_rows=drop_and_report"), rejected, counts, 1) == (1, None)
    # no row rejected, yet fewer test rows than the published file holds: fails too
    n, error = check_test_rows(_recipe(), [], {"test_rows": 99, "test_rows_published": 100}, 1)
    assert n == 1 and error is not None and "published test files hold 100" in error
    assert check_test_rows(_recipe(), rejected[:1], {"test_rows": 100, "test_rows_published": 100}, 1) == (
        0,
        None,
    )


@pytest.mark.e2e
def test_ingest_stops_with_exit_code_2_on_a_bad_test_row_and_records_the_published_size(
    tmp_path: Path, ray_address: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stages.common.cli import main
    from stages.ingest.__main__ import run

    _toy(tmp_path, "1\t1\t2\t3\t5\n2\t1\tnan\t3\t4\n1\t5\t6\t7\t8\n")
    monkeypatch.setenv("RAY_ADDRESS", ray_address)
    argv = _ingest_argv(tmp_path, "Toy")
    import ray

    connected = ray.is_initialized()
    try:
        assert main("ingest", run, argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Toy/test/00001" in err[0]
        assert main("ingest", run, [*argv, "--set=ingest.test_rows=drop_and_report"]) == 0
    finally:
        if not connected:  # leave a session another test opened alone
            ray.shutdown()
    metrics = json.loads((tmp_path / "metrics/timeseries-gunpoint/ingest.json").read_text())
    assert metrics["test_rows_published"] == 3 and metrics["test_rows"] == 2
    assert metrics["test_rows_rejected"] == 1 and metrics["test_rows_policy"] == "drop_and_report"


@pytest.mark.e2e
def test_per_row_stats_stores_three_channels_per_series_with_their_shape(
    tmp_path: Path, ray_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data.normalise: per_row_stats`` on series with a level: ingest stores each series as
    ``[shape, level, log scale]`` (3 channels, ``shape`` column updated), the level fitted on the
    training rows only, so the encoder and every later stage read 3-channel rows."""
    import pyarrow.parquet as pq
    import ray

    from stages.common.cli import main
    from stages.common.rows import table_to_rows
    from stages.ingest.__main__ import run

    rng = np.random.default_rng(1)
    root = tmp_path / "Lvl"
    root.mkdir()

    def lines(n: int, offset: float) -> str:
        return "".join(
            "\t".join([str(i % 2), *(f"{v:.6f}" for v in 10.0 * (i % 2) + offset + rng.normal(size=12))])
            + "\n"
            for i in range(n)
        )

    (root / "Lvl_TRAIN.tsv").write_text(lines(20, 0.0))
    (root / "Lvl_TEST.tsv").write_text(lines(6, 0.0))
    monkeypatch.setenv("RAY_ADDRESS", ray_address)
    connected = ray.is_initialized()
    try:
        assert main("ingest", run, _ingest_argv(tmp_path, "Lvl", "data.normalise=per_row_stats")) == 0
        table = pq.read_table(tmp_path / "data/timeseries-gunpoint/ingested")
    finally:
        if not connected:  # leave a session another test opened alone
            ray.shutdown()
    described = json.loads((tmp_path / "metrics/timeseries-gunpoint/ingest.json").read_text())["normalise"]
    assert described["chosen"] == "per_row_stats" and 4.0 < described["mean"][0] < 6.0
    rows = table_to_rows(table)
    assert len(rows) == 26 and {r["x"].shape for r in rows} == {(3, 12)}
    for r in rows:
        np.testing.assert_allclose(r["x"][0].mean(), 0.0, atol=1e-5)  # the shape: z-normalised per series
        assert np.ptp(r["x"][1]) == 0.0 and np.ptp(r["x"][2]) == 0.0  # level and scale: constant in time
    levels = {r["label"]: [] for r in rows}
    for r in rows:
        levels[r["label"]].append(float(r["x"][1, 0]))
    low, high = sorted(levels.values(), key=np.mean)
    assert max(low) < 0.0 < min(high)  # the level that per-series z-normalisation throws away


@pytest.mark.e2e
def test_unnormalised_series_are_z_scored_with_statistics_of_the_training_rows_only(
    tmp_path: Path, ray_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data.normalise: auto`` on series with a level: ingest keeps the level, fitted on the
    training rows after the split (validation rows and published test rows never count)."""
    import pyarrow.parquet as pq
    import ray

    from stages.common.cli import main
    from stages.common.rows import table_to_rows
    from stages.ingest.__main__ import run

    rng = np.random.default_rng(0)
    root = tmp_path / "Lvl"
    root.mkdir()

    def lines(n: int, offset: float) -> str:
        out = []
        for i in range(n):
            label = i % 2
            x = 10.0 * label + offset + rng.normal(size=12)
            out.append("\t".join([str(label), *(f"{v:.6f}" for v in x)]))
        return "\n".join(out) + "\n"

    (root / "Lvl_TRAIN.tsv").write_text(lines(20, 0.0))
    (root / "Lvl_TEST.tsv").write_text(lines(6, 1000.0))  # far off: would move any statistic it entered
    monkeypatch.setenv("RAY_ADDRESS", ray_address)
    argv = _ingest_argv(tmp_path, "Lvl", "data.normalise=auto")
    metrics_path = tmp_path / "metrics/timeseries-gunpoint/ingest.json"
    connected = ray.is_initialized()
    try:
        assert main("ingest", run, argv) == 0
        published = json.loads(metrics_path.read_text())["normalise"]
        table = pq.read_table(tmp_path / "data/timeseries-gunpoint/ingested")
        rows = table_to_rows(table)
        assert main("ingest", run, [*argv, "--set=data.holdout=validation"]) == 0
        validation = json.loads(metrics_path.read_text())["normalise"]
        held_out = pq.read_table(tmp_path / "data/timeseries-gunpoint/ingested")
    finally:
        if not connected:  # leave a session another test opened alone
            ray.shutdown()
    assert published["mode"] == "auto" and published["chosen"] == "train"
    assert 4.0 < published["mean"][0] < 6.0  # the 20 training rows' level, not the test rows' 1000
    train = [r["x"] for r in rows if r["split"] != "test"]
    test = [r["x"] for r in rows if r["split"] == "test"]
    assert abs(np.concatenate(train, axis=1).mean()) < 1e-5  # z-scored as a whole...
    assert np.mean([abs(x.mean()) for x in train]) > 0.5  # ...each series keeps its level
    assert min(x.mean() for x in test) > 50.0  # test rows mapped with the training statistics
    # validation mode: fitted on the rows left for training, not on the carved validation rows
    assert validation["chosen"] == "train" and validation["mean"] != published["mean"]
    # stored as encode_row makes them (and curate writes them) in both modes: float32 values, int32
    # shapes (a Python row map in between once widened them to float64 / int64, twice the bytes)
    for t in (table, held_out):
        assert t.schema.field("x").type == pa.list_(pa.float32())
        assert t.schema.field("shape").type == pa.list_(pa.int32())
    assert held_out.column("split").to_pylist().count("test") > 0


def test_a_few_small_units_are_read_by_one_task_and_many_by_at_most_64() -> None:
    # each read task's worker pays seconds of imports first: a dozen files are not worth a dozen
    assert read_tasks(1, 8) == 1
    assert read_tasks(12, 8) == 1
    assert read_tasks(16, 8) == 2
    assert read_tasks(920, 8) == 64
    assert read_tasks(12, 1) == 12  # ingest.units_per_task=1: one task per unit, as for big files


def test_kept_rows_are_unnested_with_their_types_and_an_all_rejected_block_gives_none() -> None:
    row = pa.struct([("id", pa.string()), ("x", pa.list_(pa.float32())), ("shape", pa.list_(pa.int32()))])
    kept = pa.table(
        {
            "reason": pa.nulls(1, pa.string()),
            "row": pa.array([{"id": "a", "x": [0.5, 1.5], "shape": [2]}], row),
        }
    )
    out = unnest_rows(kept)
    assert out.column_names == ["id", "x", "shape"] and out.to_pylist() == [
        {"id": "a", "x": [0.5, 1.5], "shape": [2]}
    ]
    assert out.schema.field("x").type == pa.list_(pa.float32())
    # a block of only rejected rows has a null-typed ``row`` column (nothing to infer a struct from)
    assert unnest_rows(pa.table({"reason": pa.array([], pa.string()), "row": pa.nulls(0)})).num_rows == 0
