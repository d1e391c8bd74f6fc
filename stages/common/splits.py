"""Index helpers shared by fine-tuning and evaluation: label fractions and group-safe splits."""

from __future__ import annotations

import math
import warnings

import numpy as np

# scikit-learn (1 s of imports) is imported where a split is drawn: ingest imports this module for
# its hold-out rule, which most runs (a published split) never call


def stratified_fraction(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a per-class ``fraction`` of the labelled samples.

    For label-efficiency experiments (e.g. probing/fine-tuning with 1%, 10% of
    the labels).  Each class ``c`` with ``n_c`` samples keeps
    ``max(1, round(fraction * n_c))`` of them, so every class is represented.
    Selection is deterministic for a given ``seed`` and nested: for a fixed
    seed, a smaller fraction's indices are a subset of a larger fraction's.
    Returns sorted ``int64`` indices into ``y``; ``fraction=1`` returns all.
    """
    if not (0.0 < fraction <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] == 0:
        raise ValueError(f"y must be a non-empty 1D array, got shape {y.shape}")
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(y, return_inverse=True)
    keep = []
    for c in range(classes.shape[0]):
        members = np.flatnonzero(inverse == c)
        n_keep = max(1, min(members.shape[0], round(fraction * members.shape[0])))
        keep.append(rng.permutation(members)[:n_keep])
    return np.sort(np.concatenate(keep)).astype(np.int64)


def _n_val(n: int, val_fraction: float) -> int:
    """Validation size for ``n`` items, clipped so both sides are non-empty."""
    return min(max(round(val_fraction * n), 1), n - 1)


def _stratified_split(
    y: np.ndarray | None, n: int, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    n_val = _n_val(n, val_fraction)
    stratify = None
    if y is not None:
        counts = np.unique(y, return_counts=True)[1]
        # train_test_split refuses to stratify unless every class has >= 2
        # members and both sides can hold one sample per class.
        if counts.min() >= 2 and min(n_val, n - n_val) >= counts.shape[0]:
            stratify = y
    train, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=stratify)
    return train, val


def group_split(
    groups: np.ndarray | None,
    y: np.ndarray | None,
    val_fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into ``(train, val)`` with no group on both sides.

    ``groups`` holds one id per sample (e.g. subject or recording id) and
    ``y`` the labels used for stratification (or ``None``).

    * ``groups`` is ``None`` or all-unique: a stratified random split
      (``train_test_split(stratify=y)``; unstratified where stratification is
      impossible) with ``round(val_fraction * N)`` validation samples.
    * ``1 / val_fraction`` is an integer ``k`` (0.5, 0.25, 0.2, 0.1, ...),
      there are at least ``k`` groups and some class has at least ``k``
      samples: one fold of a shuffled
      ``StratifiedGroupKFold(n_splits=k)`` is the validation set, so class
      proportions are kept as far as the grouping allows.
    * otherwise: ``GroupShuffleSplit`` holding out ``round(val_fraction * G)``
      of the ``G`` groups (a fraction of *groups*, not of samples).

    Both parts are non-empty whenever ``N >= 2`` (and, with real grouping, at
    least 2 distinct groups exist; a single group raises ``ValueError``).
    Returns sorted ``int64`` index arrays; deterministic for a given ``seed``.
    """
    if not (0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if y is None and groups is None:
        raise ValueError("at least one of groups and y must be given")
    n = np.asarray(groups if groups is not None else y).shape[0]
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"y must be 1D with {n} entries, got shape {y.shape}")
    if n < 2:
        raise ValueError(f"need at least 2 samples to split, got {n}")

    if groups is not None:
        groups = np.asarray(groups)
        if groups.ndim != 1:
            raise ValueError(f"groups must be 1D, got shape {groups.shape}")

    if groups is None or np.unique(groups).shape[0] == n:
        train, val = _stratified_split(y, n, val_fraction, seed)
        return np.sort(train).astype(np.int64), np.sort(val).astype(np.int64)

    n_groups = np.unique(groups).shape[0]
    if n_groups < 2:
        raise ValueError("cannot split a single group into disjoint train/val parts")

    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    idx = np.arange(n)
    k = round(1.0 / val_fraction)
    split: tuple[np.ndarray, np.ndarray] | None = None
    use_sgkf = (
        y is not None
        and math.isclose(1.0 / val_fraction, k, rel_tol=1e-6)
        and 2 <= k <= n_groups
        # StratifiedGroupKFold refuses when every class has fewer than k members.
        and np.unique(y, return_counts=True)[1].max() >= k
    )
    if use_sgkf:
        sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # "The least populated class in y has only m members, which is less
            # than n_splits": harmless here, we only use one fold.
            warnings.simplefilter("ignore", UserWarning)
            for train, val in sgkf.split(idx, y, groups):
                if train.size and val.size:
                    split = (train, val)
                    break
    if split is None:
        gss = GroupShuffleSplit(n_splits=1, test_size=_n_val(n_groups, val_fraction), random_state=seed)
        split = next(gss.split(idx, y, groups))
    train, val = split
    return np.sort(train).astype(np.int64), np.sort(val).astype(np.int64)


def validation_split(
    groups: np.ndarray | None, y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, val)`` positions within a labelled subset, for early stopping.

    The validation part is carved from the subset itself (by :func:`group_split`, stratified), so
    a run on a fraction ``f`` of the labels uses ``f`` of them in total. When the subset cannot
    hold a validation part -- fewer than ``round(val_fraction * N)`` >= one label per class, too
    few left to fit every class, or a single group -- ``val`` is empty and the caller trains a
    fixed epoch budget without early stopping.
    """
    y = np.asarray(y)
    n, n_classes = y.shape[0], np.unique(y).shape[0]
    everything = np.arange(n, dtype=np.int64)
    if n < 2 or _n_val(n, val_fraction) < n_classes or n - _n_val(n, val_fraction) < n_classes:
        return everything, np.empty(0, dtype=np.int64)
    if groups is not None and np.unique(np.asarray(groups)).shape[0] < 2:
        return everything, np.empty(0, dtype=np.int64)
    return group_split(groups, y, val_fraction, seed)
