"""bench/audio_dtw_baseline.py: MFCC + DTW nearest-template scoring of labelled word sets."""

from __future__ import annotations

import numpy as np

from bench import audio_dtw_baseline as dtw

SR = 8000


def _chirp(f0: float, f1: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.5 * np.sin(phase)).astype(np.float32)[None, :]


def test_word_order_is_what_tells_two_words_apart() -> None:
    """A rising and a falling sweep hold the same frequencies: pooled MFCC statistics barely differ,
    DTW over the sequence separates them for every person (pitch offset, speaking rate)."""
    rows = [
        {"x": _chirp(lo, hi, sec) if word == "up" else _chirp(hi, lo, sec), "label": word, "group": person}
        for person, (lo, hi, sec) in {
            "Carlo": (300, 1500, 0.5),
            "Ann": (400, 1800, 0.7),
            "Bo": (250, 1300, 0.6),
        }.items()
        for word in ("up", "down")
    ]
    res = dtw.score_word_set(rows)
    assert res["n"] == 6 and res["classes"] == 2
    assert res["loso"] == 1.0 and set(res["loso_per_person"]) == {"Carlo", "Ann", "Bo"}
    assert res["split"] == 1.0  # Carlo held out (June absent): scored on Carlo's two words


def test_nearest_template_accuracy_uses_only_the_training_rows() -> None:
    d = np.array([[0, 1, 5], [1, 0, 4], [5, 4, 0]], dtype=float)
    labels = np.array(["a", "b", "b"])
    # row 0's nearest training row is row 1 (itself excluded): label b, wrong
    assert dtw.nearest_template_accuracy(d, labels, np.array([1, 2]), np.array([0])) == 0.0
    assert dtw.nearest_template_accuracy(d, labels, np.array([0, 2]), np.array([1])) == 0.0
    assert dtw.nearest_template_accuracy(d, labels, np.array([0, 1]), np.array([2])) == 1.0
