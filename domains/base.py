"""The Domain protocol: what a modality plug-in provides to the stages.

A *row* is the unit of data every stage exchanges::

    {"id": str, "x": np.ndarray, "label": str | None, "split": "train" | "test" | None,
     "group": str | None, "meta": dict}

``x`` is a float32 array whose shape is the domain's business (time series: ``[channels, time]``).
``group`` is what must never be split across train and test (patient, speaker, episode...).
Stages only ever talk to a domain through this protocol; domains never import stages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

Row = dict[str, Any]
ROW_KEYS = ("id", "x", "label", "split", "group", "meta")
TEST_SPLIT = "test"


# The one split rule every stage uses: a row is a test row only when its split says "test".
# A row with no split (unlabeled data, a user's own folder) is a training row.
def is_test(row: Row) -> bool:
    """True when ``row`` belongs to the held-out test split."""
    return row.get("split") == TEST_SPLIT


def is_train(row: Row) -> bool:
    """True for every row that is not a test row, including rows with no ``split`` at all."""
    return not is_test(row)


@dataclass(frozen=True)
class Source:
    """A named reader of real data.

    ``list_units(**options)`` cheaply enumerates independent units of work (usually files) so that
    ingest can spread them over Ray Data tasks; ``read_unit(unit)`` yields the rows of one unit.
    A unit that cannot be read raises; ingest quarantines it with the exception as its reason.
    """

    name: str
    list_units: Callable[..., list[dict[str, Any]]]
    read_unit: Callable[[dict[str, Any]], Iterator[Row]]
    description: str = ""


@dataclass
class ViewPolicy:
    """A named, parameterised augmentation policy, as listed in a recipe's ``views.policy``."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalContext:
    """What the evaluate stage hands a domain for its field's own protocol (see ``Domain.evaluate``).

    ``train_rows``/``test_rows`` (``x``, ``label``, ``group``, ``meta``) are the rows the probes use:
    with a published split the training rows ingest kept, else the curated ones
    (``evaluate.probe_rows``, stages/common/labelled.py); test rows are never used for fitting.
    ``encoders`` holds at least ``pretrained`` and ``random_init`` (eval mode); ``embed(encoder, xs)``
    turns samples into frozen features ``[N, D]``.
    ``features`` caches ``{encoder name: (train, test)}`` features already computed for the probes
    (empty when the domain has no classification task).
    """

    recipe: dict[str, Any]
    train_rows: list[Row]
    test_rows: list[Row]
    encoders: dict[str, nn.Module]
    embed: Callable[[nn.Module, list[np.ndarray]], np.ndarray]
    features: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    models_dir: str = ""
    data_dir: str = ""
    seed: int = 0
    #: ``map_runs(fn, shared, items)`` -> ``[fn(shared, item) for item in items]``, in order, for
    #: independent runs of a protocol (e.g. one fine-tune per label budget, seed and init; ``fn``
    #: module-level). The stage may run them as parallel Ray tasks; by default one after another.
    map_runs: Callable[[Callable[[Any, Any], Any], Any, Sequence[Any]], list[Any]] = field(
        default=lambda fn, shared, items: [fn(shared, item) for item in items]
    )


@dataclass
class DomainResult:
    """A domain's own evaluation: metrics merged into ``evaluate.json`` under ``domain`` and a
    Markdown section (tables, ``figures`` written next to the report as ``{file name: png bytes}``)."""

    metrics: dict[str, Any]
    markdown: str = ""
    figures: dict[str, bytes] = field(default_factory=dict)


@runtime_checkable
class Objective(Protocol):
    """A domain's own pretraining objective (``Domain.objectives()``), e.g. TS2Vec, AutoTCL, CURL.

    It replaces the shared view-pair + projection-head + registry-loss path: per step the loop calls
    ``v1, v2, ctx = make_views(batch, rng)``, encodes ``v1 + v2`` in one forward
    (``timestamps=True``: per-step representations) and minimises ``loss(h1, h2, len(v1[0]), ctx)``.
    """

    def make_views(
        self, batch: list[np.ndarray], rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[np.ndarray], Any]:
        """Two lists of views of ``batch`` and a context handed back to ``loss``."""
        ...

    def loss(self, h1: torch.Tensor, h2: torch.Tensor, length: int, ctx: Any) -> torch.Tensor:
        """The scalar loss from the representations of both view lists."""
        ...

    def instance_embeddings(self, reps: torch.Tensor, batch: int, length: int, ctx: Any) -> torch.Tensor:
        """One embedding per view ``[2B, D]`` from the step's representations (for diagnostics)."""
        ...


@runtime_checkable
class TrainableObjective(Objective, Protocol):
    """An objective with parameters of its own (an ``nn.Module``: CURL's bilinear W, AutoTCL's
    augmenter). It becomes the model's head, so the optimiser, DDP and checkpoints cover it."""

    def bind(self, encoder: nn.Module) -> None:
        """Size the objective's modules for ``encoder`` (called once, before the optimiser exists)."""
        ...


@runtime_checkable
class SteppedObjective(Protocol):
    """An objective that updates after every optimiser step (e.g. a momentum target's EMA)."""

    def after_step(self, encoder: nn.Module) -> None: ...


def check_objective(name: str, obj: object) -> Objective:
    """``obj`` as an :class:`Objective`, or a one-line error naming ``pretrain.loss``."""
    missing = [
        m for m in ("make_views", "loss", "instance_embeddings") if not callable(getattr(obj, m, None))
    ]
    if isinstance(obj, nn.Module) and not callable(getattr(obj, "bind", None)):
        missing.append("bind")
    if missing:
        raise TypeError(
            f"pretrain.loss={name}: the domain objective {type(obj).__name__} lacks {', '.join(missing)}"
        )
    return obj  # type: ignore[return-value]


@dataclass(frozen=True)
class LossCapabilities:
    """What a registry loss asks of the training loop (stages/common/losses).

    ``needs_inputs``: ``forward`` also wants the collated views as ``inputs=`` (a momentum target
    encodes them itself: BYOL, MoCo). ``multi_view``: ``forward`` takes every view at once
    (``loss(*views, n_global=...)``, SwAV) instead of being averaged over view pairs.
    """

    needs_inputs: bool = False
    multi_view: bool = False

    @classmethod
    def of(cls, loss: object) -> LossCapabilities:
        """A loss's declared capabilities (class attributes; undeclared ones are off)."""
        return cls(**{f: bool(getattr(loss, f, False)) for f in ("needs_inputs", "multi_view")})


class Domain(ABC):
    """Base class of every modality plug-in. Register subclasses with ``@register_domain(name)``."""

    name: ClassVar[str] = ""
    #: named readers: ``{"ucr_tsv": Source(...), ...}``
    sources: ClassVar[dict[str, Source]] = {}
    #: downstream evaluations this domain supports (names understood by the evaluate stage)
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    #: typed options (pydantic, unknown keys forbidden; see ``domains/options.py``), checked when a
    #: recipe loads so a mistake names its key before any work: each source's ``data.options``...
    source_options: ClassVar[dict[str, type[BaseModel]]] = {}
    #: ...each encoder's ``encoder:`` options by encoder name (the first is the default encoder)...
    encoder_options: ClassVar[dict[str, type[BaseModel]]] = {}
    #: ...and ``evaluate.domain`` (the options of ``evaluate``). Empty/None: not checked.
    evaluate_options: ClassVar[type[BaseModel] | None] = None
    #: how previews draw a sample: auto (from its shape), series, audio, points, volume or image
    preview_kind: ClassVar[str] = "auto"
    #: cosine of two fingerprints at or above which curation calls the rows near duplicates, when the
    #: recipe leaves ``curate.near_dedup.threshold`` unset: it depends on what the fingerprint resolves
    near_threshold: ClassVar[float] = 0.999
    #: whether ``data.normalise: auto`` fits the normalisation on the training rows
    #: (``fit_normaliser``, after the split) instead of normalising each row as it is read
    normalise_from_train: ClassVar[bool] = False

    @abstractmethod
    def validate(self, row: Row) -> str | None:
        """``None`` if the row is usable, else a short human-readable reason."""

    @abstractmethod
    def fingerprint(self, xs: list[np.ndarray]) -> np.ndarray:
        """Cheap fixed-size float32 vectors ``[B, F]`` for redundancy reduction."""

    @abstractmethod
    def augment(self, x: np.ndarray, rng: np.random.Generator, policy: ViewPolicy) -> np.ndarray:
        """One random view of ``x`` under ``policy``."""

    @abstractmethod
    def build_encoder(self, cfg: dict[str, Any]) -> nn.Module:
        """An ``nn.Module`` mapping a collated batch to embeddings ``[B, D]``.

        The module must expose ``embedding_dim: int``.
        """

    @abstractmethod
    def collate(self, xs: list[np.ndarray]) -> torch.Tensor:
        """Stack a list of samples (or views) into one batch tensor."""

    def small_crops(
        self, xs: list[np.ndarray], rng: np.random.Generator, policy: ViewPolicy, scale: float
    ) -> list[np.ndarray] | None:
        """Optional multi-crop hook (SwAV/DINO): one small view per sample of ``xs``.

        A small crop covers ``scale`` of the sample's extent and then gets ``policy``'s other
        augmentations; the crops of one call share one extent so that they collate together.
        ``None`` (the default) means the domain does not support small crops: the pretrain stage
        then refuses ``views.small_crops > 0`` with a one-line error.
        """
        return None

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Deterministic normalisation applied before hashing and encoding (identity by default)."""
        return x

    def fit_normaliser(self, train_xs: Iterable[np.ndarray], mode: str) -> Callable[[np.ndarray], np.ndarray]:
        """For ``data.normalise`` ``auto`` or ``train`` in a domain with ``normalise_from_train``:
        the normalisation to apply to every row (test rows too), fitted on the training rows' ``x``
        only. Its ``describe()``, if it has one, goes into ``ingest.json``."""
        raise NotImplementedError(f"the {self.name} domain has no normalisation fitted on training rows")

    def data_args(self, x: np.ndarray) -> dict[str, Any]:
        """Encoder arguments implied by the data (e.g. input channels), merged into the recipe's."""
        return {}

    def evaluate(self, ctx: EvalContext) -> DomainResult | None:
        """The field's own evaluation protocol beyond the shared classification probes.

        E.g. an MFCC baseline (audio), few-shot accuracy (point clouds), state-probe R² (RL),
        segmentation Dice (medical). ``None`` (the default) when the shared probes are the protocol.
        """
        return None

    def objectives(self) -> dict[str, Callable[..., Objective]]:
        """Domain-specific objectives (see :class:`Objective`) by ``pretrain.loss`` name, built with
        ``pretrain.loss_options`` as keyword arguments (none by default)."""
        return {}
