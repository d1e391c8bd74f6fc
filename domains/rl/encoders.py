"""The pixel encoder of SAC-AE / CURL (Yarats et al. 2019; Laskin et al. 2020, ``MishaLaskin/curl``).

``num_layers`` 3×3 convolutions with ``num_filters`` channels (the first with stride 2, the rest
stride 1, ReLU after each), flattened, a linear layer to ``feature_dim`` and LayerNorm — CURL's
``PixelEncoder`` with ``output_logits=True`` (the critic's encoder). Input: frame stacks
``[B, S*C, H, W]`` in [0, 1] (CURL divides bytes by 255 inside the encoder; our rows already hold
[0, 1]).
"""

from __future__ import annotations

import torch
from torch import nn


class PixelEncoder(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 64,
        num_layers: int = 4,
        num_filters: int = 32,
        feature_dim: int = 50,
    ) -> None:
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        self.embedding_dim = feature_dim
        layers: list[nn.Module] = [nn.Conv2d(in_channels, num_filters, 3, stride=2), nn.ReLU()]
        for _ in range(num_layers - 1):
            layers += [nn.Conv2d(num_filters, num_filters, 3, stride=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, in_channels, image_size, image_size)).numel()
        self.fc = nn.Linear(n_flat, feature_dim)
        self.ln = nn.LayerNorm(feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, S*C, H, W]`` → ``[B, feature_dim]``."""
        h = self.convs(x).flatten(1)
        return self.ln(self.fc(h))

    def forward_timestamps(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """The pretrain loop's entry point for domain objectives (see ``domains.rl.objectives``):
        the instance embedding, as a 1-tuple-like pair (RL objectives have no per-step output)."""
        return self(x), None


#: the domain's encoders by name (``encoder.name`` in a recipe); the first is the default
ENCODERS: dict[str, type[nn.Module]] = {"pixel_cnn": PixelEncoder}
