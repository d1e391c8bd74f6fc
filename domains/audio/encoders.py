"""Audio encoders: a log-mel front end inside the model, then a BYOL-A-style CNN with temporal pooling.

The front end is part of the ``nn.Module`` (``torch.stft`` + a mel filterbank buffer computed once
by ``librosa.filters.mel``), so spectrograms are computed on whatever device the model runs on.
Input: waveforms ``[B, 1, samples]`` (or ``[B, samples]``); output: embeddings ``[B, out_dim]``.
"""

from __future__ import annotations

from typing import Literal

import librosa
import torch
from torch import nn


class LogMel(nn.Module):
    """Waveform ``[B, samples]`` → per-clip standardised log-mel ``[B, 1, n_mels, frames]``."""

    def __init__(
        self, sample_rate: int = 8000, n_fft: int = 256, hop_length: int = 80, n_mels: int = 64
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=20.0, fmax=sample_rate / 2)
        self.register_buffer("mel_fb", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            wav, self.n_fft, self.hop_length, window=self.window, center=True, return_complex=True
        )
        power = spec.real**2 + spec.imag**2  # [B, freq, frames]
        mel = torch.log(torch.matmul(self.mel_fb, power) + 1e-6)
        # Per-clip standardisation: recordings differ in level and channel far more than words do.
        mean = mel.mean(dim=(1, 2), keepdim=True)
        std = mel.std(dim=(1, 2), keepdim=True).clamp_min(1e-5)
        return ((mel - mean) / std).unsqueeze(1)


class AudioCNN(nn.Module):
    """BYOL-A's encoder (Niizumi et al., 2021): conv blocks (3x3 conv, BN, ReLU, 2x2 max-pool) over
    the log-mel, frequency folded into channels, an MLP per frame, then temporal mean + max pooling.

    ``pool``: ``meanmax`` pools over the whole clip (BYOL-A's); ``segments`` pools mean + max within
    ``segments`` equal stretches of time and concatenates them, so the embedding keeps the coarse
    order of the sounds (a word is a sequence: over the whole clip "tap" and "pat" pool alike).
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        n_mels: int = 64,
        n_fft: int = 256,
        hop_length: int = 80,
        channels: int = 64,
        blocks: int = 3,
        hidden_dim: int = 512,
        out_dim: int = 256,
        dropout: float = 0.1,
        pool: Literal["meanmax", "segments"] = "meanmax",
        segments: int = 4,
    ) -> None:
        super().__init__()
        if pool not in ("meanmax", "segments"):
            raise ValueError(f"encoder.pool: {pool!r} is not 'meanmax' or 'segments'")
        if segments < 1:
            raise ValueError(f"encoder.segments: {segments} must be >= 1")
        self.pool, self.segments = pool, segments if pool == "segments" else 1
        self.frontend = LogMel(sample_rate, n_fft, hop_length, n_mels)
        layers: list[nn.Module] = []
        c_in = 1
        for _ in range(blocks):
            layers += [
                nn.Conv2d(c_in, channels, 3, padding=1),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = channels
        self.conv = nn.Sequential(*layers)
        folded = channels * (n_mels // 2**blocks)
        self.fc = nn.Sequential(
            nn.Linear(folded, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
        )
        self.proj = nn.Linear(2 * hidden_dim * self.segments, out_dim)
        self.embedding_dim = out_dim

    def frames(self, wav: torch.Tensor) -> torch.Tensor:
        """Per-frame features ``[B, frames', hidden_dim]`` (before temporal pooling)."""
        if wav.dim() == 3:
            wav = wav[:, 0]
        h = self.conv(self.frontend(wav))  # [B, C, F', T']
        b, c, f, t = h.shape
        return self.fc(h.permute(0, 3, 1, 2).reshape(b, t, c * f))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        h = self.frames(wav)
        if self.pool == "meanmax":
            return self.proj(torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=1))
        t = h.transpose(1, 2)  # [B, hidden, frames']
        k = self.segments
        pooled = torch.cat(
            [nn.functional.adaptive_avg_pool1d(t, k), nn.functional.adaptive_max_pool1d(t, k)], 1
        )
        return self.proj(pooled.flatten(1))  # [B, 2 * hidden * k]


#: the domain's encoders by name (``encoder.name`` in a recipe); the first is the default
ENCODERS: dict[str, type[nn.Module]] = {"byola_cnn": AudioCNN}
