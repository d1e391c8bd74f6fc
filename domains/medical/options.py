"""Typed options of the medical domain (see ``domains/options.py``): each source's ``data.options``
(its own arguments plus the patch options every volume source shares), each encoder's arguments,
and ``evaluate.domain`` (the few-label segmentation protocol, ``tasks.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from domains.medical.encoders import ENCODERS
from domains.medical.readers import PATCH_DEFAULTS, SOURCES
from domains.medical.tasks import DEFAULTS
from domains.options import Options, encoder_models, source_models


class PatchOptions(Options):
    """The options ``_patch_opts`` accepts for every volume source."""

    patch_size: int = Field(PATCH_DEFAULTS["patch_size"], ge=8, le=256)
    patches_per_volume: int = Field(PATCH_DEFAULTS["patches_per_volume"], ge=0)
    #: resample to this voxel size in mm (one value or one per axis); None: keep the file's
    pixdim: float | Sequence[float] | None = PATCH_DEFAULTS["pixdim"]
    intensity: Literal["mri", "ct", "none"] = PATCH_DEFAULTS["intensity"]
    #: CT window [level, width] in HU
    window: Sequence[float] | None = PATCH_DEFAULTS["window"]
    seed: int = PATCH_DEFAULTS["seed"]


LrScale = Annotated[float, Field(ge=0)]


class EvaluateOptions(Options):
    """Few-label segmentation Dice (``tasks.segmentation_dice``)."""

    budgets: list[int] = Field(DEFAULTS["budgets"], min_length=1)
    steps: int = Field(DEFAULTS["steps"], ge=1)
    batch_size: int = Field(DEFAULTS["batch_size"], ge=1)
    lr: float = Field(DEFAULTS["lr"], gt=0)
    seeds: list[int] = Field(DEFAULTS["seeds"], min_length=1)
    max_test: int = Field(DEFAULTS["max_test"], ge=1)
    #: the encoder's learning rate as a fraction of ``lr``, for both arms or per arm; 0 freezes it
    encoder_lr_scale: LrScale | dict[Literal["pretrained", "random_init"], LrScale] = DEFAULTS[
        "encoder_lr_scale"
    ]
    #: the fresh decoder's normalisation, both arms
    decoder_norm: Literal["instance", "batch"] = DEFAULTS["decoder_norm"]


SOURCE_OPTIONS = source_models(SOURCES, "medical", base=PatchOptions)
ENCODER_OPTIONS = encoder_models(ENCODERS, "medical")
EVALUATE_OPTIONS = EvaluateOptions
