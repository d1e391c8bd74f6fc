"""BYOL-A's augmentations for little real speech: mixup with a background memory, random resize."""

from __future__ import annotations

import numpy as np

from domains.audio import views


def _burst(start: int, length: int, n: int = 8000) -> np.ndarray:
    x = np.zeros((1, n), np.float32)
    x[0, start : start + length] = np.sin(np.arange(length) * 0.3)
    return x


def _crossings(y: np.ndarray) -> int:
    return int(np.sum(np.diff(np.sign(y[0, 100:-100])) != 0))


def test_speed_resizes_in_time_and_pitch_and_keeps_the_length() -> None:
    x = np.sin(np.arange(8000) * 0.3)[None, :].astype(np.float32)
    for seed in range(3):
        slow = views.speed(x, np.random.default_rng(seed), min_rate=0.5, max_rate=0.5)
        assert slow.shape == x.shape and slow.dtype == np.float32
        # half speed: the tone lasts twice as long at half the pitch, i.e. half the zero crossings
        assert abs(_crossings(slow) / _crossings(x) - 0.5) < 0.05
    fast = views.speed(x, np.random.default_rng(0), min_rate=2.0, max_rate=2.0)
    # double speed: half the length is the sped-up tone (double pitch), the rest is padding
    assert (np.abs(fast) > 1e-3).sum() <= 4100 and fast.shape == x.shape


def test_mixup_adds_a_remembered_clip(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(views, "_BACKGROUND", [])
    rng = np.random.default_rng(0)
    a, b = _burst(0, 2000), _burst(5000, 2000)
    first = views.mixup(a, rng)  # empty memory: a shifted copy of the clip itself is the background
    assert first.shape == a.shape and np.abs(first[0, 2000:]).max() > 0
    mixed = views.mixup(b, rng, ratio=0.4)
    # b's burst is kept (weight >= 0.6) and a's burst appears where b was silent
    assert np.abs(mixed[0, 5000:7000]).max() > 0.55 and np.abs(mixed[0, :2000]).max() > 0
    assert len(views._BACKGROUND) == 2
    for _ in range(5):
        views.mixup(a, rng, memory=2)
    assert len(views._BACKGROUND) == 2  # a full memory replaces, never grows


def test_byola_policy_is_valid_and_cheap_steps_only() -> None:
    steps = views.ENGINE.resolve("byola")
    assert {s["name"] for s in steps} >= {"mixup", "speed"}
    y = views.apply_policy(_burst(2000, 3000), np.random.default_rng(0), steps, 8000)
    assert y.shape == (1, 8000) and np.isfinite(y).all()
