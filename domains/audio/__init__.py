"""Audio/speech domain: waveform clips, BYOL-A-style log-mel CNN, waveform augmentations.

``x`` is a float32 waveform ``[1, samples]`` at the source's sample rate (every clip of a recipe has
the same length: readers pad or cut to ``clip_seconds``). The encoder computes its log-mel inside the
model. Evaluation adds, beside the shared probes, an MFCC + logistic-regression baseline, a
leave-one-speaker-out mean over the real speakers and a synthetic-to-real probe (see ``tasks.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from domains import register_domain
from domains.audio.encoders import ENCODERS
from domains.audio.options import ENCODER_OPTIONS, EVALUATE_OPTIONS, SOURCE_OPTIONS
from domains.audio.readers import SOURCES
from domains.audio.views import ENGINE as VIEWS
from domains.audio.views import apply_policy
from domains.base import Domain, DomainResult, EvalContext, Row, ViewPolicy
from domains.options import build_named

#: the rate named policies assume unless the policy says otherwise (``"clmr@16000"``)
DEFAULT_SAMPLE_RATE = 8000
#: RMS below this (about -70 dBFS) is silence, not speech
SILENCE_RMS = 3e-4
#: a clip with more than this fraction of samples at full scale is clipped
CLIPPED_FRACTION = 0.01
FULL_SCALE = 0.999
FINGERPRINT_BANDS = 16
FINGERPRINT_SEGMENTS = 8


@register_domain("audio")
class AudioDomain(Domain):
    sources = SOURCES
    source_options = SOURCE_OPTIONS
    encoder_options = ENCODER_OPTIONS
    evaluate_options = EVALUATE_OPTIONS
    tasks = ("classification",)
    preview_kind = "audio"

    def validate(self, row: Row) -> str | None:
        x = row["x"]
        if x.ndim != 2 or x.shape[0] != 1:
            return f"expected a mono waveform [1, samples], got shape {tuple(x.shape)}"
        if x.shape[1] == 0:
            return "empty: zero-length audio"
        if not np.isfinite(x).all():
            return f"non-finite: {int((~np.isfinite(x)).sum())} of {x.size} samples are NaN/Inf"
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        if rms < SILENCE_RMS:
            return f"silent: RMS {rms:.2e} < {SILENCE_RMS:g}"
        clipped = float(np.mean(np.abs(x) >= FULL_SCALE))
        if clipped > CLIPPED_FRACTION:
            return f"clipped: {clipped:.1%} of samples at full scale (> {CLIPPED_FRACTION:.0%})"
        return None

    def fingerprint(self, xs: list[np.ndarray]) -> np.ndarray:
        """A coarse, mean-centred log-mel image (16 bands x 8 time segments) per clip.

        Centred because raw log energies are all large negatives, which makes any two clips look alike
        under cosine; the time segments keep different words apart (a time-averaged spectrum alone put
        two different Russian digits at cosine 0.999).
        """
        import librosa

        out = []
        for x in xs:
            mel = librosa.feature.melspectrogram(
                y=x[0], sr=DEFAULT_SAMPLE_RATE, n_fft=256, hop_length=128, n_mels=FINGERPRINT_BANDS
            )
            logmel = np.log(mel + 1e-6)
            segments = np.array_split(logmel, FINGERPRINT_SEGMENTS, axis=1)
            img = np.stack([s.mean(axis=1) if s.size else np.zeros(FINGERPRINT_BANDS) for s in segments], 1)
            out.append((img - img.mean()).reshape(-1))
        return np.asarray(out, dtype=np.float32)

    def augment(self, x: np.ndarray, rng: np.random.Generator, policy: ViewPolicy) -> np.ndarray:
        name, _, rate = policy.name.partition("@")
        steps = VIEWS.resolve(ViewPolicy(name, policy.params))  # validated: errors name views.policy[i]
        sr = int(policy.params.get("sample_rate") or rate or DEFAULT_SAMPLE_RATE)
        return apply_policy(x, rng, steps, sr)

    def build_encoder(self, cfg: dict[str, Any]) -> nn.Module:
        return build_named(ENCODERS, cfg, "audio")

    def collate(self, xs: list[np.ndarray]) -> torch.Tensor:
        """Stack into ``[B, 1, samples]``; clips of unequal length are zero-padded at the end."""
        n = max(x.shape[-1] for x in xs)
        out = np.zeros((len(xs), 1, n), dtype=np.float32)
        for i, x in enumerate(xs):
            out[i, 0, : x.shape[-1]] = x[0]
        return torch.from_numpy(out)

    def evaluate(self, ctx: EvalContext) -> DomainResult | None:
        from domains.audio.tasks import evaluate_speech

        return evaluate_speech(ctx)
