"""Validation mode: choose hyperparameters without ever touching the published test set.

With ``data.holdout: validation`` ingest drops every row of the published test split and marks a
seeded, stratified, group-safe ``data.val_fraction`` of the published *training* rows as the test
split instead (``split: "test"``; :func:`stages.common.splits.group_split`, seed ``data.val_seed``).
Every later stage runs unchanged — pretraining sees only the remaining training rows, probes are
scored on the validation rows — and the published test rows cannot leak, because they are never
written. Score the chosen configuration once on the real test split with ``data.holdout: none``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from domains.base import TEST_SPLIT, is_test
from stages.common.cli import StageError
from stages.common.rows import train_expr
from stages.common.splits import group_split

#: ``data.holdout`` values: ``none`` keeps the published splits; ``validation`` replaces the test
#: split by a part of the training split
HOLDOUTS = ("none", "validation")


def validation_ids(records: Iterable[dict[str, Any]], val_fraction: float, seed: int) -> set[str]:
    """Ids of the training rows among ``records`` (``id``, ``label``, ``group``, ``split``) that
    form the validation split: stratified by label, no ``group`` on both sides, deterministic."""
    train = [r for r in records if not is_test(r)]
    if len(train) < 2:
        raise ValueError(f"data.holdout=validation needs at least 2 training rows, got {len(train)}")
    # unlabelled rows stratify as their own class; a missing group is the row's own group
    y = np.asarray(["" if r.get("label") is None else str(r["label"]) for r in train])
    groups = np.asarray([str(r.get("group") or r["id"]) for r in train])
    _, val = group_split(groups, y, val_fraction, seed)
    return {str(train[i]["id"]) for i in val}


def relabel(row: dict[str, Any], val: set[str]) -> dict[str, Any]:
    """``row`` with ``split: "test"`` when it is a validation row, else unchanged."""
    return {**row, "split": TEST_SPLIT} if row["id"] in val else row


def relabel_table(t: pa.Table, val: set[str]) -> pa.Table:
    """:func:`relabel` on an Arrow batch: the other columns keep their types (a Python row map
    widens float32 ``x`` to float64)."""
    is_val = pc.is_in(t.column("id"), value_set=pa.array(sorted(val), type=pa.string()))
    split = pc.if_else(is_val, pa.scalar(TEST_SPLIT), pc.cast(t.column("split"), pa.string()))
    return t.set_column(t.schema.get_field_index("split"), "split", split)


def apply_rows(rows: list[dict[str, Any]], val_fraction: float, seed: int) -> list[dict[str, Any]]:
    """Validation mode on an in-memory list of rows (the same rule as :func:`apply`)."""
    val = validation_ids(rows, val_fraction, seed)
    return [relabel(r, val) for r in rows if not is_test(r)]


def apply(ds: Any, data_cfg: Any) -> tuple[Any, dict[str, Any]]:
    """Apply ``data_cfg.holdout`` to a Ray Dataset of encoded rows; return it and metrics for
    ``ingest.json`` (empty when the published splits are kept)."""
    if data_cfg.holdout == "none":
        return ds, {}
    meta = ds.select_columns(["id", "label", "group", "split"]).take_all()
    try:
        val = validation_ids(meta, data_cfg.val_fraction, data_cfg.val_seed)
    except ValueError as e:
        raise StageError(f"data.holdout=validation: {e}") from None
    n_test = sum(is_test(r) for r in meta)
    out = ds.filter(expr=train_expr()).map_batches(
        relabel_table, fn_kwargs={"val": val}, batch_format="pyarrow"
    )
    info = {
        "holdout": data_cfg.holdout,
        "holdout_published_test_dropped": n_test,
        "holdout_validation_rows": len(val),
        "holdout_training_rows": len(meta) - n_test - len(val),
    }
    return out, info
