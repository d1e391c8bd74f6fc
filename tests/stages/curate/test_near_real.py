"""Near dedup on real data: distinct UCR ACSF1 series are kept, planted exact and near copies found.

ACSF1 (100 training / 100 test power-consumption curves of length 1,460) is where the old 32-point
fingerprint at cosine 0.999 removed 28 distinct training series; the copies are planted as
bench/curation_quality.py plants them (jitter then scaling from the domain's own augmentations,
re-z-normalised), at small scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from domains import get_domain
from domains.timeseries.readers import read_source
from domains.timeseries.views import jitter, scaling
from stages.common.config import load_recipe
from stages.curate.__main__ import curate
from stages.curate.rules import near_cfg

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def acsf1() -> list[dict]:
    ts = get_domain("timeseries")
    rows = [r for r in read_source("ucr_bundled", name="ACSF1") if ts.validate(r) is None]
    return [{**r, "x": ts.normalise(r["x"])} for r in rows]  # as ingest stores them


def _recipe():  # noqa: ANN202
    # the ArrowHead recipe unchanged, as in the report that found the false positives
    return load_recipe(REPO / "pipelines/timeseries-arrowhead.yaml", REPO / "params.yaml")


def test_acsf1_keeps_all_100_training_series(acsf1: list[dict]) -> None:
    assert sum(r["split"] == "train" for r in acsf1) == 100
    recipe = _recipe()
    assert recipe.curate.near_dedup.enabled and near_cfg(recipe).threshold == 0.99999
    kept, _, report = curate(recipe, acsf1)
    assert report["removed"] == 0 and report["near_leakage_found"] == 0
    assert report["train_rows_in"] == report["train_rows_out"] == 100


def test_planted_exact_and_near_copies_are_found_and_originals_kept(acsf1: list[dict]) -> None:
    ts, rng = get_domain("timeseries"), np.random.default_rng(0)
    train = [r for r in acsf1 if r["split"] == "train"]
    rows = list(acsf1)
    for r in train[:10]:
        rows.append({**r, "id": r["id"] + "-exact"})
    for r in train[10:20]:  # small noise: 0.1 % of the std, then a 2 % gain change
        near = ts.normalise(scaling(jitter(r["x"], rng, sigma=0.001), rng, sigma=0.02))
        rows.append({**r, "id": r["id"] + "-near", "x": near})
    _, removed, report = curate(_recipe(), rows)
    reasons = {r["id"]: r["reason"].split(":")[0] for r in removed}
    assert reasons == {
        **{r["id"] + "-exact": "exact_duplicate" for r in train[:10]},
        **{r["id"] + "-near": "near_duplicate" for r in train[10:20]},
    }
    # the report says what the training split lost
    assert report["train_rows_in"] == 120 and report["train_rows_out"] == 100


def test_series_of_different_lengths_are_never_near_duplicates() -> None:
    ts = get_domain("timeseries")
    x = np.sin(np.linspace(0, 12, 400))[None].astype(np.float32)
    fp = ts.fingerprint([x, x[:, ::2].copy(), x.copy()])  # the same curve at half the length
    cos = fp @ fp.T / np.outer(np.linalg.norm(fp, axis=1), np.linalg.norm(fp, axis=1))
    assert cos[0, 2] > 0.99999 and cos[0, 1] < 0.9975
