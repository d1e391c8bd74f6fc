"""Projection heads (SimCLR): features are evaluated *before* the head, the loss is taken after."""

from __future__ import annotations

import torch
from torch import nn

from stages.common.schema import HeadCfg


def build_head(in_dim: int, cfg: HeadCfg) -> nn.Module:
    if cfg.type == "none":
        return nn.Identity()
    if cfg.type == "linear":
        return nn.Linear(in_dim, cfg.out_dim)
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(cfg.depth - 1):
        layers += [nn.Linear(dim, cfg.hidden_dim), nn.BatchNorm1d(cfg.hidden_dim), nn.ReLU(inplace=True)]
        dim = cfg.hidden_dim
    layers.append(nn.Linear(dim, cfg.out_dim))
    return nn.Sequential(*layers)


class EncoderWithHead(nn.Module):
    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    @property
    def out_dim(self) -> int:
        """Width of ``z``, the head's output (the encoder's embedding when the head is ``none``)."""
        linears = [m for m in self.head.modules() if isinstance(m, nn.Linear)]
        return linears[-1].out_features if linears else int(self.encoder.embedding_dim)

    def forward(self, x, timestamps: bool = False):  # noqa: ANN001, ANN201 - any batch the domain collates
        """``(h, z)``; with ``timestamps`` the encoder's per-step output (for dense objectives).

        ``x`` may be a list of collated batches (multi-crop); ``h`` and ``z`` then stack their rows.

        Dense objectives go through ``forward`` too, so DDP sees every forward it must sync.
        """
        if timestamps:
            return self.encoder.forward_timestamps(x)
        # multi-crop: one encoder pass per resolution (global views, small crops), one head pass over
        # all of them, inside one forward as DDP requires (SwAV's multi-resolution forward)
        h = torch.cat([self.encoder(part) for part in x]) if isinstance(x, list) else self.encoder(x)
        return h, self.head(h)
