"""The frozen-encoder linear head: L2-regularised logistic regression, fitted to convergence.

A linear probe on frozen features is a convex problem, so it is solved exactly (scikit-learn's
L-BFGS) rather than by a few epochs of Adam with early stopping, which left heads undertrained
wherever the features' scale or the label count made the default learning rate a poor fit (the
GunPoint demo's pretrained linear head scored 0.77 at 10% labels, under its random-init one).
The regularisation strength ``C`` is chosen on the run's validation labels only (highest
validation accuracy, ties broken by lower validation log-loss), as in the linear-probe sweep of
Radford et al. 2021 (CLIP); the head is then refitted with that ``C`` on every label of the
budget. A budget too small to hold validation labels uses ``C = 1`` (TS2Vec's ``fit_lr``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from torch import nn

#: logit of a class no training label shows: never predicted, exp() still finite in float32
ABSENT_LOGIT = -1e4
DEFAULT_C = 1.0


@dataclass(frozen=True)
class LinearFit:
    weight: np.ndarray  # [n_classes, D], acting on raw (unstandardised) features
    bias: np.ndarray  # [n_classes]
    C: float
    val_accuracy: float | None  # of the chosen C, before the refit; None without validation labels
    n_iter: int

    def copy_into(self, fc: nn.Linear) -> None:
        with torch.no_grad():
            fc.weight.copy_(torch.as_tensor(self.weight, dtype=fc.weight.dtype, device=fc.weight.device))
            fc.bias.copy_(torch.as_tensor(self.bias, dtype=fc.bias.dtype, device=fc.bias.device))


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # raw max-pooled features differ in scale by orders of magnitude (as TS2Vec's fit_lr, which
    # puts a StandardScaler first); statistics of the rows the head is fitted on only
    return x.mean(0), np.maximum(x.std(0), 1e-6)


def _logreg(x: np.ndarray, y: np.ndarray, C: float, seed: int) -> LogisticRegression:
    clf = LogisticRegression(C=C, max_iter=5000, random_state=seed)
    with warnings.catch_warnings():
        # a barely regularised fit on separable data may stop at max_iter: its weights still
        # classify, and the choice of C sees how well on validation labels
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def _full_logits(clf: LogisticRegression, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of ``n_classes`` softmax logits equal to ``clf``'s class probabilities."""
    d = clf.coef_.shape[1]
    weight = np.zeros((n_classes, d), np.float64)
    bias = np.full(n_classes, ABSENT_LOGIT, np.float64)
    classes = clf.classes_.astype(int)
    if len(classes) == 2:  # scikit-learn keeps one score z = P(class 1) logit: softmax([-z/2, z/2])
        weight[classes[0]], weight[classes[1]] = -clf.coef_[0] / 2, clf.coef_[0] / 2
        bias[classes[0]], bias[classes[1]] = -clf.intercept_[0] / 2, clf.intercept_[0] / 2
    else:
        weight[classes], bias[classes] = clf.coef_, clf.intercept_
    return weight, bias


def fit_linear_head(
    feats: np.ndarray,
    y: np.ndarray,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
    n_classes: int,
    c_grid: Sequence[float],
    seed: int,
) -> LinearFit:
    """Fit softmax logits ``feats @ W.T + b`` on rows ``fit_idx`` (C chosen on ``val_idx``), then on both."""
    fit_idx, val_idx = np.asarray(fit_idx, int), np.asarray(val_idx, int)
    C, val_acc = DEFAULT_C, None
    if len(val_idx) and len(np.unique(y[fit_idx])) > 1:
        mean, std = _standardiser(feats[fit_idx])
        xf, xv = (feats[fit_idx] - mean) / std, (feats[val_idx] - mean) / std
        scored = []
        for c in c_grid:
            clf = _logreg(xf, y[fit_idx], c, seed)
            acc = float((clf.predict(xv) == y[val_idx]).mean())
            loss = log_loss(y[val_idx], clf.predict_proba(xv), labels=clf.classes_)
            scored.append((-acc, loss, c))
        best = min(scored)
        val_acc, C = -best[0], best[2]
    rows = np.concatenate([fit_idx, val_idx])
    mean, std = _standardiser(feats[rows])
    labels = y[rows]
    if len(np.unique(labels)) == 1:  # one class seen: the head can only predict it
        weight = np.zeros((n_classes, feats.shape[1]))
        bias = np.full(n_classes, ABSENT_LOGIT)
        bias[int(labels[0])] = 0.0
        return LinearFit(weight, bias, C, val_acc, 0)
    clf = _logreg((feats[rows] - mean) / std, labels, C, seed)
    weight, bias = _full_logits(clf, n_classes)
    # fold the standardisation in, so the head takes the encoder's raw output
    return LinearFit(weight / std, bias - (weight / std) @ mean, C, val_acc, int(np.max(clf.n_iter_)))
