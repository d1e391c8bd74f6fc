"""The linear head is scikit-learn's logistic regression, its C chosen on validation labels only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from stages.finetune.linear_head import fit_linear_head

GRID = [1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]


def _features(n: int, n_classes: int, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centres = rng.normal(size=(n_classes, d)) * 1.5
    # features of very different scales, as max-pooled encoder outputs are
    x = (centres[y] + rng.normal(size=(n, d))) * np.logspace(-3, 3, d)
    return x.astype(np.float32), y.astype(np.int64)


def _head_probs(fit, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    fc = nn.Linear(x.shape[1], fit.weight.shape[0])
    fit.copy_into(fc)
    with torch.no_grad():
        return torch.softmax(fc(torch.from_numpy(x)), 1).double().numpy()


@pytest.mark.parametrize("n_classes", [2, 4])
def test_the_head_on_raw_features_gives_the_refitted_logistic_regressions_probabilities(
    n_classes: int,
) -> None:
    x, y = _features(80, n_classes)
    fit_idx, val_idx = np.arange(60), np.arange(60, 80)
    fit = fit_linear_head(x, y, fit_idx, val_idx, n_classes, GRID, seed=0)
    assert fit.C in GRID and fit.val_accuracy is not None
    # the same model by hand: scaler + logistic regression with the chosen C, on fit + validation rows
    scaler = StandardScaler().fit(x[:80])
    ref = LogisticRegression(C=fit.C, max_iter=5000).fit(scaler.transform(x[:80]), y[:80])
    x_new, _ = _features(40, n_classes, seed=1)
    np.testing.assert_allclose(_head_probs(fit, x_new), ref.predict_proba(scaler.transform(x_new)), atol=2e-3)


def test_c_is_the_grid_value_with_the_best_validation_accuracy() -> None:
    x, y = _features(60, 3, d=40)
    x[:, 10:] = np.random.default_rng(2).normal(size=(60, 30))  # many noise dimensions: C matters
    fit_idx, val_idx = np.arange(15), np.arange(15, 60)
    fit = fit_linear_head(x, y, fit_idx, val_idx, 3, GRID, seed=0)
    scaler = StandardScaler().fit(x[fit_idx])
    accs = {
        c: LogisticRegression(C=c, max_iter=5000)
        .fit(scaler.transform(x[fit_idx]), y[fit_idx])
        .score(scaler.transform(x[val_idx]), y[val_idx])
        for c in GRID
    }
    assert fit.val_accuracy == pytest.approx(max(accs.values()))
    assert accs[fit.C] == max(accs.values())


def test_without_validation_labels_c_is_1_and_a_class_no_label_shows_is_never_predicted() -> None:
    x, y = _features(30, 3)
    rows = np.flatnonzero(y != 2)[:8]  # class 2 has no label in the budget
    fit = fit_linear_head(x, y, rows, np.array([], int), 3, GRID, seed=0)
    assert fit.C == 1.0 and fit.val_accuracy is None
    probs = _head_probs(fit, x)
    assert np.isfinite(probs).all() and (probs.argmax(1) != 2).all()


def test_a_budget_with_one_class_predicts_that_class() -> None:
    x, y = _features(10, 2)
    fit = fit_linear_head(x, y, np.flatnonzero(y == 1), np.array([], int), 2, GRID, seed=0)
    assert (_head_probs(fit, x).argmax(1) == 1).all()


def test_features_of_wildly_different_scales_still_reach_a_separating_head() -> None:
    """The failure the convex fit replaced: a few epochs of Adam on such features left the head short."""
    x, y = _features(200, 2)
    fit = fit_linear_head(x, y, np.arange(8), np.arange(8, 10), 2, GRID, seed=0)
    assert (_head_probs(fit, x[10:]).argmax(1) == y[10:]).mean() >= 0.9
