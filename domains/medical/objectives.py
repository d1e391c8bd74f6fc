"""Dense self-supervision for 3D patches: MONAI's SSL recipe (``pretrain.loss: ssl_recon``).

A port of the MONAI tutorial ``self_supervised_pretraining/vit_unetr_ssl`` (the recipe behind its
BTCV gain of 63.07 → 70.09 Dice with 6 labelled volumes) to the encoders the Dice fine-tune reuses:

* **views**: two corrupted copies of each patch. Each copy gets *one of* inpainting (6 holes of
  5–32 voxels, filled with noise) or outpainting (keep 6 boxes of 20–64 voxels, noise elsewhere),
  then, with probability 0.8, local shuffling (10 boxes of 8 voxels shuffled inside). Sizes are the
  tutorial's for 96³ crops, scaled to the patch side (MONAI ``RandCoarseDropout`` /
  ``RandCoarseShuffle`` inside ``OneOf``).
* **network**: the encoder's multi-scale features and a UNet decoder (the decoder the Dice
  segmenter builds, here with one output channel) reconstruct the clean patch. The decoder lives
  in the objective, so only the encoder is transferred, as with a projection head.
* **loss**: ``r + c · r`` with ``r`` the L1 reconstruction error (both views; the tutorial uses
  the first only) and ``c`` MONAI's ``ContrastiveLoss`` (NT-Xent, temperature 0.05) between the
  two views' flattened reconstructions, "the contrastive loss adjusted by the reconstruction loss"
  as in the tutorial. Negatives come from the worker's own batch.

Why: NT-Xent on pooled embeddings asks the encoder for a patch-level identity, which left the
tissue-segmentation Dice at random init's level (bench/results/domain_payoff.md). Reconstruction
asks every voxel's features to carry the local intensity structure a segmentation decoder reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from domains.medical.encoders import FeaturePyramid, SkipDecoder

#: the MONAI tutorial's corruption sizes, in voxels of its 96³ crops
TUTORIAL_SIDE = 96
INPAINT = {"holes": 6, "spatial_size": 5, "max_spatial_size": 32}
OUTPAINT = {"holes": 6, "spatial_size": 20, "max_spatial_size": 64}
SHUFFLE = {"holes": 10, "spatial_size": 8, "prob": 0.8}


def _scaled(params: dict[str, int], side: int) -> dict[str, int]:
    """A tutorial size ``params`` for a patch of ``side`` voxels (at least 1 voxel)."""
    out = dict(params)
    for key in ("spatial_size", "max_spatial_size"):
        if key in out:
            out[key] = max(1, round(out[key] * side / TUTORIAL_SIDE))
    return out


def corruption(side: int) -> Any:
    """The tutorial's corruption of one ``[C, D, H, W]`` patch with sides ``side``, as a MONAI
    ``Compose`` (call ``set_random_state`` before use)."""
    from monai.transforms import Compose, OneOf, RandCoarseDropout, RandCoarseShuffle

    shuffle = _scaled(SHUFFLE, side)
    return Compose(
        [
            OneOf(
                [
                    RandCoarseDropout(prob=1.0, dropout_holes=True, **_scaled(INPAINT, side)),
                    RandCoarseDropout(prob=1.0, dropout_holes=False, **_scaled(OUTPAINT, side)),
                ]
            ),
            RandCoarseShuffle(
                holes=shuffle["holes"], spatial_size=shuffle["spatial_size"], prob=shuffle["prob"]
            ),
        ]
    )


class ReconContrastObjective(nn.Module):
    """MONAI's SSL recipe as a domain objective (see the module docstring).

    Loop protocol: ``make_views(batch, rng)`` → ``(view1s, view2s, clean)``; the loop encodes both
    views with ``encoder.forward_timestamps`` (a :class:`FeaturePyramid`) and calls
    ``loss(p1, p2, side, clean)``.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"pretrain.loss_options.temperature must be > 0, got {temperature}")
        from monai.losses import ContrastiveLoss

        self.temperature = temperature
        self.contrast = ContrastiveLoss(temperature=temperature)  # no parameters: built once
        self.decoder: SkipDecoder | None = None
        self._corrupt: dict[int, Any] = {}

    def bind(self, encoder: nn.Module) -> None:
        channels = getattr(encoder, "pyramid_channels", None)
        if channels is None:
            raise TypeError(
                f"pretrain.loss=ssl_recon needs an encoder with a feature pyramid (encoder.name: resnet); "
                f"{type(encoder).__name__} has none"
            )
        self.decoder = SkipDecoder(list(channels), n_out=int(encoder.in_channels))

    # -- the loop protocol
    def make_views(
        self, batch: list[np.ndarray], rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        clean = [np.asarray(x, dtype=np.float32) for x in batch]
        side = int(clean[0].shape[1])
        if side not in self._corrupt:
            self._corrupt[side] = corruption(side)
        corrupt = self._corrupt[side]
        views: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        for out in views:
            for x in clean:
                corrupt.set_random_state(seed=int(rng.integers(2**31 - 1)))
                out.append(np.ascontiguousarray(np.asarray(corrupt(x.copy()), dtype=np.float32)))
        return views[0], views[1], np.stack(clean)

    def loss(self, p1: FeaturePyramid, p2: FeaturePyramid, _side: int, clean: np.ndarray) -> torch.Tensor:
        assert self.decoder is not None, "call bind(encoder) first"
        target = torch.as_tensor(clean, device=p1.levels[0].device)
        rec1, rec2 = self.decoder(p1.levels), self.decoder(p2.levels)
        recon = (nn.functional.l1_loss(rec1, target) + nn.functional.l1_loss(rec2, target)) / 2
        contrast = self.contrast(rec1.flatten(1), rec2.flatten(1))
        return recon + contrast * recon

    def instance_embeddings(
        self, reps: FeaturePyramid, _b: int, _side: int, _clean: np.ndarray
    ) -> torch.Tensor:
        """Pooled deepest features of both views (``[2B, C]``), for diagnostics."""
        with torch.no_grad():
            return reps.levels[-1].mean(dim=(2, 3, 4))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # as the model's head it is never used for features
        return h


OBJECTIVES: dict[str, type] = {"ssl_recon": ReconContrastObjective}
