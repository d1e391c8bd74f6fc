"""Point-cloud encoders: PointNet (Qi et al., CVPR 2017) and DGCNN (Wang et al., TOG 2019).

Both take a batch ``[B, N, 3]`` and return a global feature ``[B, D]`` (``embedding_dim``) that is
invariant to the order of the points; PointNet is also unchanged by duplicated points (its default
max pool; its ``maxavg`` pool and DGCNN add an average pool, slightly weighted by duplicates), so views of
different densities batch as fixed-size clouds. Widths default to the papers' (PointNet 64-64-64-128
→ 1024; DGCNN EdgeConv 64-64-128-256 → 1024, k = 20); recipes shrink them for CPU demos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F


def _conv_bn(cin: int, cout: int, dims: int = 1) -> nn.Sequential:
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    return nn.Sequential(
        conv(cin, cout, 1, bias=False), norm(cout), nn.LeakyReLU(0.2) if dims == 2 else nn.ReLU()
    )


class PointNet(nn.Module):
    """Shared per-point MLP (1×1 convolutions + BatchNorm) and a global max pool.

    The input/feature T-Nets of the paper are left out, as in most self-supervised baselines
    (OcCo, CrossPoint) that pretrain PointNet without them.

    ``pool``: ``max`` (the paper's; the feature is ``out_dim`` wide) or ``maxavg``: the max and the
    mean over the points concatenated, as DGCNN pools (``2 * out_dim`` wide, no more parameters).
    The mean is slightly weighted by the points :meth:`collate` repeats to pad a smaller view.
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 64, 64, 128),
        out_dim: int = 1024,
        pool: Literal["max", "maxavg"] = "max",
    ) -> None:
        super().__init__()
        if pool not in ("max", "maxavg"):
            raise ValueError(f"encoder.pool: {pool!r} is not 'max' or 'maxavg'")
        self.pool = pool
        self.embedding_dim = out_dim * (2 if pool == "maxavg" else 1)
        chans = [3, *widths]
        self.mlp = nn.Sequential(*[_conv_bn(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)])
        self.out = _conv_bn(chans[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The 1×1 convolutions are one matrix product over all B·N points ([B·N, C] rows), which
        # is the same arithmetic without Conv1d's [B, C, N] layout: a training step of the demo's
        # encoder (batch 32 × 1,024 points, one thread) took 0.39 s through Conv1d and 0.31 s so.
        # BatchNorm1d on [B·N, C] normalises over the same B·N values as on [B, C, N]; the
        # parameters (and checkpoints) are the Conv1d/BatchNorm1d ones.
        b, n, _ = x.shape
        h = x.reshape(b * n, x.shape[2])
        for conv, norm, act in (*self.mlp, self.out):
            h = act(norm(F.linear(h, conv.weight.squeeze(2))))
        h = h.view(b, n, -1)
        if self.pool == "max":
            return h.max(dim=1).values
        return torch.cat([h.max(dim=1).values, h.mean(dim=1)], dim=1)


def knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[B, N, k]`` of the ``k`` nearest neighbours (self included) of each point of ``x`` ``[B, C, N]``."""
    inner = -2 * torch.matmul(x.transpose(2, 1), x)
    sq = (x**2).sum(dim=1, keepdim=True)
    neg_dist = -sq - inner - sq.transpose(2, 1)
    return neg_dist.topk(k=k, dim=-1).indices


def edge_features(x: torch.Tensor, k: int) -> torch.Tensor:
    """DGCNN's edge features ``[B, 2C, N, k]``: ``(x_j - x_i, x_i)`` over each point's k-NN graph,
    recomputed in the current feature space (the "dynamic" graph)."""
    b, c, n = x.shape
    idx = knn(x, k) + torch.arange(b, device=x.device).view(-1, 1, 1) * n
    pts = x.transpose(2, 1).reshape(b * n, c)
    neigh = pts[idx.reshape(-1)].view(b, n, k, c)
    centre = x.transpose(2, 1).unsqueeze(2).expand(-1, -1, k, -1)
    return torch.cat([neigh - centre, centre], dim=3).permute(0, 3, 1, 2).contiguous()


class DGCNN(nn.Module):
    """EdgeConv layers on dynamic k-NN graphs, concatenated, then a 1×1 conv and max+avg pooling."""

    def __init__(self, k: int = 20, widths: Sequence[int] = (64, 64, 128, 256), out_dim: int = 1024) -> None:
        super().__init__()
        if out_dim % 2:
            raise ValueError(
                f"DGCNN out_dim must be even (max and average pools are concatenated), got {out_dim}"
            )
        self.k = k
        self.embedding_dim = out_dim
        chans = [3, *widths]
        self.edge_convs = nn.ModuleList(
            [_conv_bn(2 * a, b, dims=2) for a, b in zip(chans[:-1], chans[1:], strict=True)]
        )
        self.out = nn.Sequential(
            nn.Conv1d(sum(widths), out_dim // 2, 1, bias=False),
            nn.BatchNorm1d(out_dim // 2),
            nn.LeakyReLU(0.2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)  # [B, 3, N]
        k = min(self.k, h.shape[2])
        feats = []
        for conv in self.edge_convs:
            h = conv(edge_features(h, k)).max(dim=-1).values  # [B, C, N]
            feats.append(h)
        h = self.out(torch.cat(feats, dim=1))
        return torch.cat([h.max(dim=2).values, h.mean(dim=2)], dim=1)


ENCODERS: dict[str, type[nn.Module]] = {"pointnet": PointNet, "dgcnn": DGCNN}
