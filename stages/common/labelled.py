"""The labelled view of curated rows that fine-tuning and evaluation share.

One rule set, used by both stages so they always agree on which rows they fit and score:

- Labelled test rows present (``split == "test"``): they are the test split, as published.
- No labelled test row (partly labelled or user data with no split): a test split is carved from
  the labelled training rows by ``group`` (stratified, seed ``CARVE_SEED``, ``CARVE_FRACTION`` of the
  groups), so no group sits on both sides.
- A test row whose class never appears among the training labels is excluded (a probe could never
  predict it): counted in :attr:`Labelled.n_unseen_test` and stated by the stages.
- Too few labels for any of this (none at all, one class, too few rows to carve): :class:`NoLabels`,
  whose message the stages print as ``no labels: ...`` and then skip their label-based work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from domains.base import is_test, is_train
from stages.common.rows import table_to_rows
from stages.common.splits import group_split
from stages.common.storage import join, read_table

#: share of the labelled groups held out as the test split when no row is marked test
CARVE_FRACTION = 0.2
#: fixed so that the finetune and evaluate stages carve the same split
CARVE_SEED = 0
#: fewest labelled rows from which a test split is carved (both sides need room for the classes)
MIN_CARVE_ROWS = 10


class NoLabels(ValueError):  # noqa: N818 - a condition, not a failure: the stages skip on it
    """The curated rows cannot support label-based work; ``str(e)`` says why, in one line."""


@dataclass
class Split:
    xs: list[np.ndarray]
    y: np.ndarray  # int class indices
    groups: np.ndarray
    ids: list[str] = field(default_factory=list)


@dataclass
class Labelled:
    train: Split
    test: Split
    classes: list[str]
    #: test rows left out because their class never appears in the training labels
    n_unseen_test: int = 0
    unseen_classes: list[str] = field(default_factory=list)
    #: True when the test split was carved from labelled training rows (no row was marked test)
    carved: bool = False
    #: curated rows in all, and how many carry a label
    n_rows: int = 0
    n_labelled: int = 0

    def describe(self) -> str:
        """One sentence for logs and reports: where the labels and the test split come from."""
        how = (
            f"no row is marked test, so the test split was carved from the labelled rows by group "
            f"({CARVE_FRACTION:.0%} of the groups, stratified, seed {CARVE_SEED})"
            if self.carved
            else "test split: the rows marked test"
        )
        text = f"{self.n_labelled} of {self.n_rows} curated rows carry a label; {how}"
        if self.n_unseen_test:
            text += (
                f"; {self.n_unseen_test} test rows of classes never seen in training "
                f"({', '.join(map(str, self.unseen_classes[:5]))}) are excluded from the probes"
            )
        return text + "."


def load_labelled(data_dir: str) -> Labelled:
    """Train and test rows of ``curated/`` that carry a label, labels as class indices.

    Raises :class:`NoLabels` (a one-line reason) when there is nothing to fit or score.
    """
    rows = table_to_rows(read_table(join(data_dir, "curated")))
    return labelled_from_rows(rows)


def labelled_from_rows(rows: list[dict]) -> Labelled:
    """:func:`load_labelled` on rows already in memory."""
    labelled = [r for r in rows if r.get("label") is not None]
    train = [r for r in labelled if is_train(r)]
    test = [r for r in labelled if is_test(r)]
    if not labelled:
        raise NoLabels(f"none of the {len(rows)} curated rows carries a label")
    if not train:
        raise NoLabels(f"the {len(test)} labelled rows are all test rows; no labelled training row")
    carved = not test
    if carved:
        train, test = _carve(train)
    classes = sorted({str(r["label"]) for r in train})
    if len(classes) < 2:
        raise NoLabels(f"the labelled training rows hold one class only ({classes[0]!r})")
    index = {c: i for i, c in enumerate(classes)}
    unseen = sorted({str(r["label"]) for r in test} - set(index))
    kept = [r for r in test if str(r["label"]) in index]
    if not kept:
        raise NoLabels(f"no labelled test row of a class seen in training (unseen: {unseen[:5]})")

    def split(rs: list[dict]) -> Split:
        return Split(
            xs=[r["x"] for r in rs],
            y=np.array([index[str(r["label"])] for r in rs], dtype=np.int64),
            groups=np.array([r.get("group") or r["id"] for r in rs]),
            ids=[str(r["id"]) for r in rs],
        )

    return Labelled(
        split(train),
        split(kept),
        classes,
        n_unseen_test=len(test) - len(kept),
        unseen_classes=unseen,
        carved=carved,
        n_rows=len(rows),
        n_labelled=len(labelled),
    )


def _carve(train: list[dict]) -> tuple[list[dict], list[dict]]:
    """Hold out a stratified share of the labelled groups as a test split."""
    if len(train) < MIN_CARVE_ROWS:
        raise NoLabels(
            f"only {len(train)} labelled rows and none marked test: too few to carve a test split "
            f"(need {MIN_CARVE_ROWS})"
        )
    groups = np.array([str(r.get("group") or r["id"]) for r in train])
    if np.unique(groups).shape[0] < 2:
        raise NoLabels("the labelled rows all share one group, so no test split can be carved by group")
    y = np.array([str(r["label"]) for r in train])
    fit, held = group_split(groups, y, CARVE_FRACTION, CARVE_SEED)
    return [train[i] for i in fit], [train[i] for i in held]
