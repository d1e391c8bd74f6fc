"""Frozen-feature probes for evaluating pretrained encoders.

The three classifiers follow the evaluation protocol of TS2Vec (Yue et al.,
2022; ``yuezhihan/ts2vec``, ``tasks/_eval_protocols.py``): an RBF SVM whose
``C`` is grid-searched (``fit_svm``), a standardised logistic regression
(``fit_lr`` -> :func:`fit_linear`) and a standardised 1-nearest-neighbour
classifier (``fit_knn`` -> :func:`fit_knn`).  All of them take numpy feature
matrices of shape ``(N, D)`` produced by a frozen encoder.

Deviations from the original code, forced by current scikit-learn or chosen
for this project, are marked ``deviation:`` below.  In short: seeds replace the
hard-coded ``random_state=0``; ``n_jobs`` is 1 below 2,000 training rows and the
machine's cores (at most TS2Vec's 5) from there, instead of always 5;
``LogisticRegression(multi_class='ovr')`` no longer exists (deprecated in
scikit-learn 1.5, gone from the 1.9 signature) so the default multinomial loss
is used; stratified subsampling falls back to a plain random one when a class
has a single member; the grid no longer pins ``probability=False`` (the
default; the parameter is deprecated since scikit-learn 1.9).
``SVC(C=np.inf)`` is still accepted and kept as is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import (
    GridSearchCV,
    train_test_split,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

__all__ = [
    "PROBES",
    "SVM_C_GRID",
    "evaluate_probes",
    "fit_knn",
    "fit_linear",
    "fit_svm",
    "svm_grid_jobs",
    "svm_uses_grid_search",
]

#: The ``C`` grid of TS2Vec's ``fit_svm``.  ``np.inf`` is still accepted by
#: ``SVC`` (its ``C`` constraint is the interval ``(0.0, inf]``; checked with
#: scikit-learn 1.9.1, where ``SVC(C=np.inf).fit`` works), so no finite
#: stand-in is needed.
SVM_C_GRID: tuple[float, ...] = (0.0001, 0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000, np.inf)

_SVM_MAX_SAMPLES = 10_000
#: from this many training rows the C grid's fits run in parallel processes: below it a fit takes
#: well under a second and starting the pool costs more than it saves; above it (ElectricDevices'
#: 8,926 rows: 50 fits, each minutes) one process leaves cores idle for hours
_SVM_PARALLEL_ROWS = 2_000
_LR_MAX_SAMPLES = 100_000


# --------------------------------------------------------------------------- validation


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as a finite 2D float array, or raise ``ValueError``."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2D (N, D) array, got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got shape {x.shape}")
    if x.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a real numeric (float) array, got dtype {x.dtype}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} features contain NaN/Inf")
    return x


def _as_labels(y: np.ndarray, n_rows: int, name: str) -> np.ndarray:
    """Return ``y`` as a 1D label array with ``n_rows`` entries, or raise ``ValueError``."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} labels must be 1D, got shape {y.shape}")
    if y.shape[0] != n_rows:
        raise ValueError(f"{name} has {n_rows} feature rows but {y.shape[0]} labels")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{name} labels contain NaN/Inf")
    return y


def _check_train(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = _as_features(x, "train")
    y = _as_labels(y, x.shape[0], "train")
    n_classes = np.unique(y).shape[0]
    if n_classes < 2:
        raise ValueError(f"train labels must contain at least 2 classes, got {n_classes}")
    return x, y


def _subsample(x: np.ndarray, y: np.ndarray, max_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """TS2Vec's ``train_test_split(..., train_size=MAX_SAMPLES, stratify=y)`` cap."""
    if x.shape[0] <= max_samples:
        return x, y
    # deviation: stratify only when possible (every class has >= 2 members);
    # the original raises in that case.  random_state=seed instead of 0.
    stratify = y if np.unique(y, return_counts=True)[1].min() >= 2 else None
    x_sub, _, y_sub, _ = train_test_split(x, y, train_size=max_samples, random_state=seed, stratify=stratify)
    return x_sub, y_sub


# --------------------------------------------------------------------------- probes


def svm_uses_grid_search(n_samples: int, n_classes: int) -> bool:
    """Whether :func:`fit_svm` grid-searches ``C`` (TS2Vec's branch condition).

    TS2Vec fits ``SVC(C=np.inf)`` directly when
    ``train_size // nb_classes < 5 or train_size < 50`` -- i.e. based on the
    *average* number of samples per class, not the smallest class.
    """
    return not (n_samples // n_classes < 5 or n_samples < 50)


def svm_grid_jobs(n_samples: int) -> int:
    """Processes for the ``C`` grid search: 1 below :data:`_SVM_PARALLEL_ROWS` rows, else the
    cores this process may use, at most TS2Vec's 5.  The fits are deterministic, so this changes
    the time, never the chosen ``C`` or the predictions."""
    if n_samples < _SVM_PARALLEL_ROWS:
        return 1
    return max(1, min(5, len(os.sched_getaffinity(0))))


def _fit_svm(
    train_x: np.ndarray, train_y: np.ndarray, seed: int, n_jobs: int | None, max_samples: int
) -> tuple[SVC, GridSearchCV | None]:
    x, y = _check_train(train_x, train_y)
    nb_classes = np.unique(y, return_counts=True)[1].shape[0]
    train_size = x.shape[0]

    svm = SVC(C=np.inf, gamma="scale")
    if not svm_uses_grid_search(train_size, nb_classes):
        return svm.fit(x, y), None

    grid_search = GridSearchCV(
        svm,
        {
            "C": list(SVM_C_GRID),
            "kernel": ["rbf"],
            "degree": [3],
            "gamma": ["scale"],
            "coef0": [0],
            "shrinking": [True],
            # deviation: TS2Vec also pins 'probability': [False].  That is the
            # default, and setting it at all raises a FutureWarning since
            # scikit-learn 1.9 (the parameter goes away in 1.11), so it is left out.
            "tol": [0.001],
            "cache_size": [200],
            "class_weight": [None],
            "verbose": [False],
            "max_iter": [10000000],
            "decision_function_shape": ["ovr"],
            "random_state": [None],
        },
        cv=5,
        # deviation: TS2Vec always uses 5 processes; see svm_grid_jobs
        n_jobs=svm_grid_jobs(min(train_size, max_samples)) if n_jobs is None else n_jobs,
    )
    x, y = _subsample(x, y, max_samples, seed)
    grid_search.fit(x, y)
    return grid_search.best_estimator_, grid_search


def fit_svm(
    train_x: np.ndarray,
    train_y: np.ndarray,
    seed: int = 0,
    *,
    n_jobs: int | None = None,
    max_samples: int = _SVM_MAX_SAMPLES,
) -> SVC:
    """Fit TS2Vec's SVM probe (``tasks/_eval_protocols.py::fit_svm``).

    An RBF ``SVC(gamma='scale')``.  With little data
    (``N // n_classes < 5`` or ``N < 50``, see :func:`svm_uses_grid_search`)
    it is fitted directly with ``C=np.inf`` (hard margin).  Otherwise ``C`` is
    chosen from :data:`SVM_C_GRID` by 5-fold (stratified) ``GridSearchCV`` on
    at most ``max_samples`` (10,000) stratified-subsampled training rows, and
    the refitted best estimator is returned.

    ``seed`` only drives that subsampling (TS2Vec hard-codes 0; the SVC itself
    is deterministic).  ``n_jobs`` is passed to ``GridSearchCV`` (TS2Vec: 5; ``None``:
    :func:`svm_grid_jobs`).
    """
    estimator, _ = _fit_svm(train_x, train_y, seed, n_jobs, max_samples)
    return estimator


def fit_linear(
    train_x: np.ndarray,
    train_y: np.ndarray,
    seed: int = 0,
    *,
    max_samples: int = _LR_MAX_SAMPLES,
) -> Pipeline:
    """Fit TS2Vec's linear probe (``tasks/_eval_protocols.py::fit_lr``).

    ``StandardScaler`` followed by an L2-regularised ``LogisticRegression``
    (``C=1``, ``max_iter=1_000_000``, ``random_state=seed``) on at most
    ``max_samples`` (100,000) stratified-subsampled rows.

    deviation: TS2Vec passes ``multi_class='ovr'``; that argument was
    deprecated in scikit-learn 1.5 and has since been removed, so the default
    multinomial (softmax) loss is used.  For binary tasks the two coincide;
    with more classes results can differ slightly from the paper's setup.
    """
    x, y = _check_train(train_x, train_y)
    x, y = _subsample(x, y, max_samples, seed)
    pipe = make_pipeline(
        StandardScaler(),
        LogisticRegression(random_state=seed, max_iter=1_000_000),
    )
    pipe.fit(x, y)
    return pipe


def fit_knn(
    train_x: np.ndarray,
    train_y: np.ndarray,
    k: int = 1,
    *,
    seed: int = 0,
) -> Pipeline:
    """Fit TS2Vec's nearest-neighbour probe (``tasks/_eval_protocols.py::fit_knn``).

    ``StandardScaler`` followed by ``KNeighborsClassifier(n_neighbors=k)``;
    TS2Vec uses ``k=1``.  ``k`` is clipped to the number of training rows.
    ``seed`` is accepted (and ignored: k-NN is deterministic) so that every
    entry of :data:`PROBES` can be called as ``fn(x, y, seed=seed)``.
    """
    del seed
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x, y = _check_train(train_x, train_y)
    pipe = make_pipeline(
        StandardScaler(),
        KNeighborsClassifier(n_neighbors=min(int(k), x.shape[0])),
    )
    pipe.fit(x, y)
    return pipe


#: Probe name -> fitting function; each is callable as ``fn(x, y, seed=seed)``.
PROBES: dict[str, Callable[..., ClassifierMixin]] = {
    "svm": fit_svm,
    "linear": fit_linear,
    "knn": fit_knn,
}


def evaluate_probes(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    probes: Sequence[str],
    seed: int = 0,
    *,
    knn_k: int = 1,
) -> dict[str, float]:
    """Fit each named probe on frozen train features and report test accuracy.

    Follows TS2Vec's classification protocol (``tasks/classification.py``:
    fit the probe on train representations, ``score`` on test ones).  Every
    probe is fitted through :data:`PROBES` as ``fn(x, y, seed=seed)`` (kNN
    also gets ``k=knn_k``; TS2Vec's protocol is ``knn_k=1``).  Returns
    ``{name: accuracy}`` for each probe in ``probes`` (see :data:`PROBES`),
    plus ``"svm_C"`` -- the ``C`` chosen by the grid search (may be ``inf``) --
    when ``"svm"`` was requested and the grid-search branch ran.

    Raises ``KeyError`` for an unknown probe name and ``ValueError`` for
    malformed inputs: non-2D or non-numeric features, NaN/Inf values, a
    feature/label row-count mismatch, mismatched feature dimensions between
    train and test, or fewer than 2 classes in train.
    """
    if isinstance(probes, str):  # a bare name, not an iterable of characters
        probes = [probes]
    unknown = [name for name in probes if name not in PROBES]
    if unknown:
        raise KeyError(f"unknown probe(s) {unknown}; known probes: {sorted(PROBES)}")
    x_train, y_train = _check_train(train_x, train_y)
    x_test = _as_features(test_x, "test")
    y_test = _as_labels(test_y, x_test.shape[0], "test")
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(f"train has {x_train.shape[1]} feature dims but test has {x_test.shape[1]}")

    results: dict[str, float] = {}
    for name in dict.fromkeys(probes):  # de-duplicate, keep order
        options = {"k": knn_k} if name == "knn" else {}
        estimator = PROBES[name](x_train, y_train, seed=seed, **options)
        if name == "svm" and svm_uses_grid_search(x_train.shape[0], np.unique(y_train).shape[0]):
            results["svm_C"] = float(estimator.C)
        results[name] = float(accuracy_score(y_test, estimator.predict(x_test)))
    return results
