"""Waveform augmentations and named view policies for audio contrastive learning.

Every step maps a float32 ``[1, samples]`` waveform to another one (the same length unless the step
is a crop) and takes the sample rate from its parameters (``sr``, filled in from the policy). Steps
are cheap numpy except ``pitch_shift``/``time_stretch``/``resample``/``spec_mask`` (librosa), which
cost milliseconds per clip; ``bench/audio_views.py`` measures each on one core.

Named policies:

* ``default`` — time shift, gain, noise at a random SNR, band-limiting by resampling, SpecAugment
  masks; pitch shift on a fraction of views (BYOL-A-like mixing of cheap waveform augmentations).
* ``cola`` — COLA (Saeed et al., 2021): the two views are two random segments of the same clip,
  nothing else.
* ``clmr`` — CLMR's chain (Spijkervet & Burgoyne, 2021): random crop, polarity inversion, noise,
  gain, high/low-pass filter, delay, pitch shift, reverb, each with CLMR's probability.
* ``byola`` — BYOL-A (Niizumi et al., 2021) for little real speech: mixup with a background memory
  of past clips, random resize (``speed``) + crop, gain, noise, SpecAugment masks.
* ``light`` — time shift, gain and noise only (fast; the ``tiny`` scale).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from domains.views import ViewEngine

Step = dict[str, Any]


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Centre-crop or zero-pad a 1-D signal to ``n`` samples."""
    if y.size >= n:
        start = (y.size - n) // 2
        return y[start : start + n]
    pad = n - y.size
    return np.pad(y, (pad // 2, pad - pad // 2))


def random_crop(x: np.ndarray, rng: np.random.Generator, seconds: float = 0.8, sr: int = 8000) -> np.ndarray:
    n = min(x.shape[-1], max(1, int(round(seconds * sr))))
    start = int(rng.integers(0, x.shape[-1] - n + 1))
    return x[:, start : start + n]


def time_shift(
    x: np.ndarray, rng: np.random.Generator, max_seconds: float = 0.2, sr: int = 8000
) -> np.ndarray:
    """Shift by up to ``max_seconds`` either way, filling with silence (no wrap-around)."""
    k = int(rng.integers(-int(max_seconds * sr), int(max_seconds * sr) + 1))
    out = np.zeros_like(x)
    if k >= 0:
        out[:, k:] = x[:, : x.shape[-1] - k]
    else:
        out[:, :k] = x[:, -k:]
    return out


def gain(x: np.ndarray, rng: np.random.Generator, min_db: float = -6.0, max_db: float = 6.0) -> np.ndarray:
    return x * np.float32(10 ** (rng.uniform(min_db, max_db) / 20))


def noise(x: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float] = (5.0, 30.0)) -> np.ndarray:
    """White Gaussian noise at an SNR drawn uniformly (dB) relative to the clip's power."""
    power = max(float(np.mean(x.astype(np.float64) ** 2)), 1e-10)
    snr = rng.uniform(*snr_db)
    return x + rng.normal(0.0, np.sqrt(power / 10 ** (snr / 10)), x.shape).astype(np.float32)


def polarity(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return -x


def pitch_shift(
    x: np.ndarray, rng: np.random.Generator, semitones: float = 2.0, sr: int = 8000
) -> np.ndarray:
    import librosa

    steps = rng.uniform(-semitones, semitones)
    return librosa.effects.pitch_shift(x[0], sr=sr, n_steps=steps, n_fft=256)[None, :].astype(np.float32)


def time_stretch(
    x: np.ndarray, rng: np.random.Generator, min_rate: float = 0.8, max_rate: float = 1.25
) -> np.ndarray:
    """Phase-vocoder stretch by a random rate, then back to the input length (crop or pad)."""
    import librosa

    rate = float(np.exp(rng.uniform(np.log(min_rate), np.log(max_rate))))
    y = librosa.effects.time_stretch(x[0], rate=rate, n_fft=256)
    return _fit_length(y, x.shape[-1])[None, :].astype(np.float32)


def resample(x: np.ndarray, rng: np.random.Generator, min_sr: int = 4000, sr: int = 8000) -> np.ndarray:
    """Band-limit by resampling down to a random lower rate and back (telephone/low-quality audio)."""
    import librosa

    low = int(rng.integers(min(min_sr, sr), sr + 1))
    if low >= sr:
        return x
    y = librosa.resample(x[0], orig_sr=sr, target_sr=low, res_type="soxr_qq")
    y = librosa.resample(y, orig_sr=low, target_sr=sr, res_type="soxr_qq")
    return _fit_length(y, x.shape[-1])[None, :].astype(np.float32)


def spec_mask(
    x: np.ndarray,
    rng: np.random.Generator,
    freq_masks: int = 2,
    max_freq_fraction: float = 0.15,
    time_masks: int = 2,
    max_time_fraction: float = 0.1,
    n_fft: int = 256,
) -> np.ndarray:
    """SpecAugment (Park et al., 2019) frequency and time masks, applied in the STFT domain and
    inverted back to a waveform (the encoder computes its own log-mel from waveforms)."""
    import librosa

    hop = n_fft // 4
    spec = librosa.stft(x[0], n_fft=n_fft, hop_length=hop)
    n_freq, n_time = spec.shape
    for _ in range(freq_masks):
        w = int(rng.integers(0, int(max_freq_fraction * n_freq) + 1))
        f0 = int(rng.integers(0, n_freq - w + 1))
        spec[f0 : f0 + w] = 0
    for _ in range(time_masks):
        w = int(rng.integers(0, int(max_time_fraction * n_time) + 1))
        t0 = int(rng.integers(0, n_time - w + 1))
        spec[:, t0 : t0 + w] = 0
    y = librosa.istft(spec, hop_length=hop, n_fft=n_fft, length=x.shape[-1])
    return y[None, :].astype(np.float32)


def filter_(
    x: np.ndarray, rng: np.random.Generator, low_hz: float = 300.0, high_hz: float = 3000.0, sr: int = 8000
) -> np.ndarray:
    """A random 4th-order Butterworth high-pass or low-pass (CLMR's HPF/LPF)."""
    from scipy.signal import butter, sosfilt

    nyq = sr / 2
    if rng.random() < 0.5:
        sos = butter(4, rng.uniform(50.0, low_hz) / nyq, btype="highpass", output="sos")
    else:
        sos = butter(
            4, min(rng.uniform(high_hz / 2, high_hz), nyq * 0.95) / nyq, btype="lowpass", output="sos"
        )
    return sosfilt(sos, x, axis=-1).astype(np.float32)


def delay(
    x: np.ndarray, rng: np.random.Generator, min_ms: float = 20.0, max_ms: float = 200.0, sr: int = 8000
) -> np.ndarray:
    """Add an attenuated echo (CLMR's delay)."""
    k = int(rng.uniform(min_ms, max_ms) * sr / 1000)
    out = x.copy()
    out[:, k:] += np.float32(rng.uniform(0.2, 0.5)) * x[:, : x.shape[-1] - k]
    return out


def reverb(
    x: np.ndarray, rng: np.random.Generator, min_rt60: float = 0.1, max_rt60: float = 0.6, sr: int = 8000
) -> np.ndarray:
    """Convolve with a synthetic room response: exponentially decaying noise with a random RT60."""
    from scipy.signal import fftconvolve

    rt60 = rng.uniform(min_rt60, max_rt60)
    t = np.arange(int(rt60 * sr)) / sr
    ir = rng.normal(0, 1, t.size) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    ir[0] = 1.0
    ir /= np.sqrt(np.sum(ir**2))
    y = fftconvolve(x[0], ir)[: x.shape[-1]]
    return y[None, :].astype(np.float32)


def speed(
    x: np.ndarray, rng: np.random.Generator, min_rate: float = 0.8, max_rate: float = 1.25
) -> np.ndarray:
    """Play faster or slower (time and pitch together), then a random crop or pad back to the input
    length: BYOL-A's random-resize-crop of the log-mel (both axes stretched by one factor, the
    frequency axis on a mel scale only approximately), done cheaply on the waveform (np.interp)."""
    n = x.shape[-1]
    rate = float(np.exp(rng.uniform(np.log(min_rate), np.log(max_rate))))
    y = np.interp(np.arange(0.0, n - 1, rate), np.arange(n), x[0]).astype(np.float32)
    if y.size >= n:
        start = int(rng.integers(0, y.size - n + 1))
        return y[None, start : start + n]
    out = np.zeros((1, n), np.float32)
    start = int(rng.integers(0, n - y.size + 1))
    out[0, start : start + y.size] = y
    return out


#: the background memory of :func:`mixup`, one per process (each Ray worker holds its own)
_BACKGROUND: list[np.ndarray] = []


def mixup(x: np.ndarray, rng: np.random.Generator, ratio: float = 0.4, memory: int = 512) -> np.ndarray:
    """BYOL-A's mixup (Niizumi et al., 2021): add a clip drawn from a memory of past inputs at a
    random weight in ``[0, ratio)``, level-matched to ``x``, so that the two views of a clip differ
    by background sounds. Mixing waveforms adds their powers, as BYOL-A's log-mixup-exp does on the
    log-mel. The memory fills with the inputs this process has seen (``memory`` clips, replaced at
    random when full), so a view depends on the order of earlier calls, not only on ``rng``; until
    it holds a clip of ``x``'s length, a random circular shift of ``x`` itself is the background."""
    same = [b for b in _BACKGROUND if b.shape == x.shape]
    bg = same[int(rng.integers(len(same)))] if same else np.roll(x, int(rng.integers(1, x.shape[-1])), -1)
    lam = float(rng.uniform(0.0, ratio))
    level = np.sqrt(max(float(np.mean(x**2)), 1e-10) / max(float(np.mean(bg**2)), 1e-10))
    out = ((1.0 - lam) * x + lam * level * bg).astype(np.float32)
    if len(_BACKGROUND) < memory:
        _BACKGROUND.append(np.array(x, dtype=np.float32))
    else:
        _BACKGROUND[int(rng.integers(memory))] = np.array(x, dtype=np.float32)
    return out


STEPS: dict[str, Callable[..., np.ndarray]] = {
    "random_crop": random_crop,
    "time_shift": time_shift,
    "gain": gain,
    "noise": noise,
    "polarity": polarity,
    "pitch_shift": pitch_shift,
    "time_stretch": time_stretch,
    "resample": resample,
    "spec_mask": spec_mask,
    "filter": filter_,
    "delay": delay,
    "reverb": reverb,
    "speed": speed,
    "mixup": mixup,
}

POLICIES: dict[str, list[Step]] = {
    "default": [
        {"name": "time_shift", "max_seconds": 0.15},
        {"name": "gain", "min_db": -6.0, "max_db": 6.0},
        {"name": "pitch_shift", "p": 0.3, "semitones": 2.0},
        {"name": "resample", "p": 0.3, "min_sr": 4000},
        {"name": "noise", "p": 0.8, "snr_db": [5.0, 30.0]},
        {"name": "spec_mask", "p": 0.5},
    ],
    "cola": [{"name": "random_crop", "seconds": 0.6}],
    "clmr": [
        {"name": "random_crop", "seconds": 0.8},
        {"name": "polarity", "p": 0.8},
        {"name": "noise", "p": 0.01, "snr_db": [10.0, 30.0]},
        {"name": "gain", "p": 0.3, "min_db": -6.0, "max_db": 0.0},
        {"name": "filter", "p": 0.8},
        {"name": "delay", "p": 0.3},
        {"name": "pitch_shift", "p": 0.6, "semitones": 4.0},
        {"name": "reverb", "p": 0.6},
    ],
    # BYOL-A's augmentation for little data: mixup with a background memory and a random resize
    # (speed) + crop, plus level, noise and SpecAugment masks; cheap steps only (no phase vocoder)
    "byola": [
        {"name": "mixup", "ratio": 0.4},
        {"name": "speed", "min_rate": 0.8, "max_rate": 1.25},
        {"name": "time_shift", "max_seconds": 0.1},
        {"name": "gain", "min_db": -6.0, "max_db": 6.0},
        {"name": "noise", "p": 0.5, "snr_db": [10.0, 40.0]},
        {"name": "spec_mask", "p": 0.5},
    ],
    "light": [
        {"name": "time_shift", "max_seconds": 0.15},
        {"name": "gain"},
        {"name": "noise", "p": 0.8, "snr_db": [5.0, 30.0]},
    ],
}


#: the one engine (domains/views.py) over these steps and policies; steps that declare ``sr`` get the
#: policy's sample rate
ENGINE = ViewEngine(
    "audio",
    STEPS,
    POLICIES,
    prepare=lambda x: np.asarray(x, dtype=np.float32),
    context=("sr",),
    draw_every_step=True,
)
check_steps = ENGINE.check


def apply_policy(x: np.ndarray, rng: np.random.Generator, steps: list[Step], sr: int) -> np.ndarray:
    """Apply each step with its probability ``p`` (default 1)."""
    return np.ascontiguousarray(ENGINE.apply(x, rng, steps, sr=sr), dtype=np.float32)
