"""SemDeDup's embeddings, computed once per encoder and data, kept as a declared DVC output.

Embedding every training row is the expensive part of SemDeDup and balancing (an encoder forward
pass per row); the thresholds, cluster count and balancing cap only decide what to do with the
embeddings. So curate keeps them in ``data/<recipe>/embeddings/`` (an output of the curate stage
in dvc.yaml, ``persist: true`` so DVC leaves it in place when curate reruns):

- ``signature.json``: what determines an embedding: the domain, the encoder's configuration (the
  recipe's ``encoder`` plus what the domain derives from the data, e.g. channels), the pretrained
  encoder's path *and the hash of its files*, the seed of a random-init encoder, and the hash of the
  code that builds and runs it (the domain package, ``stages/common/encoders.py``). Thresholds,
  ``clusters``, ``kmeans_iters``, balancing and ``embedding.batch_size`` are deliberately absent.
- ``part-*.parquet``: one row per embedded training row: ``id``, ``hash`` (the row's content
  hash, ``stages.curate.dedup.content_hash``) and ``emb`` (one shard in-process, several from Ray).

A row's cached embedding is reused when the signature matches and its id and content hash are in
the cache; every other row is embedded again. Which rows are embedded depends on the data only:
every training row that passes the quality filter (the later rules — exact, leakage, near dedup —
only pick from them), so the cache is a function of the data and the encoder, and changing a
near-dedup threshold does not re-embed either. A changed encoder or changed code invalidates all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from domains import get_domain
from stages.common.schema import Recipe
from stages.common.sources import domain_package, python_files, sources_sha
from stages.common.storage import atomic_dir, exists, join, open_fs, read_json, write_json

#: the cache folder inside ``data/<recipe>/`` (declared in dvc.yaml)
FOLDER = "embeddings"
SIGNATURE = "signature.json"
#: the in-process path's one shard (the Ray path writes ``part-<task>-<block>.parquet``)
SHARD = "part-00000.parquet"


def encoder_cfg(recipe: Recipe, x0: np.ndarray) -> dict[str, Any]:
    """The embedder's configuration: the recipe's encoder plus what the domain reads off the data."""
    return {**recipe.encoder, **get_domain(recipe.domain).data_args(x0)}


def _tree_sha(uri: str) -> str:
    """Hash of every file's relative path and bytes under ``uri`` (a pretrained encoder's folder)."""
    fs, path = open_fs(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return "missing"
    files = (
        [info]
        if info.type == pafs.FileType.File
        else fs.get_file_info(pafs.FileSelector(path, recursive=True))
    )
    h = hashlib.sha256()
    for f in sorted((f for f in files if f.type == pafs.FileType.File), key=lambda f: f.path):
        h.update(f.path[len(path) :].encode())
        with fs.open_input_stream(f.path) as s:
            h.update(s.read())
    return h.hexdigest()


def _code_sha(domain_name: str) -> str:
    """Hash of the code that builds and runs the embedder: the domain's package and the encoder helpers."""
    from stages.common import encoders

    helpers = Path(encoders.__file__ or "")
    return sources_sha(
        [*python_files(domain_package(domain_name), recursive=True), (f"common/{helpers.name}", helpers)]
    )


def signature(recipe: Recipe, enc_cfg: dict[str, Any]) -> dict[str, Any]:
    """Everything an embedding depends on besides the row itself (and nothing else)."""
    pretrained = recipe.curate.embedding.encoder
    return {
        "domain": recipe.domain,
        "encoder": json.loads(json.dumps(enc_cfg, sort_keys=True, default=str)),
        "pretrained": pretrained,
        "pretrained_sha": _tree_sha(pretrained) if pretrained else None,
        # only a random-init encoder depends on the seed
        "seed": None if pretrained else recipe.curate.seed,
        "code_sha": _code_sha(recipe.domain),
    }


def keys(ids: list[str], hashes: list[str]) -> list[str]:
    """One key per row: its id and content hash (a changed row under the same id is a new row)."""
    return [f"{i}\x00{h}" for i, h in zip(ids, hashes, strict=True)]


def shards(folder: str) -> list[str]:
    """The cache's Parquet shards, sorted (full URIs when ``folder`` is one)."""
    fs, path = open_fs(folder)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    found = sorted(f.path for f in fs.get_file_info(pafs.FileSelector(path)) if f.path.endswith(".parquet"))
    return [f if "://" not in folder else folder.split("://")[0] + "://" + f for f in found]


def matches(folder: str, sig: dict[str, Any]) -> bool:
    """Whether ``folder`` holds embeddings made under ``sig``."""
    return (
        exists(join(folder, SIGNATURE)) and read_json(join(folder, SIGNATURE)) == sig and bool(shards(folder))
    )


def read(folder: str, columns: list[str] | None = None) -> pa.Table:
    """The cache's rows (all shards), optionally only some columns."""
    fs, _ = open_fs(folder)
    parts = [pq.read_table(open_fs(f)[1], filesystem=fs, columns=columns) for f in shards(folder)]
    return pa.concat_tables(parts)


def load(folder: str, sig: dict[str, Any]) -> tuple[list[str], np.ndarray] | None:
    """The cached keys and ``[N, D]`` embeddings, or None when there is no cache for ``sig``."""
    if not matches(folder, sig):
        return None
    t = read(folder)
    emb = t.column("emb").combine_chunks().flatten().to_numpy().reshape(len(t), -1).astype(np.float32)
    return keys(t.column("id").to_pylist(), t.column("hash").to_pylist()), emb


def table(ids: list[str], hashes: list[str], emb: np.ndarray) -> pa.Table:
    """The cache's table (also the schema the Ray path writes)."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "hash": pa.array(hashes, pa.string()),
            "emb": pa.FixedSizeListArray.from_arrays(
                pa.array(emb.reshape(-1)), emb.shape[1] if emb.ndim == 2 else 0
            ),
        }
    )


def save(folder: str, sig: dict[str, Any], ids: list[str], hashes: list[str], emb: np.ndarray) -> None:
    """Replace the cache in one move (rows sorted by id, so equal inputs give equal bytes)."""
    order = np.argsort(np.array(ids, dtype=object).astype(str), kind="stable")
    t = table([ids[i] for i in order], [hashes[i] for i in order], emb[order])
    with atomic_dir(folder) as tmp:
        fs, path = open_fs(join(tmp, SHARD))
        pq.write_table(t, path, filesystem=fs)
        write_json(join(tmp, SIGNATURE), sig)


def ensure_exists(folder: str) -> None:
    """Create an empty cache folder when there is none (the declared DVC output must exist even when
    no rule needs embeddings); an existing cache is left as it is, to be reused later."""
    if not exists(folder):
        with atomic_dir(folder) as tmp:
            write_json(join(tmp, SIGNATURE), {"empty": True})


def reuse(
    folder: str, sig: dict[str, Any], ids: list[str], hashes: list[str]
) -> tuple[np.ndarray | None, np.ndarray, bool]:
    """Cached embeddings for the rows ``(ids, hashes)``: ``(emb [N, D] or None, missing mask [N],
    whether the cache holds exactly these rows)``; missing rows have zeros in ``emb``."""
    cached = load(folder, sig)
    if cached is None:
        return None, np.ones(len(ids), bool), False
    index = {k: i for i, k in enumerate(cached[0])}
    pos = np.array([index.get(k, -1) for k in keys(ids, hashes)], np.int64)
    emb = np.zeros((len(ids), cached[1].shape[1]), np.float32)
    emb[pos >= 0] = cached[1][pos[pos >= 0]]
    return emb, pos < 0, bool((pos >= 0).all()) and len(index) == len(ids)
