"""Which z-normalisation a set of series needs, decided from its training rows.

The UCR archive z-normalises most sets series by series, but not all: TS2Vec (Yue et al., 2022)
lists 34 of the 128 sets that ship unnormalised and z-scores those with the *training set's*
mean and std, keeping each series' level and scale. Per-series z-normalisation throws those away:
on InsectEPGSmallTrain the level is the class (TS2Vec 1.000, ours per series 0.771). A user's own
series are like these more often than like the archive's.

The rule needs no list: a training split whose every series already has mean 0 and std 1 (to
``ZNORM_TOLERANCE``, every channel) was normalised series by series at its source, and keeps that
convention (re-applying it changes nothing but rounding); any other split is z-scored per channel
with the training rows' statistics, applied unchanged to every row, test rows included. On the 93
offline UCR sets, archive-normalised sets deviate by at most 0.021 (ItalyPowerDemand: ddof 1 on 24
steps) and each of TS2Vec's unnormalised sets by 0.66 or more; the three DodgerLoop sets (about 25)
are unnormalised too, though TS2Vec leaves them raw.

Ingest applies this with ``data.normalise: auto`` (or ``train``); the default stays ``per_row``,
because on validation splits of 7 of those unnormalised sets per-series z-normalisation scored
higher (0.820 vs 0.790, 3 seeds; ``bench/results/ucr_normalise_validation.md``): the level helps on
some sets (MelbournePedestrian, InsectEPG) and drowns the shape on others (GestureMidAirD1).

``per_row_stats`` keeps both: every series z-normalised on its own (the shape, as ``per_row``),
and, for a split that is not already z-normalised (the same test as ``auto``), each channel's level
and scale as two more channels, constant along time: ``(row mean - train mean) / train std`` and
``log(row std / train std)``, with the training rows' per-channel statistics. A ``C``-channel series
becomes ``3C`` channels ``[shape..., level..., log scale...]``; an already-normalised split is left
exactly as ``per_row`` leaves it (nothing to add: every level is 0 and every scale 1). On the same
7 validation splits it scored 0.767 ± 0.013 against ``per_row``'s 0.820 (3 seeds,
``bench/results/ucr_normalise_stats_validation.md``): it won where the level is the class
(MelbournePedestrian 0.933 vs 0.862, InsectEPG 1.000 vs 0.944) and lost 29 points on
GestureMidAirD1, where a level that is constant along the series and differs between series lets
TS2Vec's instance contrast tell series apart without reading their shape. Not the default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: the largest |mean| or |std - 1| of any training series (any channel) that still counts as
#: already z-normalised
ZNORM_TOLERANCE = 0.05
#: a channel whose training std is below this is constant: divided by 1, not by ~0
MIN_STD = 1e-8
#: ``per_row_stats``: the log-scale channel is clipped to +-this (a constant series has std 0)
MAX_LOG_SCALE = 5.0


@dataclass
class SeriesStats:
    """Running per-channel sums over training series, and the largest deviation of any one series
    from mean 0 / std 1 (float64 throughout: float32 sums of squares overflow near 1e19)."""

    count: np.ndarray | None = None
    total: np.ndarray | None = None
    total_sq: np.ndarray | None = None
    max_deviation: float = 0.0
    series: int = 0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if self.count is None:
            c = x.shape[0]
            self.count, self.total, self.total_sq = np.zeros(c), np.zeros(c), np.zeros(c)
        if x.shape[0] != len(self.count):
            raise ValueError(f"series have different channel counts ({len(self.count)} and {x.shape[0]})")
        mean, std = x.mean(axis=1), x.std(axis=1)
        self.max_deviation = max(self.max_deviation, float(np.abs(mean).max()), float(np.abs(std - 1).max()))
        self.count += x.shape[1]
        self.total += x.sum(axis=1)
        self.total_sq += (x * x).sum(axis=1)
        self.series += 1

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.count is not None and self.total is not None and self.total_sq is not None
        mean = self.total / self.count
        var = np.maximum(self.total_sq / self.count - mean * mean, 0.0)
        return mean, np.sqrt(var)


@dataclass
class Normaliser:
    """What ingest applies to every row: ``per_row`` (the domain's per-series z-normalisation),
    ``train`` (fixed per-channel mean/std from the training rows), ``per_row_stats`` (per series,
    plus each channel's level and log scale against the training statistics as extra channels:
    ``C`` channels in, ``3C`` out) or ``none``."""

    kind: str
    reason: str = ""
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "none":
            return x
        if self.kind == "per_row":
            return znormalise_rows(x)
        mean = np.asarray(self.mean, dtype=np.float64)[:, None]
        std = np.asarray(self.std, dtype=np.float64)[:, None]
        if self.kind == "per_row_stats":
            return with_level_and_scale(x, mean, std)
        return ((x.astype(np.float64) - mean) / std).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"chosen": self.kind, "reason": self.reason}
        if self.kind in ("train", "per_row_stats"):
            out.update(mean=[round(v, 6) for v in self.mean], std=[round(v, 6) for v in self.std])
        return out


def znormalise_rows(x: np.ndarray) -> np.ndarray:
    """Per-series, per-channel z-normalisation (the UCR convention); constant channels → 0."""
    x = x.astype(np.float64)  # float32 overflows squaring values near its maximum (~3e38)
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    return ((x - mean) / np.where(std > MIN_STD, std, 1.0)).astype(np.float32)


def with_level_and_scale(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``per_row_stats``: ``x`` ``[C, T]`` z-normalised per series, then per channel its level
    ``(row mean - mean) / std`` and log scale ``log(row std / std)`` (clipped to
    ``+-MAX_LOG_SCALE``) repeated along time: ``[3C, T]``. ``mean``, ``std``: ``[C, 1]``."""
    x64 = x.astype(np.float64)
    row_mean = x64.mean(axis=1, keepdims=True)
    row_std = x64.std(axis=1, keepdims=True)
    level = (row_mean - mean) / std
    with np.errstate(divide="ignore"):
        log_scale = np.clip(np.log(row_std / std), -MAX_LOG_SCALE, MAX_LOG_SCALE)
    steps = np.ones((1, x.shape[1]))
    return np.concatenate([znormalise_rows(x), level * steps, log_scale * steps]).astype(np.float32)


def fit(train_xs: Iterable[np.ndarray], mode: str) -> Normaliser:
    """The normaliser ``data.normalise`` (``mode``) gives for these training series: ``per_row`` and
    ``none`` need no statistics (the series are not read), ``auto``, ``train`` and
    ``per_row_stats`` are fitted."""
    if mode in ("per_row", "none"):
        return Normaliser(mode, f"data.normalise={mode}")
    stats = SeriesStats()
    for x in train_xs:
        stats.add(x)
    if stats.count is None:  # no training rows (an evaluation-only set): nothing to fit on
        return Normaliser("per_row", "no training rows: each series z-normalised on its own")
    dev = f"every training series' mean and std within {stats.max_deviation:.4f} of 0 and 1"
    if mode in ("auto", "per_row_stats") and stats.max_deviation <= ZNORM_TOLERANCE:
        return Normaliser("per_row", f"already z-normalised ({dev}, tolerance {ZNORM_TOLERANCE})")
    mean, std = stats.mean_std()
    std = np.where(std > MIN_STD, std, 1.0)
    if mode == "train":
        reason = "data.normalise=train"
    else:
        what = (
            "z-normalised per series, level and log scale against the statistics of"
            if mode == "per_row_stats"
            else "z-scored with the statistics of"
        )
        reason = (
            f"not z-normalised (a training series deviates by {stats.max_deviation:.4g} > "
            f"{ZNORM_TOLERANCE}): {what} {stats.series} training series"
        )
    kind = "per_row_stats" if mode == "per_row_stats" else "train"
    return Normaliser(kind, reason, [float(v) for v in mean], [float(v) for v in std])
