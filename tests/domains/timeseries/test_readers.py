"""Readers: every source yields float32 [C, T] rows and never touches the network."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.timeseries.readers import BUNDLED, SOURCES, read_source, split_from_name


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _check_rows(rows: list[dict]) -> None:
    for r in rows:
        assert set(r) == {"id", "x", "label", "split", "group", "meta"}
        assert r["x"].dtype == np.float32 and r["x"].ndim == 2


# ------------------------------------------------------------------ ucr_bundled


def test_gunpoint_bundled(no_network: None) -> None:
    rows = list(read_source("ucr_bundled", name="GunPoint"))
    _check_rows(rows)
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    assert (len(train), len(test)) == (50, 150)
    assert {r["x"].shape for r in rows} == {(1, 150)}
    assert {r["label"] for r in rows} == {"1", "2"}
    assert train[3]["id"] == "GunPoint/train/00003" and train[3]["group"] == train[3]["id"]
    assert train[3]["meta"] == {"dataset": "GunPoint", "index": 3}
    assert len({r["id"] for r in rows}) == 200


def test_japanese_vowels_unequal_multivariate(no_network: None) -> None:
    units = SOURCES["ucr_bundled"].list_units(name="JapaneseVowels", splits=("train",))
    assert units == [{"name": "JapaneseVowels", "split": "train"}]
    rows = list(SOURCES["ucr_bundled"].read_unit(units[0]))
    _check_rows(rows)
    assert len(rows) == 270
    assert {r["x"].shape[0] for r in rows} == {12}
    assert len({r["x"].shape[1] for r in rows}) > 1


def test_unknown_bundled_name_raises_before_aeon(no_network: None) -> None:
    with pytest.raises(ValueError, match="not bundled.*GunPoint"):
        SOURCES["ucr_bundled"].list_units(name="Coffee")
    with pytest.raises(ValueError, match="not bundled"):
        list(SOURCES["ucr_bundled"].read_unit({"name": "Coffee", "split": "train"}))
    with pytest.raises(ValueError, match="split"):
        SOURCES["ucr_bundled"].list_units(name="GunPoint", splits=("valid",))
    assert "GunPoint" in BUNDLED and "PLAID" not in BUNDLED


# ------------------------------------------------------------------ ts_file

TS_TEXT = """# a tiny hand-written problem
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1.0,2.0,3.0:4.0,5.0,6.0:a
7.0,8.0:9.0,10.0:b
"""


def test_ts_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text(TS_TEXT)
    units = SOURCES["ts_file"].list_units(paths=[str(tmp_path / "*.ts")])
    assert units == [{"path": str(path), "split": "train"}]
    rows = list(read_source("ts_file", paths=[str(path)]))
    _check_rows(rows)
    assert [r["id"] for r in rows] == ["Tiny/train/00000", "Tiny/train/00001"]
    assert [r["label"] for r in rows] == ["a", "b"]
    assert {r["split"] for r in rows} == {"train"}
    np.testing.assert_array_equal(rows[0]["x"], [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(rows[1]["x"], [[7, 8], [9, 10]])


def test_split_from_name() -> None:
    assert split_from_name("/d/GunPoint_TEST.ts") == "test"
    assert split_from_name("x_train.ts") == "train"
    assert split_from_name("x_Train_eq.ts") == "train"
    assert split_from_name("trainer.ts") is None
    assert split_from_name("data.ts") is None


@pytest.mark.parametrize(
    "text",
    [
        "@problemName Bad\n@univariate true\n@classLabel true a b\n@data\n1.0,oops,3.0:a\n",
        "this is not a ts file at all\n",
        "@problemName Bad\n@univariate true\n@classLabel true a b\n@data\n1.0,2.0:3.0,4.0:a\n",
    ],
)
def test_corrupt_ts_file_raises(tmp_path: Path, text: str) -> None:
    path = tmp_path / "Bad_TEST.ts"
    path.write_text(text)
    (unit,) = SOURCES["ts_file"].list_units(paths=str(path))
    with pytest.raises(ValueError, match="Bad_TEST.ts"):
        list(SOURCES["ts_file"].read_unit(unit))


def test_ts_file_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SOURCES["ts_file"].list_units(paths=[str(tmp_path / "nothing*.ts")])


# ------------------------------------------------------------------ ucr_tsv


def test_ucr_tsv_strips_trailing_nan_keeps_interior(tmp_path: Path) -> None:
    d = tmp_path / "Toy"
    d.mkdir()
    (d / "Toy_TRAIN.tsv").write_text(
        "1\t0.5\t1.5\t2.5\t3.5\n"  # full length
        "2\t4.0\t5.0\tNaN\tNaN\n"  # NaN-padded: length 2
        "-1\t6.0\tNaN\t7.0\tNaN\n"  # interior NaN kept, trailing stripped
    )
    (d / "Toy_TEST.tsv").write_text("01\t1.0\t2.0\n")  # ragged (short) row, label text kept verbatim
    rows = list(read_source("ucr_tsv", root=str(tmp_path), name="Toy"))
    _check_rows(rows)
    assert [r["id"] for r in rows] == [
        "Toy/train/00000",
        "Toy/train/00001",
        "Toy/train/00002",
        "Toy/test/00000",
    ]
    assert [r["label"] for r in rows] == ["1", "2", "-1", "01"]
    assert [r["split"] for r in rows] == ["train"] * 3 + ["test"]
    np.testing.assert_array_equal(rows[0]["x"], [[0.5, 1.5, 2.5, 3.5]])
    np.testing.assert_array_equal(rows[1]["x"], [[4.0, 5.0]])
    np.testing.assert_array_equal(rows[2]["x"], [[6.0, np.nan, 7.0]])
    np.testing.assert_array_equal(rows[3]["x"], [[1.0, 2.0]])


def test_ucr_tsv_missing_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Nope"):
        SOURCES["ucr_tsv"].list_units(root=str(tmp_path), name="Nope")


# ------------------------------------------------------------------ table


def test_csv_wide_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    df = pd.DataFrame(
        {
            "id": ["s007", "s008", "s009"],
            "label": ["up", None, "down"],
            "split": ["TRAIN", "test", None],
            "group": ["p1", "p1", None],
            "t0": [1.0, 2.0, 3.0],
            "t1": [1.5, 2.5, np.nan],
            "t2": [1.75, np.nan, np.nan],
            "note": ["x", "y", "z"],  # trailing text column -> meta
        }
    )
    df.to_csv(path, index=False)
    rows = list(read_source("table", paths=[str(path)], format="wide"))
    _check_rows(rows)
    assert [r["id"] for r in rows] == ["s007", "s008", "s009"]
    assert [r["label"] for r in rows] == ["up", None, "down"]
    assert [r["split"] for r in rows] == ["train", "test", None]
    assert [r["group"] for r in rows] == ["p1", "p1", "s009"]
    np.testing.assert_array_equal(rows[0]["x"], [[1.0, 1.5, 1.75]])
    np.testing.assert_array_equal(rows[1]["x"], [[2.0, 2.5]])
    np.testing.assert_array_equal(rows[2]["x"], [[3.0]])
    assert rows[0]["meta"]["note"] == "x"


def test_csv_wide_without_id_and_stray_text_column(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    rows = list(read_source("table", paths=str(path)))
    assert [r["id"] for r in rows] == ["plain/00000", "plain/00001"]
    assert rows[1]["label"] is None and rows[1]["group"] == "plain/00001"
    np.testing.assert_array_equal(rows[1]["x"], [[4, 5, 6]])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,oops,3\n4,5,6\n")
    with pytest.raises(ValueError, match=r"\['b'\]"):
        list(read_source("table", paths=str(bad)))


def test_parquet_long_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    series = {"a": rng.normal(size=(2, 5)), "b": rng.normal(size=(2, 3))}
    recs = [
        {
            "id": sid,
            "time": t,
            "channel": ch,
            "value": x[ci, t],
            "label": sid.upper(),
            "split": "train",
        }
        for sid, x in series.items()
        for ci, ch in enumerate(["x", "y"])
        for t in range(x.shape[1])
    ]
    df = pd.DataFrame(recs).sample(frac=1.0, random_state=0)  # order must not matter
    path = tmp_path / "long.parquet"
    df.to_parquet(path, engine="pyarrow")
    rows = {r["id"]: r for r in read_source("table", paths=[str(path)], format="long")}
    _check_rows(list(rows.values()))
    assert set(rows) == {"a", "b"}
    for sid, x in series.items():
        np.testing.assert_allclose(rows[sid]["x"], x.astype(np.float32))
        assert rows[sid]["label"] == sid.upper() and rows[sid]["split"] == "train"


def test_long_univariate_and_conflicts(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("id,time,value\nq,2,30\nq,0,10\nq,1,20\n")
    (row,) = read_source("table", paths=str(path), format="long")
    np.testing.assert_array_equal(row["x"], [[10, 20, 30]])
    dup = tmp_path / "dup.csv"
    dup.write_text("id,time,value\nq,0,1\nq,0,2\n")
    with pytest.raises(ValueError, match="duplicate"):
        list(read_source("table", paths=str(dup), format="long"))
    conflict = tmp_path / "conflict.csv"
    conflict.write_text("id,time,value,label\nq,0,1,a\nq,1,2,b\n")
    with pytest.raises(ValueError, match="conflicting"):
        list(read_source("table", paths=str(conflict), format="long"))


def test_table_rejects_bad_options(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="extension"):
        SOURCES["table"].list_units(paths=[str(path)])
    with pytest.raises(ValueError, match="format"):
        SOURCES["table"].list_units(paths=[str(path)], format="tall")
    with pytest.raises(KeyError, match="ucr_tsv"):
        list(read_source("nope"))
