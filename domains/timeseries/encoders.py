"""TS2Vec's dilated convolutional encoder (Yue et al., AAAI 2022; ``yuezhihan/ts2vec``).

Input ``[B, C, T]`` with NaN marking missing / padded timestamps. Per-timestamp representations
``[B, T, D]`` come from a linear input projection, TS2Vec's binomial timestamp masking (training
only), and a stack of residual blocks whose dilation doubles at each depth (receptive field grows
exponentially). The instance embedding is the max over valid timestamps, as in TS2Vec's
``encode(..., encoding_window='full_series')``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SamePadConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int) -> None:
        super().__init__()
        receptive = (kernel - 1) * dilation + 1
        self.conv = nn.Conv1d(cin, cout, kernel, padding=receptive // 2, dilation=dilation)
        self.trim = 1 if receptive % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out[:, :, : -self.trim] if self.trim else out


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int, final: bool) -> None:
        super().__init__()
        self.conv1 = SamePadConv(cin, cout, kernel, dilation)
        self.conv2 = SamePadConv(cout, cout, kernel, dilation)
        self.projector = nn.Conv1d(cin, cout, 1) if cin != cout or final else None

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``keep`` ``[B, 1, T]`` zeroes padded steps after each conv (see TS2VecEncoder)."""
        residual = x if self.projector is None else self.projector(x)
        x = self.conv1(F.gelu(x)) * keep
        x = self.conv2(F.gelu(x))
        return (x + residual) * keep


class TS2VecEncoder(nn.Module):
    """Dilated CNN; ``forward`` → ``[B, D]``, ``forward_timestamps`` → ``[B, T, D]``."""

    def __init__(
        self,
        in_channels: int = 1,
        hidden_dim: int = 64,
        out_dim: int = 320,
        depth: int = 10,
        kernel_size: int = 3,
        mask_p: float = 0.5,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.embedding_dim = out_dim
        self.mask_p = mask_p
        self.input_fc = nn.Linear(in_channels, hidden_dim)
        channels = [hidden_dim] * depth + [out_dim]
        cins = [hidden_dim, *channels[:-1]]
        self.blocks = nn.Sequential(
            *[
                ConvBlock(cins[i], channels[i], kernel_size, 2**i, final=i == len(channels) - 1)
                for i in range(len(channels))
            ]
        )
        self.dropout = nn.Dropout(dropout)

    def forward_timestamps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, T]`` → (representations ``[B, T, D]``, valid mask ``[B, T]``)."""
        x = x.transpose(1, 2)  # [B, T, C]
        valid = ~torch.isnan(x).any(dim=-1)
        h = self.input_fc(torch.where(valid.unsqueeze(-1), x, torch.zeros_like(x)))
        if self.training and self.mask_p > 0:
            # TS2Vec's binomial timestamp masking: the model must infer masked steps from context.
            keep = torch.rand(h.shape[:2], device=h.device) >= self.mask_p
            h = h * keep.unsqueeze(-1)
        keep_t = valid.unsqueeze(1).to(h.dtype)  # [B, 1, T]
        h = h.transpose(1, 2) * keep_t
        for block in self.blocks:
            # Padded steps are re-zeroed after every conv so a padded series is encoded exactly as
            # alone (TS2Vec zeroes them only at the input, so padding leaks into deep layers).
            h = block(h, keep_t)
        return self.dropout(h).transpose(1, 2), valid  # [B, T, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, valid = self.forward_timestamps(x)
        h = h.masked_fill(~valid.unsqueeze(-1), float("-inf"))
        return h.max(dim=1).values


#: the domain's encoders by name (``encoder.name`` in a recipe); the first is the default
ENCODERS: dict[str, type[nn.Module]] = {"ts2vec_cnn": TS2VecEncoder}
