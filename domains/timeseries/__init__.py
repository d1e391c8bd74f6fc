"""Time-series domain: UCR/UEA classification data, TS2Vec-style encoder, TS augmentations.

``x`` is a float32 array ``[channels, time]``; lengths may differ between rows (padded with NaN
when batched, which the encoder treats as missing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from domains import register_domain
from domains.base import Domain, Row, ViewPolicy
from domains.options import build_named
from domains.timeseries import normalise as znorm
from domains.timeseries.autotcl import AutoTCLObjective
from domains.timeseries.encoders import ENCODERS
from domains.timeseries.objectives import TS2VecObjective
from domains.timeseries.options import ENCODER_OPTIONS, EVALUATE_OPTIONS, SOURCE_OPTIONS
from domains.timeseries.readers import SOURCES
from domains.timeseries.views import ENGINE as VIEWS
from domains.timeseries.views import apply_policy

#: fingerprint points per channel (segment means), and the cap on points over all channels
FINGERPRINT_POINTS = 256
FINGERPRINT_MAX = 2048
#: length code: one-hot buckets of the series length under a few hashes, weighted so that series
#: of different lengths are never near duplicates (cosine <= 1 - LENGTH_WEIGHT * matching hashes)
LENGTH_HASHES = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F)
LENGTH_BUCKETS = 16
LENGTH_WEIGHT = 0.01


def _segment_means(x: np.ndarray, points: int) -> np.ndarray:
    """``[C, points]``: means over ``points`` equal segments of each channel (piecewise aggregate
    approximation); a series shorter than ``points`` is linearly interpolated up instead."""
    length = x.shape[1]
    if length <= points:
        t, grid = np.linspace(0.0, 1.0, length), np.linspace(0.0, 1.0, points)
        return np.stack([np.interp(grid, t, ch) for ch in x])
    # fractional segment edges through the cumulative sum: every point weighs the same
    cum = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1, dtype=np.float64)], axis=1)
    edges = np.linspace(0.0, length, points + 1)
    at = np.stack([np.interp(edges, np.arange(length + 1), c) for c in cum])
    return np.diff(at, axis=1) * (points / length)


def _as_encoded(x: np.ndarray, normalise: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The series as the fingerprint compares it (float64): z-normalised when it already is (to
    1e-3), since ingest normalised it series by series; else as stored, level and scale included,
    because ingest kept them (``data.normalise`` chose training statistics) and the encoder sees them.
    """
    x64 = x.astype(np.float64)
    dev = max(float(np.abs(x64.mean(axis=1)).max()), float(np.abs(x64.std(axis=1) - 1.0).max()))
    return normalise(x).astype(np.float64) if dev <= 1e-3 else x64


@register_domain("timeseries")
class TimeSeriesDomain(Domain):
    sources = SOURCES
    source_options = SOURCE_OPTIONS
    encoder_options = ENCODER_OPTIONS
    evaluate_options = EVALUATE_OPTIONS
    tasks = ("classification",)
    min_length = 2
    normalise_from_train = True

    def validate(self, row: Row) -> str | None:
        x = row["x"]
        if x.ndim != 2:
            return f"expected [channels, time], got shape {tuple(x.shape)}"
        if x.shape[0] == 0 or x.shape[1] < self.min_length:
            return f"too short: shape {tuple(x.shape)} (need >= {self.min_length} time steps)"
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).sum())
            return f"non-finite values: {bad} of {x.size} are NaN/Inf"
        return None

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Per-series, per-channel z-normalisation (the UCR convention); constant channels → 0."""
        return znorm.znormalise_rows(x)

    def fit_normaliser(self, train_xs: Iterable[np.ndarray], mode: str) -> znorm.Normaliser:
        """What ``data.normalise`` (``mode``) applies; ``auto``: series already z-normalised at the
        source stay per series, any other set is z-scored with its training rows' per-channel
        statistics (``normalise.py``)."""
        return znorm.fit(train_xs, mode)

    #: near duplicate = the same series up to noise of ~0.3 % of its std (RMS difference
    #: sqrt(2 (1 - 0.99999)) = 0.0045 std). Looser thresholds flag distinct real series: UCR ACSF1's
    #: training set holds distinct recordings whose z-normalised curves agree to cosine 0.99997 at
    #: full resolution (0.99988 with this fingerprint); at 0.999, 25 of its 100 series pair up.
    near_threshold = 0.99999

    def fingerprint(self, xs: list[np.ndarray]) -> np.ndarray:
        """Shape at high resolution plus a length code, one fixed-size vector per series.

        Shape: each channel z-normalised when ingest stored it so (the UCR convention: level and
        scale are then not in what the encoder is trained on, so rows differing only in them are the
        same training input), else the series as stored, whose level and scale the encoder sees too
        (``data.normalise`` kept them: ``normalise.py``); then segment means at
        ``FINGERPRINT_POINTS`` points per channel (fewer with many channels, at most
        ``FINGERPRINT_MAX`` in all): series up to 256 points keep every point, longer ones are
        averaged over segments, never point-sampled (sampling 32 points of ACSF1's spiky power
        curves skipped the spikes and made distinct series look alike). Length: one-hot hash
        buckets of the length, weighted so that two series of different lengths stay below cosine
        0.9975 whatever their shape.
        """
        if not xs:
            return np.zeros((0, FINGERPRINT_POINTS + len(LENGTH_HASHES) * LENGTH_BUCKETS), np.float32)
        points = max(32, min(FINGERPRINT_POINTS, FINGERPRINT_MAX // xs[0].shape[0]))
        out = []
        for x in xs:
            shape = _segment_means(_as_encoded(x, self.normalise), points).reshape(-1)
            shape /= max(float(np.linalg.norm(shape)), 1e-12)  # all-zero (constant series) stays zero
            code = np.zeros((len(LENGTH_HASHES), LENGTH_BUCKETS))
            for i, h in enumerate(LENGTH_HASHES):
                code[i, ((x.shape[1] * h) & 0xFFFFFFFF) >> 28] = 1.0
            code = code.reshape(-1) / np.sqrt(len(LENGTH_HASHES))
            w = np.sqrt(LENGTH_WEIGHT)
            out.append(np.concatenate([np.sqrt(1.0 - LENGTH_WEIGHT) * shape, w * code]))
        return np.asarray(out, dtype=np.float32)

    @staticmethod
    def _steps(policy: ViewPolicy) -> list[dict[str, Any]]:
        return VIEWS.resolve(policy)  # validated: errors name views.policy[i]

    def augment(self, x: np.ndarray, rng: np.random.Generator, policy: ViewPolicy) -> np.ndarray:
        return apply_policy(x, rng, self._steps(policy))

    def small_crops(
        self, xs: list[np.ndarray], rng: np.random.Generator, policy: ViewPolicy, scale: float
    ) -> list[np.ndarray]:
        """A random contiguous window of ``scale`` of the (shortest) length per series, then the
        policy's augmentations except its own ``crop`` steps: the window *is* the crop (as SwAV's
        small RandomResizedCrop replaces the global one), and a second random crop would break the
        shared length. The encoder max-pools over time, so shorter inputs need no resizing."""
        steps = [s for s in self._steps(policy) if s.get("name") != "crop"]
        shortest = min(x.shape[1] for x in xs)
        length = min(shortest, max(self.min_length, round(scale * shortest)))
        out = []
        for x in xs:
            start = int(rng.integers(0, x.shape[1] - length + 1))
            out.append(apply_policy(x[:, start : start + length], rng, steps))
        return out

    def data_args(self, x: np.ndarray) -> dict[str, Any]:
        return {"in_channels": int(x.shape[0])}

    def build_encoder(self, cfg: dict[str, Any]) -> nn.Module:
        return build_named(ENCODERS, cfg, "time-series")

    def objectives(self) -> dict[str, Any]:
        """TS2Vec's hierarchical contrastive loss over overlapping crops (``pretrain.loss: ts2vec``),
        and AutoTCL's adversarially learned augmentation with the same loss (``autotcl``, see
        ``autotcl.py``).

        Their instance contrast uses the worker's own batch (as TS2Vec, which is single-device);
        DDP still averages the gradients across workers.
        """
        return {"ts2vec": TS2VecObjective, "autotcl": AutoTCLObjective}

    def collate(self, xs: list[np.ndarray]) -> torch.Tensor:
        """Pad to the longest series with NaN (the encoder masks NaN timestamps)."""
        channels = xs[0].shape[0]
        length = max(x.shape[1] for x in xs)
        out = np.full((len(xs), channels, length), np.nan, dtype=np.float32)
        for i, x in enumerate(xs):
            out[i, :, : x.shape[1]] = x
        return torch.from_numpy(out)
