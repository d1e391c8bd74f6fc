"""Property-based fuzzing of the time-series readers through ingest's per-unit path.

Whatever bytes a user's file holds, reading a unit never raises: every row comes back either kept
(valid, finite, normalised) or quarantined with a reason, and a file that cannot be parsed at all is
quarantined as a whole with its reason. For line-oriented files that do parse, no row is lost:
kept + quarantined = lines.
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import check_records, fuzz_examples, read_records

SETTINGS = settings(
    max_examples=fuzz_examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "abc", "1e400", "0x10", " ", '"', "1,5"]),
)
line = st.tuples(st.sampled_from(["1", "2", "-1", "a", ""]), st.lists(cell, min_size=0, max_size=12))


def _read(source: str, unit: dict) -> list[dict]:
    return read_records("timeseries", source, unit)


def _check_records(records: list[dict]) -> None:
    def check_x(x: np.ndarray) -> None:
        assert x.ndim == 2 and x.dtype == np.float32 and np.isfinite(x).all()

    check_records(records, check_x)


@SETTINGS
@given(lines=st.lists(line, min_size=1, max_size=8))
def test_ucr_tsv_never_crashes_and_loses_no_row(lines: list[tuple[str, list[str]]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "Fuzz"))
        path = os.path.join(d, "Fuzz", "Fuzz_TRAIN.tsv")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines("\t".join([label, *cells]) + "\n" for label, cells in lines)
        records = _read("ucr_tsv", {"path": path, "name": "Fuzz", "split": "train"})
    _check_records(records)
    unreadable = [r for r in records if r["id"].startswith("unit:")]
    if not unreadable:
        # Only a line of nothing but spaces is blank (skipped); every other line, even one holding
        # just a tab, is one row, kept or quarantined with its reason.
        text = ["\t".join([label, *cells]) for label, cells in lines]
        assert len(records) == sum(1 for t in text if t.replace(" ", ""))


@SETTINGS
@given(data=st.binary(min_size=0, max_size=400), suffix=st.sampled_from([".ts", ".csv", ".tsv"]))
def test_random_bytes_are_quarantined_not_fatal(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        if suffix == ".tsv":
            os.makedirs(os.path.join(d, "Fuzz"))
            path = os.path.join(d, "Fuzz", "Fuzz_TEST.tsv")
            unit, source = {"path": path, "name": "Fuzz", "split": "test"}, "ucr_tsv"
        elif suffix == ".ts":
            path = os.path.join(d, "fuzz_TRAIN.ts")
            unit, source = {"path": path, "split": "train"}, "ts_file"
        else:
            path = os.path.join(d, "fuzz.csv")
            unit, source = {"path": path, "format": "wide"}, "table"
        with open(path, "wb") as f:
            f.write(data)
        records = _read(source, unit)
    _check_records(records)


@SETTINGS
@given(
    values=st.lists(
        st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=30),
        min_size=1,
        max_size=6,
    )
)
def test_wide_csv_rows_with_nan_or_inf_are_quarantined_with_a_reason(values: list[list[float]]) -> None:
    width = max(len(v) for v in values)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "series.csv")
        with open(path, "w", encoding="utf-8") as f:
            f.write(",".join(["id", "label", *[f"t{i}" for i in range(width)]]) + "\n")
            for i, v in enumerate(values):
                cells = [repr(x) for x in v] + [""] * (width - len(v))
                f.write(",".join([f"s{i}", "a", *cells]) + "\n")
        records = _read("table", {"path": path, "format": "wide"})
    _check_records(records)
    assert len(records) == len(values)
    for v, r in zip(values, sorted(records, key=lambda r: int(r["id"].rsplit("s", 1)[-1])), strict=True):
        interior = v[: max((i for i, x in enumerate(v) if not math.isnan(x)), default=-1) + 1]
        if any(math.isinf(x) or math.isnan(x) for x in interior):
            assert r["reason"] is not None, (v, r)
