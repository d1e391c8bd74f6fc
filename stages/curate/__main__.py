"""Curate: ``ingested/`` → ``curated/`` (+ ``curation_report.json``, ``similarity.png``) + ``removed.jsonl``.

Rules run in order — quality filter, exact dedup and content leakage (content hash), group leakage,
near dedup (banded LSH over domain fingerprints), SemDeDup and cluster balancing (encoder
embeddings, k-means on training rows) — and each removed row is recorded with the rule and reason
that removed it. The test split is never altered: dedup and leakage rules only ever remove training
rows, and a test row that fails the quality filter stops the stage with a one-line error naming it
(``curate.test_rows: drop_and_report`` removes it instead and reports the count as
``test_rows_removed``); test rows influence which training rows are kept only through the leakage
rule. Up to ``curate.ray_min_rows`` rows the rules run in-process; above,
on Ray Data (``stages.curate.distributed``), streaming, with the same decisions.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from domains.base import TEST_SPLIT, is_test
from stages.common.cli import Dirs, StageError, main
from stages.common.rows import SCHEMA, rows_to_table, table_to_rows
from stages.common.schema import Recipe
from stages.common.storage import atomic_dir, join, open_fs, read_table, write_bytes, write_json, write_table
from stages.curate import cache
from stages.curate.near import HIST_BINS
from stages.curate.plot import similarity_png
from stages.curate.rules import Decisions, decide, near_cfg

EXAMPLES_PER_RULE = 5


def curate(recipe: Recipe, rows: list[dict]) -> tuple[list[dict], list[dict], dict]:
    """In-process: return (kept rows, removed records, report)."""
    d = decide(recipe, rows)
    kept = [r for r in rows if r["id"] not in d.removed]
    splits = Counter(r.get("split") or "none" for r in kept)
    return kept, records(d), report(recipe, d, len(rows), dict(splits))


def records(d: Decisions) -> list[dict[str, str]]:
    return [{"id": i, "reason": d.removed[i]} for i in sorted(d.removed)]


def report(recipe: Recipe, d: Decisions, rows_in: int, rows_out_by_split: dict[str, int]) -> dict[str, Any]:
    by_rule = Counter(reason.split(":")[0] for reason in d.removed.values())
    examples: dict[str, list[dict[str, str]]] = {}
    for i in sorted(d.removed):
        rule = d.removed[i].split(":")[0]
        if rule != "quality" and len(examples.setdefault(rule, [])) < EXAMPLES_PER_RULE:
            examples[rule].append({"removed": i, "reason": d.removed[i]})
    cfg = recipe.curate
    # every rule but the quality filter's drop_and_report removes training rows only: what the
    # training split (pretraining pool, probes and fine-tuning alike) lost, stated in so many rows
    train_out = sum(n for split, n in rows_out_by_split.items() if split != TEST_SPLIT)
    train_removed = len(d.removed) - d.test_rows_removed
    return {
        "rows_in": rows_in,
        "rows_out": rows_in - len(d.removed),
        "removed": len(d.removed),
        "removed_by_rule": dict(sorted(by_rule.items())),
        "train_rows_in": train_out + train_removed,
        "train_rows_out": train_out,
        "test_rows_removed": d.test_rows_removed,
        "test_rows_policy": cfg.test_rows,
        "leakage_found": d.leakage_found,
        "leakage_policy": cfg.leakage,
        "near_leakage_found": d.near_leakage_found,
        "near_leakage_policy": cfg.near_dedup.leakage,
        "rows_out_by_split": dict(sorted(rows_out_by_split.items())),
        "examples": examples,
        "near_dedup": near_cfg(recipe).model_dump() if cfg.near_dedup.enabled else None,
        "semdedup": cfg.semdedup.model_dump() if cfg.semdedup.enabled else None,
        "balance": cfg.balance.model_dump() if cfg.balance.enabled else None,
        "clusters": d.clusters,
        "similarity_histograms": {
            "bin_edges_cosine": HIST_BINS.round(6).tolist(),
            "near_candidate_pairs": d.hist_near.tolist(),
            "semantic_nearest_kept": d.hist_semantic.tolist(),
        },
        "similarity_plot": "similarity.png",
    }


def _files(uri: str) -> tuple[Any, list[str]]:
    import pyarrow.fs as pafs

    fs, path = open_fs(uri)
    sel = pafs.FileSelector(path, recursive=True)
    return fs, sorted(f.path for f in fs.get_file_info(sel) if f.path.endswith(".parquet"))


def run(recipe: Recipe, dirs: Dirs) -> None:
    ingested = join(dirs.data, "ingested")
    fs, files = _files(ingested)
    n = pads.dataset(files, filesystem=fs, schema=SCHEMA, format="parquet").count_rows() if files else 0
    embeddings = join(dirs.data, cache.FOLDER)  # SemDeDup's embeddings, reused across thresholds
    if n >= recipe.curate.ray_min_rows and n > 0:
        d, by_split = _run_ray(recipe, dirs, files, embeddings)
    else:
        rows = table_to_rows(read_table(ingested))
        d = decide(recipe, rows, embeddings)
        kept = [r for r in rows if r["id"] not in d.removed]
        by_split = dict(Counter(r.get("split") or "none" for r in kept))
        _check(recipe, d, n)
        _check_tests(d, rows)
        with atomic_dir(join(dirs.data, "curated")) as tmp:
            write_table(join(tmp, "part-00000.parquet"), rows_to_table(kept))
            _write_report(recipe, d, n, by_split, tmp)
    cache.ensure_exists(embeddings)  # a declared DVC output, even when no rule needed embeddings
    _write_records(recipe, dirs, d, n, by_split)


def _check(recipe: Recipe, d: Decisions, n: int) -> None:
    if n and len(d.removed) / n > recipe.curate.max_removed_fraction:
        raise StageError(
            f"curation removed {len(d.removed)}/{n} rows, more than "
            f"curate.max_removed_fraction={recipe.curate.max_removed_fraction}"
        )


def _check_tests(d: Decisions, rows: list[dict]) -> None:
    # a guard on the rules themselves: only the quality filter may remove a test row, and only when told
    gone = sorted(r["id"] for r in rows if is_test(r) and r["id"] in d.removed)
    if len(gone) > d.test_rows_removed:
        raise StageError(
            f"curation would remove test row {gone[0]!r} ({d.removed[gone[0]]}): a bug in a rule"
        )


def _write_report(recipe: Recipe, d: Decisions, n: int, by_split: dict[str, int], tmp: str) -> None:
    write_json(join(tmp, "curation_report.json"), report(recipe, d, n, by_split))
    write_bytes(join(tmp, "similarity.png"), similarity_png(recipe, d))


def _write_records(recipe: Recipe, dirs: Dirs, d: Decisions, n: int, by_split: dict[str, int]) -> None:
    write_bytes(
        join(dirs.data, "removed.jsonl"),
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in records(d)).encode(),
    )
    rep = report(recipe, d, n, by_split)
    metrics = {
        k: rep[k]
        for k in (
            "rows_in",
            "rows_out",
            "removed",
            "removed_by_rule",
            "train_rows_in",
            "train_rows_out",
            "test_rows_removed",
            "leakage_found",
            "near_leakage_found",
        )
    }
    write_json(join(dirs.metrics, "curate.json"), metrics)
    print(
        f"curate: {rep['rows_out']}/{rep['rows_in']} rows kept ({rep['train_rows_out']}/"
        f"{rep['train_rows_in']} training rows); removed {rep['removed_by_rule']}"
    )


def _run_ray(
    recipe: Recipe, dirs: Dirs, files: list[str], embeddings: str
) -> tuple[Decisions, dict[str, int]]:
    import ray

    from stages.common.ray_session import init_ray, shard_names
    from stages.curate.distributed import decide_ray

    init_ray(recipe.ray)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    d = decide_ray(recipe, files, embeddings)
    removed = pa.array(sorted(d.removed), pa.string())
    kept = ray.data.read_parquet(files).map_batches(
        lambda t: t.filter(pc.invert(pc.is_in(t.column("id"), value_set=removed))), batch_format="pyarrow"
    )
    by_split = Counter()
    for t in kept.select_columns(["split"]).iter_batches(batch_format="pyarrow", batch_size=None):
        by_split.update("none" if s is None else s for s in t.column("split").to_pylist())
    total = sum(by_split.values()) + len(d.removed)
    _check(recipe, d, total)
    with atomic_dir(join(dirs.data, "curated")) as tmp:
        kept.write_parquet(tmp, filename_provider=shard_names())
        _write_report(recipe, d, total, dict(by_split), tmp)
    return d, dict(by_split)


if __name__ == "__main__":
    sys.exit(main("curate", run))
