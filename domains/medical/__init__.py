"""Medical-volume domain (MONAI): 3D patches ``[1, D, H, W]`` of MRI/CT volumes.

Sources read NIfTI, DICOM series and MSD datalists through MONAI's ``LoadImaged`` (plus an offline
brain patch set from the MNI152 and Colin27 templates); views are MONAI random transforms; encoders
are MONAI's 3D ResNet, BasicUNet and SwinUNETR encoders; the domain's own evaluation is tissue
segmentation Dice after fine-tuning on very few labelled patches, pretrained vs random init.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from domains import register_domain
from domains.base import Domain, DomainResult, EvalContext, Row, ViewPolicy
from domains.medical.encoders import ENCODERS
from domains.medical.objectives import OBJECTIVES
from domains.medical.options import ENCODER_OPTIONS, EVALUATE_OPTIONS, SOURCE_OPTIONS
from domains.medical.readers import SOURCES
from domains.medical.tasks import segmentation_dice
from domains.medical.views import ENGINE as VIEWS
from domains.medical.volumes import decode_mask
from domains.options import build_named

FINGERPRINT_SIDE = 8
MIN_SIDE = 8


@register_domain("medical")
class MedicalDomain(Domain):
    sources = SOURCES
    source_options = SOURCE_OPTIONS
    encoder_options = ENCODER_OPTIONS
    evaluate_options = EVALUATE_OPTIONS
    tasks = ("classification", "segmentation")

    def validate(self, row: Row) -> str | None:
        x = row["x"]
        if x.ndim != 4:
            return f"expected a patch [channels, D, H, W], got shape {tuple(x.shape)}"
        if min(x.shape[1:]) < MIN_SIDE:
            return f"patch too small: shape {tuple(x.shape)} (need sides >= {MIN_SIDE})"
        if not np.isfinite(x).all():
            return f"non-finite voxels: {int((~np.isfinite(x)).sum())} of {x.size} are NaN/Inf"
        if float(x.std()) < 1e-6:
            return "constant patch (no contrast: background or an empty crop)"
        seg = (row.get("meta") or {}).get("seg")
        if seg is not None:
            try:
                decode_mask(seg, x.shape[1:])
            except ValueError as e:
                return f"segmentation mask does not match the patch shape {tuple(x.shape[1:])}: {e}"
        return None

    def fingerprint(self, xs: list[np.ndarray]) -> np.ndarray:
        """Each patch average-pooled to 8³ and flattened (intensities are already normalised)."""
        t = torch.from_numpy(np.stack([np.asarray(x, dtype=np.float32)[:1] for x in xs]))
        pooled = torch.nn.functional.adaptive_avg_pool3d(t, FINGERPRINT_SIDE)
        return pooled.reshape(len(xs), -1).numpy().astype(np.float32)

    def augment(self, x: np.ndarray, rng: np.random.Generator, policy: ViewPolicy) -> np.ndarray:
        return VIEWS.view(x, rng, policy)

    def data_args(self, x: np.ndarray) -> dict[str, Any]:
        return {"in_channels": int(x.shape[0])}

    def build_encoder(self, cfg: dict[str, Any]) -> nn.Module:
        return build_named(ENCODERS, cfg, "medical")

    def collate(self, xs: list[np.ndarray]) -> torch.Tensor:
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) != 1:
            raise ValueError(f"patches of different shapes in one batch: {sorted(shapes)[:3]}")
        return torch.from_numpy(np.stack(xs).astype(np.float32, copy=False))

    def objectives(self) -> dict[str, Any]:
        return dict(OBJECTIVES)

    def evaluate(self, ctx: EvalContext) -> DomainResult | None:
        """Tissue segmentation Dice (CSF/GM/WM) after fine-tuning with a few labelled patches."""
        options = dict((ctx.recipe.get("evaluate") or {}).get("domain") or {})
        return segmentation_dice(ctx, options)
