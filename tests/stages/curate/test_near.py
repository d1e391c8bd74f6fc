"""Near dedup's two in-process paths: LSH finds what exact all-pairs finds, decides the same, and
decides the same whatever the row order."""

from __future__ import annotations

import numpy as np
import pytest

from stages.curate.near import (
    BIG_BUCKET,
    PSTABLE_WIDTH,
    auto_rows_per_band,
    band_hash,
    band_keys,
    near_pairs,
    pstable_collision,
    resolve,
)

THRESHOLD, BANDS = 0.999, 20


def _fingerprints(n: int, seed: int = 0, dim: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-normalised random walks (what the time-series fingerprint gives for walk-like series), 2 % of
    them near copies (small noise, cosine ~0.9998) of others; every 50th row a test row."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal((n, dim)), axis=1)
    src = rng.choice(n // 2, n // 50, replace=False)
    dst = n // 2 + np.arange(n // 50)
    x[dst] = x[src] + 0.02 * x[src].std(axis=1, keepdims=True) * rng.standard_normal((len(src), dim))
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    ids = np.array([f"r{i:06d}" for i in range(n)], dtype=object)
    splits = np.where(np.arange(n) % 50 == 7, "test", "train").astype(object)
    return x.astype(np.float32), ids, splits


def _run(
    x: np.ndarray, ids: np.ndarray, splits: np.ndarray, method: str, kind: str = "pstable"
) -> tuple[dict, set, int]:
    r = auto_rows_per_band(THRESHOLD, kind)
    pairs, _ = near_pairs(ids, splits, x, THRESHOLD, BANDS, r, 0, method=method, kind=kind)
    removed, leaks = resolve(pairs, drop_leaks=False)
    return removed, {(a, b) for a, b, _, _ in pairs}, leaks


@pytest.mark.parametrize("kind", ["pstable", "simhash"])
def test_lsh_recall_against_exact_all_pairs_on_random_walks(kind: str) -> None:
    x, ids, splits = _fingerprints(20_000)
    exact_removed, exact_pairs, _ = _run(x, ids, splits, "exact")
    lsh_removed, lsh_pairs, _ = _run(x, ids, splits, "lsh", kind)
    assert len(exact_pairs) >= 380  # the planted copies, and any natural pair above the threshold
    assert len(lsh_pairs & exact_pairs) / len(exact_pairs) >= 0.99
    assert lsh_pairs <= exact_pairs  # every LSH pair is verified: no false positive
    assert len(set(lsh_removed) & set(exact_removed)) / len(exact_removed) >= 0.99


@pytest.mark.parametrize("kind", ["pstable", "simhash"])
def test_exact_and_lsh_paths_decide_the_same_and_never_remove_test_rows(kind: str) -> None:
    x, ids, splits = _fingerprints(3_000, seed=1)
    x[100] = x[7] + 1e-3  # row 7 is a test row: a training row near it is a leak
    exact = _run(x, ids, splits, "exact")
    assert exact == _run(x, ids, splits, "lsh", kind) == _run(x, ids, splits, "auto", kind)
    removed, _, leaks = exact
    assert len(removed) >= 55 and leaks >= 1
    assert not any(splits[int(i[1:])] == "test" for i in removed)
    # with drop_leaks the training row goes, never the test row
    pairs, _ = near_pairs(ids, splits, x, THRESHOLD, BANDS, auto_rows_per_band(THRESHOLD), 0, method="lsh")
    assert resolve(pairs, drop_leaks=True)[0]["r000100"].startswith(
        "leakage: near duplicate of test row r000007"
    )


@pytest.mark.parametrize("method", ["exact", "lsh"])
def test_decisions_do_not_depend_on_row_order_and_keep_the_smallest_id(method: str) -> None:
    x, ids, splits = _fingerprints(5_000, seed=2)
    removed, _, _ = _run(x, ids, splits, method)
    perm = np.random.default_rng(3).permutation(len(ids))
    assert _run(x[perm], ids[perm], splits[perm], method)[0] == removed
    for row, reason in removed.items():  # the kept row of a near pair is the one with the smaller id
        assert reason.split(" to ")[-1] < row


def test_a_bucket_too_large_for_pair_lists_is_verified_whole() -> None:
    x, ids, splits = _fingerprints(2_000, seed=4)
    rng = np.random.default_rng(5)
    # one shape repeated with tiny noise: a single bucket of BIG_BUCKET + 40 rows in every band
    clump = np.arange(2_000 - BIG_BUCKET - 40, 2_000)
    x[clump] = x[0] + 1e-4 * rng.standard_normal((len(clump), x.shape[1])).astype(np.float32)
    splits[clump] = "train"
    removed, pairs, _ = _run(x, ids, splits, "lsh")
    assert removed == _run(x, ids, splits, "exact")[0]
    assert {f"r{i:06d}" for i in clump} <= set(removed)  # all near row 0, which is kept
    assert "r000000" not in removed


def _naive_greedy(vecs: np.ndarray, threshold: float) -> tuple[list[float], list[int], list[bool]]:
    """SemDeDup's pass row by row (the reference the blocked one must match)."""
    kept: list[int] = []
    best, arg, keep = [], [], []
    for j in range(len(vecs)):
        sims = vecs[kept] @ vecs[j] if kept else np.zeros(0)
        b = int(sims.argmax()) if kept else -1
        best.append(float(sims[b]) if kept else -np.inf)
        arg.append(kept[b] if kept else -1)
        keep.append(not kept or sims[b] <= threshold)
        if keep[-1]:
            kept.append(j)
    return best, arg, keep


def test_blocked_semdedup_pass_matches_the_row_by_row_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.curate import semantic

    monkeypatch.setattr(semantic, "BLOCK", 64)  # many block boundaries, chains across and inside
    rng = np.random.default_rng(6)
    base = rng.standard_normal((40, 16))
    # chains of copies: a copy of a removed row is judged against kept rows only
    x = np.concatenate([base[rng.integers(0, 40, 600)] + 0.15 * rng.standard_normal((600, 16)), base])
    vecs = semantic.unit_rows(x)
    best, arg, kept = semantic.greedy_kept(vecs, 0.97)
    ref_best, ref_arg, ref_kept = _naive_greedy(vecs, 0.97)
    assert kept.tolist() == ref_kept and 0 < kept.sum() < len(x)
    assert arg.tolist() == ref_arg
    np.testing.assert_allclose(best[1:], ref_best[1:], atol=1e-5)


def test_a_pair_at_the_threshold_shares_a_pstable_band_with_the_probability_the_band_size_was_chosen_for() -> (
    None
):
    """The band size rests on Datar et al.'s collision formula: pairs at exactly the threshold share
    a band with p ~ 1/4 (so 20 bands find 99.7 % of them); checked by simulation, 4,000 pairs."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((4_000, 32))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    ortho = rng.standard_normal(a.shape)
    ortho -= (ortho * a).sum(1, keepdims=True) * a
    ortho /= np.linalg.norm(ortho, axis=1, keepdims=True)
    theta = np.arccos(THRESHOLD)
    b = np.cos(theta) * a + np.sin(theta) * ortho  # cosine(a, b) == THRESHOLD exactly
    r = auto_rows_per_band(THRESHOLD, "pstable")
    lsh = band_hash(32, THRESHOLD, BANDS, r, seed=0, kind="pstable")
    shared = band_keys(a, lsh) == band_keys(b, lsh)
    expected = pstable_collision(PSTABLE_WIDTH) ** r
    assert 0.2 <= expected <= 0.3
    assert shared.mean() == pytest.approx(expected, abs=0.02)  # 80,000 (pair, band) draws
    assert shared.any(axis=1).mean() >= 0.99


@pytest.mark.parametrize("c", [0.25, 1.0, 2.5, 4.0, 10.0])
def test_pstable_collision_is_datar_et_al_s_formula(c: float) -> None:
    from scipy.stats import norm

    p = 1 - 2 * norm.cdf(-c) - 2 / (np.sqrt(2 * np.pi) * c) * (1 - np.exp(-c * c / 2))
    assert pstable_collision(c) == pytest.approx(p, rel=1e-12)
