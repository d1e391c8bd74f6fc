"""The few-label Dice protocol's scoring and its intensity baseline (domains/medical/tasks.py)."""

from __future__ import annotations

import numpy as np

from domains.medical.tasks import _test_dice, intensity_dice


def _bands(n: int, rng: np.random.Generator, means: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)) -> tuple:
    """Patches ``[n, 1, 8, 8, 8]`` whose voxel label is the intensity band it was drawn from."""
    ys = rng.integers(0, len(means), size=(n, 1, 8, 8, 8))
    xs = np.asarray(means, dtype=np.float32)[ys] + rng.normal(0, 0.1, size=ys.shape).astype(np.float32)
    return xs, ys


def test_dice_is_scored_per_class_without_background() -> None:
    y = np.zeros((1, 1, 4, 4, 4), dtype=np.int64)
    y[0, 0, :2] = 1  # class 1: 32 voxels
    y[0, 0, 3] = 2  # class 2: 16 voxels; the other 16 are background, which is not scored
    pred = y.copy()
    pred[0, 0, 0, :2] = 0  # 8 of class 1's voxels missed
    pred[0, 0, 2] = 2  # 16 background voxels called class 2
    dice = _test_dice(lambda x: pred, np.zeros_like(y, dtype=np.float32), y, 3)
    assert dice.shape == (2,)
    assert np.allclose(dice, [2 * 24 / (24 + 32), 2 * 16 / (32 + 16)])


def test_intensity_baseline_separates_intensity_bands() -> None:
    rng = np.random.default_rng(0)
    xs, ys = _bands(4, rng)
    test_xs, test_ys = _bands(6, rng)
    dice = intensity_dice(4, xs, ys, test_xs, test_ys)
    assert dice.shape == (3,) and (dice > 0.99).all()


def test_intensity_baseline_fits_on_the_labelled_patches_only() -> None:
    """Test patches labelled by another rule than the training patches score badly: the labels the
    baseline predicts come from the training patches, never from the test masks."""
    rng = np.random.default_rng(1)
    xs, ys = _bands(4, rng)
    test_xs, test_ys = _bands(6, rng)
    swapped = np.array([0, 3, 1, 2])[test_ys]  # the test masks' classes permuted
    assert (intensity_dice(4, xs, ys, test_xs, swapped) < 0.05).all()


def test_intensity_baseline_reads_every_channel() -> None:
    """Two channels, classes told apart only by the second one."""
    rng = np.random.default_rng(2)
    ys = rng.integers(0, 3, size=(5, 1, 6, 6, 6))
    noise = rng.normal(0, 0.1, size=(5, 2, 6, 6, 6)).astype(np.float32)
    xs = noise + np.concatenate([np.zeros_like(ys), 2.0 * ys], axis=1).astype(np.float32)
    dice = intensity_dice(3, xs[:3], ys[:3], xs[3:], ys[3:])
    assert (dice > 0.99).all()
