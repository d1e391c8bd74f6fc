"""Storage behind local paths and URIs (``s3://``, ``gs://``, ``file://``) through ``pyarrow.fs``.

Every stage writes its outputs atomically: into a temporary sibling, then one rename, so neither
DVC nor the next stage ever sees a half-written output as complete.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from stages.common.rows import SCHEMA


def join(*parts: str) -> str:
    head, *rest = parts
    return "/".join([head.rstrip("/"), *(p.strip("/") for p in rest)])


def open_fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path)`` for a local path or a URI pyarrow understands."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def exists(uri: str) -> bool:
    fs, path = open_fs(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _replace(fs: pafs.FileSystem, tmp: str, path: str) -> None:
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)
    fs.move(tmp, path)


@contextlib.contextmanager
def atomic_dir(uri: str) -> Iterator[str]:
    """Yield a temporary directory URI; on success it replaces ``uri`` in one move."""
    fs, path = open_fs(uri)
    parent = os.path.dirname(path.rstrip("/"))
    fs.create_dir(parent, recursive=True)
    tmp = f"{path.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    fs.create_dir(tmp, recursive=True)
    tmp_uri = tmp if "://" not in uri else uri.split("://")[0] + "://" + tmp
    try:
        yield tmp_uri
    except BaseException:
        fs.delete_dir(tmp)
        raise
    _replace(fs, tmp, path)


def write_bytes(uri: str, data: bytes) -> None:
    fs, path = open_fs(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    _replace(fs, tmp, path)


def read_bytes(uri: str) -> bytes:
    fs, path = open_fs(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def json_safe(obj: Any) -> Any:
    """``obj`` with NumPy scalars as Python numbers and every non-finite float (NaN, ±inf) as ``None``.

    JSON has no NaN: ``json.dumps`` would write the bare token ``NaN``, which jq, JavaScript and
    strict parsers reject, so one undefined figure (a Dice over classes absent from every test
    patch, an R² of a constant target) would make a whole metrics file unreadable to them.
    ``null`` is JSON's "no value", which ``dvc metrics show`` prints as ``-``."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # NumPy / torch scalars
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def write_json(uri: str, obj: Any) -> None:
    """Strict JSON (non-finite numbers as ``null``: :func:`json_safe`), written atomically."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=True, default=float, allow_nan=False)
    write_bytes(uri, (text + "\n").encode())


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode())


def write_table(uri: str, table: pa.Table) -> None:
    """Write one Parquet file atomically."""
    fs, path = open_fs(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    pq.write_table(table, tmp, filesystem=fs)
    _replace(fs, tmp, path)


def read_table(uri: str) -> pa.Table:
    """Read a Parquet file or a directory of shards (sorted, so row order is deterministic)."""
    fs, path = open_fs(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(uri)
    if info.type == pafs.FileType.File:
        return pq.read_table(path, filesystem=fs, schema=SCHEMA)
    files = sorted(
        f.path
        for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
        if f.type == pafs.FileType.File and f.path.endswith(".parquet")
    )
    if not files:
        return SCHEMA.empty_table()
    return pads.dataset(files, filesystem=fs, schema=SCHEMA, format="parquet").to_table()
