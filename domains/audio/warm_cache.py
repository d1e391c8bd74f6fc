"""Compile librosa's numba kernels into numba's on-disk cache once, at install time.

librosa compiles its ``@guvectorize`` / ``@jit(cache=True)`` kernels (local maxima and minima, peak
picking, zero crossings, phasors, pitch) the first time a process uses them and caches the machine
code beside the package. In a fresh environment every Ray worker that reads audio compiles them
at once: the demo's audio ingest took 30.6 s instead of 10.5 s with four workers compiling the same
kernels on two cores. ``make setup`` runs this module once after installing, so no stage pays it.

``python -m domains.audio.warm_cache``
"""

from __future__ import annotations

import time

import librosa
import numpy as np


def warm() -> float:
    """Call the librosa functions the audio domain uses on a second of noise; returns seconds."""
    t0 = time.perf_counter()
    y = np.random.default_rng(0).normal(size=8000).astype(np.float32)
    librosa.effects.trim(y, frame_length=256, hop_length=64)
    librosa.effects.split(y, frame_length=256, hop_length=64)
    librosa.feature.melspectrogram(y=y, sr=8000, n_fft=256, hop_length=128, n_mels=40)
    librosa.feature.delta(librosa.feature.mfcc(y=y, sr=8000, n_mfcc=13, n_fft=256, hop_length=80, n_mels=40))
    librosa.effects.pitch_shift(y, sr=8000, n_steps=1, n_fft=256)
    librosa.effects.time_stretch(y, rate=1.1, n_fft=256)
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"warm_cache: librosa's numba kernels compiled and cached in {warm():.1f} s")
