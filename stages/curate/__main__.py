"""Curate: ``ingested/`` → ``curated/`` + ``curation_report.json`` + ``removed.jsonl``.

Rules run in order — quality filter, exact dedup, train/test leakage — and each removed row is
recorded with the rule and reason that removed it. The test split is never altered.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

from domains import get_domain
from pipelines.schema import Recipe
from stages.common.cli import Dirs, StageError, main
from stages.common.rows import rows_to_table, table_to_rows
from stages.common.storage import atomic_dir, join, read_table, write_bytes, write_json, write_table
from stages.curate.dedup import content_hash, exact_duplicates
from stages.curate.filters import quality_reasons
from stages.curate.leakage import leakage


def curate(recipe: Recipe, rows: list[dict]) -> tuple[list[dict], list[dict], dict]:
    """Return (kept rows, removed records, report)."""
    domain = get_domain(recipe.domain)
    cfg = recipe.curate
    removed: dict[int, str] = {}
    if cfg.quality_filter:
        removed.update(quality_reasons(domain, rows))
    hashes = [content_hash(r["x"]) for r in rows]
    alive = [i for i in range(len(rows)) if i not in removed]
    if cfg.exact_dedup:
        dup = exact_duplicates([rows[i] for i in alive], [hashes[i] for i in alive])
        removed.update({alive[j]: reason for j, reason in dup.items()})
    alive = [i for i in range(len(rows)) if i not in removed]
    leaks = leakage([rows[i] for i in alive], [hashes[i] for i in alive])
    if cfg.leakage == "drop_train":
        removed.update({alive[j]: reason for j, reason in leaks.items()})

    kept = [r for i, r in enumerate(rows) if i not in removed]
    records = [{"id": rows[i]["id"], "reason": removed[i]} for i in sorted(removed)]
    by_rule = Counter(reason.split(":")[0] for reason in removed.values())
    examples = [
        {"removed": rows[i]["id"], "reason": removed[i]}
        for i in sorted(removed)
        if not removed[i].startswith("quality")
    ][:10]
    splits = Counter(r.get("split") or "none" for r in kept)
    report = {
        "rows_in": len(rows),
        "rows_out": len(kept),
        "removed": len(removed),
        "removed_by_rule": dict(sorted(by_rule.items())),
        "leakage_found": len(leaks),
        "leakage_policy": cfg.leakage,
        "rows_out_by_split": dict(sorted(splits.items())),
        "examples": examples,
    }
    return kept, records, report


def run(recipe: Recipe, dirs: Dirs) -> None:
    rows = table_to_rows(read_table(join(dirs.data, "ingested")))
    kept, records, report = curate(recipe, rows)
    if rows and report["removed"] / len(rows) > recipe.curate.max_removed_fraction:
        raise StageError(
            f"curation removed {report['removed']}/{len(rows)} rows, more than "
            f"curate.max_removed_fraction={recipe.curate.max_removed_fraction}"
        )
    with atomic_dir(join(dirs.data, "curated")) as tmp:
        write_table(join(tmp, "part-00000.parquet"), rows_to_table(kept))
        write_json(join(tmp, "curation_report.json"), report)
    write_bytes(
        join(dirs.data, "removed.jsonl"),
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode(),
    )
    metrics = {k: report[k] for k in ("rows_in", "rows_out", "removed", "removed_by_rule", "leakage_found")}
    write_json(join(dirs.metrics, "curate.json"), metrics)
    print(f"curate: {report['rows_out']}/{report['rows_in']} rows kept; removed {report['removed_by_rule']}")


if __name__ == "__main__":
    sys.exit(main("curate", run))
