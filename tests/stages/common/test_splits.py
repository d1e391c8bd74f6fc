"""Label fractions and group-safe splits."""

from __future__ import annotations

import numpy as np
import pytest

from stages.common.splits import group_split, stratified_fraction
from tests.conftest import imported_in_fresh_interpreter

# --------------------------------------------------------------------------- stratified_fraction


def test_stratified_fraction_keeps_every_class_and_is_deterministic():
    y = np.array([0] * 200 + [1] * 50 + [2] * 1)
    idx = stratified_fraction(y, 0.1, seed=3)
    assert set(np.unique(y[idx])) == {0, 1, 2}
    assert np.bincount(y[idx]).tolist() == [20, 5, 1]
    np.testing.assert_array_equal(idx, stratified_fraction(y, 0.1, seed=3))
    assert not np.array_equal(idx, stratified_fraction(y, 0.1, seed=4))
    assert np.all(np.diff(idx) > 0)  # sorted, unique


def test_stratified_fraction_tiny_fraction_and_full_and_nested():
    y = np.repeat(np.array(["a", "b", "c"]), 30)
    tiny = stratified_fraction(y, 0.001, seed=0)
    assert sorted(y[tiny]) == ["a", "b", "c"]
    np.testing.assert_array_equal(stratified_fraction(y, 1.0, seed=0), np.arange(90))
    small, large = stratified_fraction(y, 0.2, seed=7), stratified_fraction(y, 0.5, seed=7)
    assert set(small) <= set(large)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_stratified_fraction_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        stratified_fraction(np.arange(10) % 2, fraction, seed=0)


# --------------------------------------------------------------------------- group_split


def _check_partition(train, val, n):
    assert train.size > 0 and val.size > 0
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("val_fraction", [0.2, 0.3, 0.5])
def test_group_split_never_shares_groups(seed, val_fraction):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 12, size=120)  # ~12 subjects of uneven size
    y = rng.integers(0, 3, size=120)
    train, val = group_split(groups, y, val_fraction, seed)
    _check_partition(train, val, 120)
    assert set(groups[train]).isdisjoint(groups[val])
    assert 0.05 < val.size / 120 < 0.8
    a, b = group_split(groups, y, val_fraction, seed)
    np.testing.assert_array_equal(train, a)
    np.testing.assert_array_equal(val, b)


@pytest.mark.parametrize("groups", [None, np.arange(100)[::-1]])
def test_group_split_ungrouped_is_stratified(groups):
    y = np.array([0] * 80 + [1] * 20)
    train, val = group_split(groups, y, 0.25, seed=0)
    _check_partition(train, val, 100)
    assert val.size == 25
    assert np.bincount(y[val]).tolist() == [20, 5]


def test_group_split_edge_cases_keep_both_sides_non_empty():
    _check_partition(*group_split(None, np.array([0, 1]), 0.5, seed=0), 2)
    _check_partition(*group_split(None, np.array([0, 0, 0]), 0.01, seed=0), 3)
    groups = np.array([0, 0, 0, 1])
    for frac in (0.01, 0.5, 0.99):
        train, val = group_split(groups, np.array([0, 1, 0, 1]), frac, seed=0)
        _check_partition(train, val, 4)
        assert set(groups[train]).isdisjoint(groups[val])
    # k = 1/0.1 = 10 folds but no class has 10 members: falls back to GroupShuffleSplit
    groups, y = np.arange(24) // 2, np.arange(24) % 3  # 12 groups, 8 per class
    train, val = group_split(groups, y, 0.1, seed=0)
    _check_partition(train, val, 24)
    assert set(groups[train]).isdisjoint(groups[val])
    with pytest.raises(ValueError, match="single group"):
        group_split(np.zeros(5), np.arange(5) % 2, 0.2, seed=0)
    with pytest.raises(ValueError, match="val_fraction"):
        group_split(None, np.arange(5) % 2, 1.0, seed=0)


def test_validation_split_is_carved_from_the_subset_and_empty_when_it_cannot_hold_one() -> None:
    from stages.common.splits import validation_split

    y = np.repeat(np.arange(3), 20)
    groups = np.array([f"g{i // 2}" for i in range(60)])
    fit, val = validation_split(groups, y, 0.2, seed=0)
    assert len(fit) + len(val) == 60 and not set(fit) & set(val)
    assert set(np.unique(y[val])) == {0, 1, 2}  # stratified
    assert not set(groups[fit]) & set(groups[val])  # by group
    # 3 labels per class, 3 classes: round(0.2 * 9) = 2 validation labels cannot cover 3 classes
    fit, val = validation_split(None, np.repeat(np.arange(3), 3), 0.2, seed=0)
    assert len(val) == 0 and len(fit) == 9


def test_importing_the_module_leaves_sklearn_to_the_split_that_needs_it() -> None:
    """Ingest imports this module for its hold-out rule, which a published split never calls: its
    process paid 1 s of scikit-learn imports for nothing."""
    assert imported_in_fresh_interpreter("import stages.common.splits", ("sklearn",)) == []
