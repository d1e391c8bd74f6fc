"""Ingest: a domain source → ``data/<recipe>/ingested/`` Parquet shards (Ray Data).

Units (usually files) are read in parallel Ray Data tasks. Every row is validated by the domain;
bad rows and unreadable units go to ``rejected.jsonl`` with their reason — nothing is dropped
silently — and the stage fails when the rejected fraction exceeds the recipe's threshold.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

import numpy as np
from ray.data import SaveMode
from ray.data.datasource import FilenameProvider

from domains import get_domain
from stages.common.cli import Dirs, StageError, main
from stages.common.config import ConfigError
from stages.common.ray_session import init_ray
from stages.common.rows import encode_row
from stages.common.schema import Recipe
from stages.common.storage import atomic_dir, join, write_bytes, write_json
from stages.ingest import holdout


class ShardNames(FilenameProvider):
    """Deterministic shard names so that identical inputs give identical outputs (and DVC hashes)."""

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-{task_index:05d}.parquet"

    def get_filename_for_block(self, block: Any, write_uuid: str, task_index: int, block_index: int) -> str:
        return f"part-{task_index:05d}-{block_index:05d}.parquet"


def read_unit(record: dict[str, Any], domain_name: str, source_name: str) -> list[dict[str, Any]]:
    """Read one unit; return encoded rows, each with ``reason`` None (kept) or why it was rejected."""
    domain = get_domain(domain_name)
    unit = json.loads(record["unit"])
    out = []
    try:
        rows = list(domain.sources[source_name].read_unit(unit))
    except Exception as e:  # a corrupt or unreadable unit is quarantined, not fatal
        reason = f"unreadable: {type(e).__name__}: {e}".splitlines()[0][:500]
        return [{"id": f"unit:{record['unit']}", "reason": reason, "row": None}]
    for row in rows:
        try:
            reason = domain.validate(row)
            if reason is None:
                row = {**row, "x": domain.normalise(row["x"])}
                if not np.isfinite(row["x"]).all():  # normalisation must never invent NaN/Inf
                    reason = "normalisation produced non-finite values"
        except Exception as e:  # a row that breaks validation is quarantined like an unreadable one
            reason = f"invalid: {type(e).__name__}: {e}".splitlines()[0][:500]
        out.append(
            {"id": str(row["id"]), "reason": reason, "row": encode_row(row) if reason is None else None}
        )
    return out


def run(recipe: Recipe, dirs: Dirs) -> None:
    import ray

    domain = get_domain(recipe.domain)
    source = domain.sources[recipe.data.source]
    try:
        units = source.list_units(**recipe.data.options)
    except TypeError as e:
        raise ConfigError(f"data.options: {e}") from None
    except FileNotFoundError as e:  # missing data (or packages holding it): one line, not a traceback
        raise StageError(f"source {recipe.data.source!r}: {e}") from None
    if not units:
        raise StageError(f"source {recipe.data.source!r} found nothing to read with {recipe.data.options}")

    init_ray(recipe.ray)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # deterministic output for identical input
    items = [{"unit": json.dumps(u, sort_keys=True)} for u in units]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 64))
    ds = ds.flat_map(read_unit, fn_kwargs={"domain_name": recipe.domain, "source_name": recipe.data.source})
    ds = ds.materialize()

    rejected = ds.filter(lambda r: r["reason"] is not None).select_columns(["id", "reason"]).take_all()
    kept = ds.filter(lambda r: r["reason"] is None).map(lambda r: r["row"])
    n_kept = kept.count()
    total = n_kept + len(rejected)
    frac = len(rejected) / max(total, 1)
    # validation mode (data.holdout): published test rows dropped, part of the training rows -> test
    kept, holdout_metrics = holdout.apply(kept, recipe.data)

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
        **holdout_metrics,
    }
    write_json(join(dirs.metrics, "ingest.json"), metrics)
    print(f"ingest: {n_kept} rows kept, {len(rejected)} rejected from {len(units)} units -> {out_dir}")
    if frac > recipe.ingest.max_rejected_fraction:
        raise StageError(
            f"{len(rejected)}/{total} rows rejected ({frac:.1%}) exceeds "
            f"ingest.max_rejected_fraction={recipe.ingest.max_rejected_fraction}; see "
            f"{join(dirs.data, 'rejected.jsonl')}"
        )


if __name__ == "__main__":
    sys.exit(main("ingest", run))
