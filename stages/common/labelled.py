"""The labelled view of curated rows that fine-tuning and evaluation share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from domains.base import is_test, is_train
from stages.common.rows import table_to_rows
from stages.common.storage import join, read_table


@dataclass
class Split:
    xs: list[np.ndarray]
    y: np.ndarray  # int class indices
    groups: np.ndarray


@dataclass
class Labelled:
    train: Split
    test: Split
    classes: list[str]


def load_labelled(data_dir: str) -> Labelled:
    """Train (every non-test row with a label) and test rows of ``curated/``, labels as indices.

    Classes are taken from the training split only; a test row of an unseen class is an error
    (the probe could never predict it and accuracy would silently sag).
    """
    rows = [r for r in table_to_rows(read_table(join(data_dir, "curated"))) if r.get("label") is not None]
    train = [r for r in rows if is_train(r)]
    test = [r for r in rows if is_test(r)]
    if not train or not test:
        raise ValueError(f"need labelled train and test rows, found {len(train)} train / {len(test)} test")
    classes = sorted({r["label"] for r in train})
    index = {c: i for i, c in enumerate(classes)}
    unseen = sorted({r["label"] for r in test} - set(index))
    if unseen:
        raise ValueError(f"test labels never seen in training: {unseen[:5]}")

    def split(rs: list[dict]) -> Split:
        return Split(
            xs=[r["x"] for r in rs],
            y=np.array([index[r["label"]] for r in rs], dtype=np.int64),
            groups=np.array([r.get("group") or r["id"] for r in rs]),
        )

    return Labelled(split(train), split(test), classes)
