"""The views preview draws samples as their field looks at them: clouds in 3D, audio with log-mel."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from stages.common.preview import draw_sample, log_mel_db, new_axes, preview_png, sample_kind


def _cloud(n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(n, 3))
    return (pts / np.linalg.norm(pts, axis=1, keepdims=True)).astype(np.float32)


def test_kinds_are_guessed_from_shape_unless_the_domain_names_one() -> None:
    assert sample_kind(_cloud()) == "points"
    assert sample_kind(np.zeros((3, 150))) == "series"
    assert sample_kind(np.zeros((1, 16, 16, 16))) == "volume"
    assert sample_kind(np.zeros((1, 8000)), "audio") == "audio"
    with pytest.raises(ValueError, match="unknown preview kind 'mesh'"):
        sample_kind(np.zeros(3), "mesh")


def test_a_point_cloud_is_drawn_as_a_3d_scatter_of_its_points() -> None:
    fig = plt.figure()
    ax = new_axes(fig, 1, 1, 1, "points")
    draw_sample(ax, _cloud(), "sphere", "points")
    assert ax.name == "3d"
    (points,) = ax.collections
    assert len(points.get_offsets()) == 600  # every point, not a heat map of the [N, 3] array
    assert not ax.images
    plt.close(fig)


def test_log_mel_of_a_tone_peaks_in_its_band() -> None:
    sr = 8000
    t = np.arange(sr) / sr
    low = log_mel_db(np.sin(2 * np.pi * 300 * t), sr)
    high = log_mel_db(np.sin(2 * np.pi * 2500 * t), sr)
    assert low.shape[0] == 64 and low.max() == pytest.approx(0.0)  # dB relative to the peak
    assert np.argmax(low.mean(axis=1)) < np.argmax(high.mean(axis=1))


def _png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_audio_preview_adds_a_spectrogram_row_per_sample() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(1, 4000)).astype(np.float32)
    samples = [("a", y, [y * 0.5, y[:, ::-1].copy()])]
    with_mel = _png_size(preview_png(samples, "audio", sample_rate=8000))
    wave_only = _png_size(preview_png(samples, "series"))
    assert with_mel[0] == wave_only[0] and with_mel[1] == 2 * wave_only[1]
