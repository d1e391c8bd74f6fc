"""The labelled view of the rows that fine-tuning and evaluation share.

One rule set, used by both stages so they always agree on which rows they fit and score:

- Which training rows (``evaluate.probe_rows``, :func:`label_rows`): with a published split (some
  row marked test, e.g. UCR's ``_TRAIN``/``_TEST`` files) every training row ingest kept
  (``ingested/``), whatever curation removed from the pretraining pool — the published protocol;
  otherwise the curated training rows. Test rows are always the curated ones: curation never
  removes one without failing or counting it, so they are the published test split.

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

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from domains.base import is_test, is_train
from stages.common.cli import StageError
from stages.common.rows import table_to_rows, train_mask
from stages.common.splits import group_split
from stages.common.storage import exists, join, read_bytes, read_table

#: share of the labelled groups held out as the test split when no row is marked test
CARVE_FRACTION = 0.2
#: fixed so that the finetune and evaluate stages carve the same split
CARVE_SEED = 0
#: fewest labelled rows from which a test split is carved (both sides need room for the classes)
MIN_CARVE_ROWS = 10


ProbeRowsMode = Literal["auto", "published", "curated"]


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
    #: rows in all (training and test), and how many carry a label
    n_rows: int = 0
    n_labelled: int = 0
    #: which training rows were used and what curation removed (None: built from rows in memory)
    source: RowSource | None = None

    def describe(self) -> str:
        """One sentence for logs and reports: where the labels and the test split come from."""
        how = (
            f"no row is marked test, so the test split was carved from the labelled rows by group "
            f"({CARVE_FRACTION:.0%} of the groups, stratified, seed {CARVE_SEED})"
            if self.carved
            else "test split: the rows marked test"
        )
        noun = "curated" if self.source is None else self.source.noun
        text = f"{self.n_labelled} of {self.n_rows} {noun} rows carry a label; {how}"
        if self.n_unseen_test:
            text += (
                f"; {self.n_unseen_test} test rows of classes never seen in training "
                f"({', '.join(map(str, self.unseen_classes[:5]))}) are excluded from the probes"
            )
        if self.source is not None:
            text += f"; {self.source.describe()}"
        return text + "."


@dataclass
class RowSource:
    """Where the label-based work's training rows come from, and what curation removed from them."""

    #: the resolved ``evaluate.probe_rows``: "published" or "curated"
    mode: str
    #: what the recipe asked for ("auto", "published" or "curated")
    requested: str
    #: training rows ingest kept (the published training split); None when not known
    train_rows_ingested: int | None
    #: training rows curation kept (the pretraining pool)
    train_rows_curated: int
    #: training rows curation removed from the pretraining pool; None when not known
    train_rows_removed_by_curation: int | None

    @property
    def noun(self) -> str:
        return "published" if self.mode == "published" else "curated"

    def describe(self) -> str:
        removed = self.train_rows_removed_by_curation
        if self.mode == "published":
            return (
                f"probes and fine-tuning fit on the published training split: all "
                f"{self.train_rows_ingested} training rows ingest kept; curation removed {removed} of "
                f"them from the pretraining pool only"
            )
        lost = "" if removed is None else f"; curation removed {removed} training rows"
        return (
            f"probes and fine-tuning fit on the {self.train_rows_curated} curated training rows "
            f"(evaluate.probe_rows={self.requested}){lost}"
        )

    def metrics(self) -> dict:
        return asdict(self)


def label_rows(
    data_dir: str, mode: ProbeRowsMode = "auto", curated: list[dict] | None = None
) -> tuple[list[dict], RowSource]:
    """The rows the label-based work uses (``evaluate.probe_rows``) and where they come from.

    ``curated``: the curated rows when the caller has them in memory already. "published" (and
    "auto" when some row is marked test) takes the training rows from ``ingested/`` and the test
    rows from ``curated/``; "curated" takes both from ``curated/``.
    """
    if curated is None:
        curated = table_to_rows(read_table(join(data_dir, "curated")))
    has_split = any(is_test(r) for r in curated)
    resolved = mode if mode != "auto" else ("published" if has_split else "curated")
    curated_train = [r for r in curated if is_train(r)]
    if resolved == "curated":
        return curated, RowSource("curated", mode, None, len(curated_train), _removed_by_curation(data_dir))
    if not has_split:
        raise StageError(
            "evaluate.probe_rows=published: no row is marked test, so the source declares no published "
            "split to keep; use evaluate.probe_rows=auto or curated"
        )
    ingested = join(data_dir, "ingested")
    if not exists(ingested):
        raise StageError(
            f"evaluate.probe_rows={mode}: {ingested} (the rows ingest kept) is missing; run ingest, "
            "or set evaluate.probe_rows=curated"
        )
    table = read_table(ingested)
    published = table_to_rows(table.filter(train_mask(table.column("split"))))
    kept = {str(r["id"]) for r in curated_train}
    missing = kept - {str(r["id"]) for r in published}
    if missing:  # curation only removes rows; a curated training row ingest never wrote is stale data
        raise StageError(
            f"{len(missing)} curated training rows (e.g. {sorted(missing)[0]!r}) are not in {ingested}: "
            "curated/ is older than ingested/; rerun curate"
        )
    test = [r for r in curated if is_test(r)]
    source = RowSource("published", mode, len(published), len(curated_train), len(published) - len(kept))
    return published + test, source


def _removed_by_curation(data_dir: str) -> int | None:
    """Training rows curation removed, from ``curation_report.json`` (None when it is absent)."""
    uri = join(data_dir, "curated", "curation_report.json")
    if not exists(uri):
        return None
    rep = json.loads(read_bytes(uri))
    if "train_rows_in" not in rep:
        return None
    return int(rep["train_rows_in"]) - int(rep["train_rows_out"])


def load_labelled(data_dir: str, probe_rows: ProbeRowsMode = "auto") -> Labelled:
    """Labelled train and test rows (``evaluate.probe_rows`` chooses the training rows, see
    :func:`label_rows`), labels as class indices.

    Raises :class:`NoLabels` (a one-line reason) when there is nothing to fit or score.
    """
    rows, source = label_rows(data_dir, probe_rows)
    return labelled_from_rows(rows, source)


def labelled_from_rows(rows: list[dict], source: RowSource | None = None) -> Labelled:
    """:func:`load_labelled` on rows already in memory (``source``: where they came from)."""
    labelled = [r for r in rows if r.get("label") is not None]
    train = [r for r in labelled if is_train(r)]
    test = [r for r in labelled if is_test(r)]
    noun = "curated" if source is None else source.noun
    if not labelled:
        raise NoLabels(f"none of the {len(rows)} {noun} rows carries a label")
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
        source=source,
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
