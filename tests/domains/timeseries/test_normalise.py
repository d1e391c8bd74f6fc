"""``data.normalise: auto`` for time series: series z-normalised at the source stay per series, any
other set is z-scored with its training rows' statistics (never the test rows'), so level and scale
survive ingest."""

from __future__ import annotations

import numpy as np
import pytest

from domains import get_domain
from domains.timeseries import normalise as znorm
from stages.common.config import ConfigError, load_recipe


def _series(rng: np.random.Generator, n: int, level: float, channels: int = 1, length: int = 50) -> list:
    return [level + rng.normal(size=(channels, length)).astype(np.float32) for _ in range(n)]


def test_archive_normalised_series_keep_the_per_series_rule_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    domain = get_domain("timeseries")
    train = [domain.normalise(x) for x in _series(rng, 20, level=3.0)]
    norm = domain.fit_normaliser(iter(train), "auto")
    assert norm.kind == "per_row" and "already z-normalised" in norm.describe()["reason"]
    raw_test = _series(rng, 5, level=-7.0)[0]  # whatever a test row holds, it is normalised on its own
    np.testing.assert_array_equal(norm(raw_test), domain.normalise(raw_test))


def test_unnormalised_series_are_z_scored_with_training_statistics_only() -> None:
    rng = np.random.default_rng(1)
    # the class is the level: per-series z-normalisation would make the two classes identical in law
    low, high = _series(rng, 10, level=2.0), _series(rng, 10, level=6.0)
    norm = get_domain("timeseries").fit_normaliser(iter(low + high), "auto")
    assert norm.kind == "train"
    everything = np.concatenate([x[0] for x in low + high]).astype(np.float64)
    np.testing.assert_allclose(norm.mean, [everything.mean()], rtol=1e-9)
    np.testing.assert_allclose(norm.std, [everything.std()], rtol=1e-9)
    a, b = norm(low[0]), norm(high[0])
    assert a.mean() < -0.5 < 0.5 < b.mean()  # the levels are kept apart
    # a test row is mapped with the training statistics, whatever its own are
    test = np.full((1, 50), 100.0, np.float32)
    np.testing.assert_allclose(norm(test), (100.0 - everything.mean()) / everything.std(), rtol=1e-5)
    assert norm.describe()["chosen"] == "train" and len(norm.describe()["mean"]) == 1


def test_statistics_are_per_channel_and_a_constant_channel_is_not_divided_by_zero() -> None:
    rng = np.random.default_rng(2)
    xs = _series(rng, 8, level=0.0, channels=2, length=30)
    for x in xs:
        x[0] = 5.0 * x[0] + 10.0
        x[1] = 4.0  # constant over the whole training set
    norm = znorm.fit(iter(xs), "auto")
    assert norm.kind == "train" and norm.std[1] == 1.0
    out = np.stack([norm(x) for x in xs])
    np.testing.assert_allclose(out[:, 0].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(out[:, 0].std(), 1.0, rtol=1e-5)
    assert np.isfinite(out).all() and (out[:, 1] == 0.0).all()


def test_train_mode_z_scores_even_normalised_series_and_none_keeps_them() -> None:
    rng = np.random.default_rng(3)
    domain = get_domain("timeseries")
    train = [domain.normalise(x) for x in _series(rng, 6, level=0.0)]
    assert znorm.fit(iter(train), "train").kind == "train"
    assert znorm.fit(iter([]), "auto").kind == "per_row"  # no training rows: nothing to fit on


def test_the_fingerprint_sees_the_level_that_ingest_kept() -> None:
    domain = get_domain("timeseries")
    t = np.linspace(0, 6, 100)
    shape = np.sin(t)[None].astype(np.float32)
    # z-scored with training statistics: one shape at two levels is two different training inputs
    fp = domain.fingerprint([shape + 1.0, shape + 3.0])
    assert float(fp[0] @ fp[1]) < domain.near_threshold
    # stored per series (the archive convention): the fingerprint is the per-series one, as before
    z = domain.normalise(shape)
    fz = domain.fingerprint([z, domain.normalise(2.0 * shape + 5.0)])
    assert float(fz[0] @ fz[1]) > 0.99999


def test_train_statistics_are_refused_where_a_domain_has_none() -> None:
    with pytest.raises(ConfigError, match=r"data\.normalise: 'train'.*'pointcloud'"):
        load_recipe("pipelines/pointcloud-catalogue.yaml", "params.yaml", ["data.normalise=train"])
    with pytest.raises(ConfigError, match=r"data\.normalise"):
        load_recipe("pipelines/timeseries-gunpoint.yaml", "params.yaml", ["data.normalise=global"])


def test_per_row_stats_keeps_the_shape_per_series_and_adds_level_and_scale_channels() -> None:
    rng = np.random.default_rng(4)
    # two channels; the class is the level of channel 0 and the scale of channel 1
    xs = _series(rng, 12, level=0.0, channels=2, length=40)
    for i, x in enumerate(xs):
        x[0] += 4.0 * (i % 2)
        x[1] *= 1.0 + 2.0 * (i % 2)
    norm = znorm.fit(iter(xs), "per_row_stats")
    assert norm.kind == "per_row_stats"
    assert "level and log scale" in norm.describe()["reason"] and len(norm.describe()["mean"]) == 2
    mean, std = np.asarray(norm.mean), np.asarray(norm.std)
    test = (7.0 + 3.0 * rng.normal(size=(2, 25))).astype(np.float32)  # a test row: training statistics
    out = norm(test)
    assert out.shape == (6, 25) and out.dtype == np.float32
    np.testing.assert_allclose(out[:2], znorm.znormalise_rows(test), atol=1e-6)  # the shape, per series
    np.testing.assert_allclose(out[2:4], np.repeat(((test.mean(1) - mean) / std)[:, None], 25, 1), rtol=1e-5)
    np.testing.assert_allclose(out[4:], np.repeat(np.log(test.std(1) / std)[:, None], 25, 1), rtol=1e-5)
    # the per-series shape alone cannot tell the classes apart; the level and scale channels can
    outs = [norm(x) for x in xs]
    assert min(o[2, 0] for o in outs[1::2]) > max(o[2, 0] for o in outs[0::2])
    assert min(o[5, 0] for o in outs[1::2]) > max(o[5, 0] for o in outs[0::2])
    # a constant series (std 0) gets a finite, clipped log scale
    flat = norm(np.full((2, 10), 3.0, np.float32))
    assert np.isfinite(flat).all() and (flat[4:] == -znorm.MAX_LOG_SCALE).all()


def test_per_row_stats_leaves_an_already_normalised_set_exactly_as_per_row() -> None:
    rng = np.random.default_rng(5)
    domain = get_domain("timeseries")
    train = [domain.normalise(x) for x in _series(rng, 10, level=2.0)]
    norm = domain.fit_normaliser(iter(train), "per_row_stats")
    assert norm.kind == "per_row"
    raw = _series(rng, 1, level=-3.0)[0]
    np.testing.assert_array_equal(norm(raw), domain.normalise(raw))


def test_per_row_stats_is_refused_where_a_domain_has_no_training_statistics() -> None:
    with pytest.raises(ConfigError, match=r"data\.normalise: 'per_row_stats'.*'audio'"):
        load_recipe("pipelines/audio-speech.yaml", "params.yaml", ["data.normalise=per_row_stats"])
