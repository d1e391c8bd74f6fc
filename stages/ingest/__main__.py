"""Ingest: a domain source → ``data/<recipe>/ingested/`` Parquet shards (Ray Data).

Units (usually files) are read in parallel Ray Data tasks. Every row is validated by the domain;
bad rows and unreadable units go to ``rejected.jsonl`` with their reason — nothing is dropped
silently — and the stage fails when the rejected fraction exceeds the recipe's threshold.

Test rows are the benchmark: a test row that fails validation, or a test unit that cannot be read,
stops the stage with a one-line error naming it, unless ``ingest.test_rows: drop_and_report``
(then it is quarantined and counted as ``test_rows_rejected``). A unit that declares its split
``test`` (the UCR sources: one published ``_TEST`` file) publishes its size: the rows the reader
sees in it before validation are ``test_rows_published``, and fewer ingested test rows fail too.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ray.data import SaveMode
from ray.data.datasource import FilenameProvider
from ray.data.expressions import col

from domains import get_domain
from domains.base import TEST_SPLIT
from stages.common.cli import Dirs, StageError, main
from stages.common.config import list_source_units
from stages.common.ray_session import init_ray
from stages.common.rows import decode_x, encode_row, train_expr
from stages.common.schema import TRAIN_STATISTICS_MODES, Recipe
from stages.common.storage import atomic_dir, join, write_bytes, write_json
from stages.ingest import holdout


class ShardNames(FilenameProvider):
    """Deterministic shard names so that identical inputs give identical outputs (and DVC hashes)."""

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-{task_index:05d}.parquet"

    def get_filename_for_block(self, block: Any, write_uuid: str, task_index: int, block_index: int) -> str:
        return f"part-{task_index:05d}-{block_index:05d}.parquet"


def read_unit(
    record: dict[str, Any], domain_name: str, source_name: str, normalise: bool = True
) -> list[dict[str, Any]]:
    """Read one unit; return encoded rows, each with ``reason`` None (kept) or why it was rejected.

    ``normalise``: apply the domain's per-row normalisation (false when ingest fits it on the
    training rows later, or ``data.normalise`` is ``none``)."""
    domain = get_domain(domain_name)
    unit = json.loads(record["unit"])
    # a unit that declares split "test" is a published test file: its rows count towards its size
    published = unit.get("split") == TEST_SPLIT
    out = []
    try:
        rows = list(domain.sources[source_name].read_unit(unit))
    except Exception as e:  # a corrupt or unreadable unit is quarantined, not fatal
        reason = f"unreadable: {type(e).__name__}: {e}".splitlines()[0][:500]
        split = unit.get("split")
        return [
            {
                "id": f"unit:{record['unit']}",
                "reason": reason,
                "row": None,
                "split": split,
                "published": False,
            }
        ]
    for row in rows:
        try:
            reason = domain.validate(row)
            if reason is None and normalise:
                row = {**row, "x": domain.normalise(row["x"])}
                if not np.isfinite(row["x"]).all():  # normalisation must never invent NaN/Inf
                    reason = "normalisation produced non-finite values"
        except Exception as e:  # a row that breaks validation is quarantined like an unreadable one
            reason = f"invalid: {type(e).__name__}: {e}".splitlines()[0][:500]
        out.append(
            {
                "id": str(row["id"]),
                "reason": reason,
                "row": encode_row(row) if reason is None else None,
                "split": row.get("split"),
                "published": published,
            }
        )
    return out


def unnest_rows(t: pa.Table) -> pa.Table:
    """The ``row`` struct of kept records as the table's columns, in Arrow.

    A Python ``map(lambda r: r["row"])`` did this before: 5-8 s on the demo's audio, medical and RL
    rows (the bulk of ingest's write), and its round trip through Python floats widened ``x`` to
    float64 and ``shape`` to int64 in the stored shards, twice the bytes every later read decodes.
    Arrow keeps :func:`~stages.common.rows.encode_row`'s float32 / int32, as curate writes them."""
    rows = t.column("row")
    if not pa.types.is_struct(rows.type):  # a block whose every row was rejected: ``row`` typed null
        return pa.table({})
    return pa.Table.from_struct_array(rows)


def fit_and_apply_normaliser(ds: Any, domain: Any, mode: str) -> tuple[Any, dict[str, Any]]:
    """Fit the domain's normaliser on the training rows of ``ds`` (encoded rows) and apply it to
    every row; return the dataset and ``{"normalise": ...}`` for ``ingest.json``."""
    train = ds.filter(expr=train_expr()).select_columns(["x", "shape"])
    norm = domain.fit_normaliser((decode_x(r["x"], r["shape"]) for r in train.iter_rows()), mode)

    def apply(t: pa.Table) -> pa.Table:
        # Arrow in, Arrow out, the column type kept: a row-wise map returning numpy arrays would
        # turn ``x`` into Ray's tensor extension type, not the list column every stage reads.
        col = t.column("x").combine_chunks()
        values = col.values.to_numpy(zero_copy_only=False)
        offsets = col.offsets.to_numpy()
        # a normaliser may add channels (per_row_stats): new offsets and shapes, built as we go
        outs, shapes = [], []
        for i, shape in enumerate(t.column("shape").to_pylist()):
            y = norm(decode_x(values[offsets[i] : offsets[i + 1]], shape))
            outs.append(y.reshape(-1))
            shapes.append(list(y.shape))
        out = np.concatenate(outs) if outs else values[:0]
        new_offsets = np.concatenate([[0], np.cumsum([len(o) for o in outs])]).astype(offsets.dtype)
        x = type(col).from_arrays(
            pa.array(new_offsets, type=col.offsets.type), pa.array(out, type=col.type.value_type)
        )
        t = t.set_column(t.schema.get_field_index("x"), "x", x)
        shape_type = t.schema.field("shape").type
        return t.set_column(t.schema.get_field_index("shape"), "shape", pa.array(shapes, type=shape_type))

    described = norm.describe() if hasattr(norm, "describe") else {}
    print(f"ingest: normalise={mode}: {described.get('chosen', '?')} ({described.get('reason', '')})")
    return ds.map_batches(apply, batch_format="pyarrow"), {"normalise": {"mode": mode, **described}}


def scan(ds: Any) -> tuple[list[dict[str, Any]], dict[str, int], int]:
    """One pass over four small columns of the read records: the rejected rows (id, reason, split),
    the kept and published test-row counts, and how many rows were kept. (Separate ``take_all`` and
    ``count`` passes each cost a Ray Data execution, the count one over every kept row.)"""
    rejected: list[dict[str, Any]] = []
    kept = kept_test = published = 0
    for t in ds.select_columns(["id", "reason", "split", "published"]).iter_batches(batch_format="pyarrow"):
        split = pc.cast(t.column("split"), pa.string())  # all-null columns arrive typed null
        ok = pc.is_null(t.column("reason"))
        is_test = pc.fill_null(pc.equal(split, TEST_SPLIT), False)
        kept += pc.sum(pc.cast(ok, pa.int64())).as_py() or 0
        kept_test += pc.sum(pc.and_(is_test, ok)).as_py() or 0
        published += pc.sum(pc.cast(t.column("published"), pa.int64())).as_py() or 0
        bad = pc.invert(ok)
        cols = {"id": t.column("id"), "reason": t.column("reason"), "split": split}
        rejected += pa.table({k: pc.filter(v, bad) for k, v in cols.items()}).to_pylist()
    return rejected, {"test_rows": kept_test, "test_rows_published": published}, kept


def check_test_rows(
    recipe: Recipe, rejected: list[dict[str, Any]], counts: dict[str, int], published_units: int
) -> tuple[int, str | None]:
    """How many test rows were lost, and the error to stop with (None with drop_and_report or no loss)."""
    lost = sorted((r["id"], r["reason"]) for r in rejected if r.get("split") == TEST_SPLIT)
    short = counts["test_rows_published"] - counts["test_rows"] if published_units else 0
    n = max(len(lost), short)
    if recipe.ingest.test_rows == "drop_and_report" or not n:
        return n, None
    if lost:
        i, reason = lost[0]
        more = f" (and {len(lost) - 1} more test rows)" if len(lost) > 1 else ""
        return n, (
            f"test row {i!r} rejected: {reason}{more}; test rows are never dropped silently: fix the "
            "data, or set ingest.test_rows=drop_and_report"
        )
    return n, (
        f"{counts['test_rows']} test rows ingested but the published test files hold "
        f"{counts['test_rows_published']}; set ingest.test_rows=drop_and_report to accept fewer"
    )


def read_tasks(units: int, units_per_task: int) -> int:
    """Ray tasks that read ``units``: one per ``units_per_task`` units (at least one), at most 64."""
    return max(1, min(64, units // units_per_task))


def run(recipe: Recipe, dirs: Dirs) -> None:
    import ray

    # a listing problem (no file matches, wrong file type, missing demo data) is one ConfigError line
    units = list_source_units(recipe)

    init_ray(recipe.ray)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # deterministic output for identical input
    items = [{"unit": json.dumps(u, sort_keys=True)} for u in units]
    ds = ray.data.from_items(items, override_num_blocks=read_tasks(len(items), recipe.ingest.units_per_task))
    domain = get_domain(recipe.domain)
    mode = recipe.data.normalise
    from_train = domain.normalise_from_train and (mode == "auto" or mode in TRAIN_STATISTICS_MODES)
    per_row = mode == "per_row" or (mode == "auto" and not from_train)
    ds = ds.flat_map(
        read_unit,
        fn_kwargs={"domain_name": recipe.domain, "source_name": recipe.data.source, "normalise": per_row},
    )
    ds = ds.materialize()

    rejected, counts, n_kept = scan(ds)
    published_units = sum(u.get("split") == TEST_SPLIT for u in units)
    test_lost, test_error = check_test_rows(recipe, rejected, counts, published_units)
    rejected = [{"id": r["id"], "reason": r["reason"]} for r in rejected]
    # an expression, not a Python UDF: Arrow evaluates it (and Ray Data stops warning about UDFs)
    kept = ds.filter(expr=col("reason").is_null()).map_batches(unnest_rows, batch_format="pyarrow")
    total = n_kept + len(rejected)
    frac = len(rejected) / max(total, 1)
    # validation mode (data.holdout): published test rows dropped, part of the training rows -> test
    kept, holdout_metrics = holdout.apply(kept, recipe.data)
    # after the split: statistics come from training rows only (validation rows are not training)
    normalise_metrics = {"normalise": {"mode": mode, "chosen": "per_row" if per_row else "none"}}
    if from_train and n_kept:
        kept, normalise_metrics = fit_and_apply_normaliser(kept, domain, mode)

    out_dir = join(dirs.data, "ingested")
    with atomic_dir(out_dir) as tmp:
        if n_kept:
            kept.write_parquet(
                tmp,
                filename_provider=ShardNames(),
                min_rows_per_file=recipe.ingest.rows_per_shard,
                mode=SaveMode.OVERWRITE,  # into a fresh temporary dir: nothing to overwrite
            )
    write_bytes(
        join(dirs.data, "rejected.jsonl"),
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejected).encode(),
    )
    reasons = Counter(r["reason"].split(":")[0] for r in rejected)
    metrics = {
        "units": len(units),
        "rows": n_kept,
        "rejected": len(rejected),
        "rejected_fraction": round(frac, 6),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "test_rows": counts["test_rows"],
        "test_rows_rejected": test_lost,
        "test_rows_policy": recipe.ingest.test_rows,
        **holdout_metrics,
        **normalise_metrics,
    }
    if published_units:
        metrics["test_rows_published"] = counts["test_rows_published"]
    write_json(join(dirs.metrics, "ingest.json"), metrics)
    print(f"ingest: {n_kept} rows kept, {len(rejected)} rejected from {len(units)} units -> {out_dir}")
    # in validation mode every published test row is dropped anyway: none can be lost from a score
    if test_error and recipe.data.holdout == "none":
        raise StageError(test_error)
    if frac > recipe.ingest.max_rejected_fraction:
        raise StageError(
            f"{len(rejected)}/{total} rows rejected ({frac:.1%}) exceeds "
            f"ingest.max_rejected_fraction={recipe.ingest.max_rejected_fraction}; see "
            f"{join(dirs.data, 'rejected.jsonl')}"
        )


if __name__ == "__main__":
    sys.exit(main("ingest", run))
