"""Tests for stages.evaluate.probes (TS2Vec-style frozen-feature probes)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

from stages.evaluate import probes
from stages.evaluate.probes import (
    PROBES,
    SVM_C_GRID,
    evaluate_probes,
    fit_knn,
    fit_linear,
    fit_svm,
    svm_grid_jobs,
    svm_uses_grid_search,
)

ALL_PROBES = ["svm", "linear", "knn"]


def blobs(n_per_class: int, n_classes: int, dim: int = 8, sep: float = 6.0, seed: int = 0):
    """Well-separated isotropic gaussian blobs, labels 0..n_classes-1."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim))
    centers *= sep / np.linalg.norm(centers, axis=1, keepdims=True)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centers[y] + rng.normal(size=(y.shape[0], dim))
    perm = rng.permutation(y.shape[0])
    return x[perm], y[perm]


class GridSpy(probes.GridSearchCV):
    """GridSearchCV that records the shape of every training set it is fitted on."""

    calls: ClassVar[list[tuple[int, ...]]] = []

    def fit(self, X, y=None, **params):
        GridSpy.calls.append(np.shape(X))
        return super().fit(X, y, **params)


@pytest.fixture
def grid_spy(monkeypatch):
    GridSpy.calls = []
    monkeypatch.setattr(probes, "GridSearchCV", GridSpy)
    return GridSpy.calls


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("n_classes", [2, 3])
def test_probes_separate_separable_blobs(n_classes):
    x, y = blobs(60, n_classes, seed=1)
    n_train = 30 * n_classes
    x_tr, y_tr, x_te, y_te = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    res = evaluate_probes(x_tr, y_tr, x_te, y_te, ALL_PROBES, seed=0)
    for name in ALL_PROBES:
        assert res[name] >= 0.95, (name, res)
    assert "svm_C" in res  # >= 50 samples, >= 5 per class: grid branch
    assert res["svm_C"] in SVM_C_GRID


def test_probes_near_chance_on_random_labels():
    rng = np.random.default_rng(0)
    x_tr, x_te = rng.normal(size=(100, 8)), rng.normal(size=(300, 8))
    y_tr, y_te = rng.integers(0, 2, size=100), rng.integers(0, 2, size=300)
    res = evaluate_probes(x_tr, y_tr, x_te, y_te, ALL_PROBES, seed=0)
    for name in ALL_PROBES:
        assert 0.35 <= res[name] <= 0.65, (name, res)


def test_evaluate_probes_only_requested_and_deterministic():
    x, y = blobs(30, 2, seed=3)
    a = evaluate_probes(x[:40], y[:40], x[40:], y[40:], ["knn", "linear"], seed=5)
    b = evaluate_probes(x[:40], y[:40], x[40:], y[40:], ["knn", "linear", "knn"], seed=5)
    assert a == b
    assert set(a) == {"knn", "linear"}
    assert all(isinstance(v, float) for v in a.values())


# --------------------------------------------------------------------------- svm branches


@pytest.mark.parametrize(
    ("n_samples", "n_classes", "expected"),
    [(49, 2, False), (50, 2, True), (60, 12, True), (59, 12, False), (1000, 201, False)],
)
def test_svm_branch_rule_matches_ts2vec(n_samples, n_classes, expected):
    assert svm_uses_grid_search(n_samples, n_classes) is expected


def test_fit_svm_grid_search_branch(grid_spy):
    x, y = blobs(30, 2, seed=2)  # 60 samples
    est = fit_svm(x, y)
    assert len(grid_spy) == 1 and grid_spy[0] == (60, 8)
    assert isinstance(est, SVC)
    assert est.C in SVM_C_GRID
    assert est.score(x, y) >= 0.95


def test_fit_svm_direct_branch_for_small_data(grid_spy):
    x, y = blobs(10, 2, seed=2)  # 20 samples < 50
    est = fit_svm(x, y)
    assert grid_spy == []
    assert isinstance(est, SVC)
    assert np.inf == est.C  # TS2Vec's hard-margin default, still accepted by sklearn
    assert est.score(x, y) == 1.0
    res = evaluate_probes(x, y, x, y, ["svm"])
    assert "svm_C" not in res


def test_fit_svm_subsamples_large_training_sets(grid_spy):
    x, y = blobs(50, 2, seed=4)
    fit_svm(x, y, max_samples=60)
    assert grid_spy == [(60, 8)]


def test_svm_grid_runs_in_parallel_only_where_it_pays(monkeypatch):
    monkeypatch.setattr(probes.os, "sched_getaffinity", lambda _pid: set(range(8)))
    assert svm_grid_jobs(1_999) == 1  # a pool's start costs more than a small grid
    assert svm_grid_jobs(8_926) == 5  # TS2Vec's 5 at most
    monkeypatch.setattr(probes.os, "sched_getaffinity", lambda _pid: {0, 1})
    assert svm_grid_jobs(8_926) == 2


def test_a_parallel_grid_chooses_and_predicts_as_a_serial_one():
    # overlapping blobs, so C matters and the folds disagree on it
    x, y = blobs(60, 3, sep=1.5, seed=5)
    serial, parallel = fit_svm(x, y, n_jobs=1), fit_svm(x, y, n_jobs=2)
    assert serial.C == parallel.C
    np.testing.assert_array_equal(serial.predict(x), parallel.predict(x))


def test_fit_linear_and_knn_return_pipelines():
    x, y = blobs(10, 3, seed=5)
    lin = fit_linear(x, y, seed=1)
    knn = fit_knn(x, y, k=1000)  # clipped to the 30 training rows
    assert isinstance(lin, Pipeline) and isinstance(knn, Pipeline)
    assert knn[-1].n_neighbors == 30
    assert fit_knn(x, y)[-1].n_neighbors == 1
    assert lin.score(x, y) >= 0.95
    with pytest.raises(ValueError, match="k must be"):
        fit_knn(x, y, k=0)


def test_probes_registry():
    assert {"svm": fit_svm, "linear": fit_linear, "knn": fit_knn} == PROBES


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_raise(bad):
    x, y = blobs(10, 2)
    x_bad = x.copy()
    x_bad[3, 2] = bad
    with pytest.raises(ValueError, match="NaN/Inf"):
        evaluate_probes(x_bad, y, x, y, ["knn"])
    with pytest.raises(ValueError, match="NaN/Inf"):
        evaluate_probes(x, y, x_bad, y, ["knn"])
    with pytest.raises(ValueError, match="NaN/Inf"):
        fit_linear(x_bad, y)


def test_unknown_probe_raises_keyerror_listing_known():
    x, y = blobs(10, 2)
    with pytest.raises(KeyError, match="known probes.*knn.*linear.*svm"):
        evaluate_probes(x, y, x, y, ["knn", "mlp"])


@pytest.mark.parametrize(
    ("train_x", "train_y", "test_x", "test_y", "match"),
    [
        (np.zeros(10), np.arange(10) % 2, np.zeros((4, 1)), np.zeros(4), "2D"),
        (np.ones((10, 2)), np.arange(9) % 2, np.ones((4, 2)), np.zeros(4), "labels"),
        (np.ones((10, 2)), np.zeros(10), np.ones((4, 2)), np.zeros(4), "at least 2 classes"),
        (np.ones((10, 2)), np.arange(10) % 2, np.ones((4, 3)), np.zeros(4), "feature dims"),
        (np.ones((10, 2)), np.arange(10) % 2, np.ones((4, 2)), np.zeros(5), "labels"),
        (np.full((10, 2), "a"), np.arange(10) % 2, np.ones((4, 2)), np.zeros(4), "dtype"),
    ],
)
def test_invalid_inputs_raise_valueerror(train_x, train_y, test_x, test_y, match):
    with pytest.raises(ValueError, match=match):
        evaluate_probes(train_x, train_y, test_x, test_y, ["knn"])


def test_integer_features_are_accepted():
    x, y = blobs(10, 2)
    x_int = np.round(x * 10).astype(np.int64)
    res = evaluate_probes(x_int, y, x_int, y, ["knn"])
    assert res["knn"] == 1.0
