import math

import pytest
import torch

from stages.common.diagnostics import (
    alignment,
    effective_rank,
    is_collapsed,
    normalized_std,
    uniformity,
)


@pytest.fixture
def gaussian() -> torch.Tensor:
    return torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))


def test_alignment_zero_for_identical_views(gaussian: torch.Tensor) -> None:
    assert alignment(gaussian, gaussian) == pytest.approx(0.0, abs=1e-12)
    # scale does not matter (normalised), and opposite views are maximally apart
    assert alignment(gaussian, 3 * gaussian) == pytest.approx(0.0, abs=1e-12)
    assert alignment(gaussian, -gaussian) == pytest.approx(4.0)


def test_uniformity_lower_for_spread_embeddings(gaussian: torch.Tensor) -> None:
    z = gaussian[:256]
    identical = torch.ones(256, 16)
    assert uniformity(identical) == pytest.approx(0.0, abs=1e-12)
    assert uniformity(z) < uniformity(identical) - 1.0


def test_effective_rank_isotropic_is_close_to_dim(gaussian: torch.Tensor) -> None:
    assert effective_rank(gaussian) == pytest.approx(16, rel=0.05)


def test_effective_rank_of_rank_one_data_is_one() -> None:
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(500, 1, generator=gen) @ torch.randn(1, 16, generator=gen)
    assert effective_rank(z) == pytest.approx(1.0, abs=0.01)


def test_collapse_detector() -> None:
    gen = torch.Generator().manual_seed(2)
    constant = torch.ones(64, 32) * torch.randn(1, 32, generator=gen)
    spread = torch.randn(64, 32, generator=gen)
    assert is_collapsed(constant)
    assert not is_collapsed(spread)
    # healthy spread is ~1/sqrt(D) (the rule's reference value)
    assert normalized_std(spread) == pytest.approx(1 / math.sqrt(32), rel=0.1)


def test_diagnostics_return_floats_without_grad() -> None:
    z = torch.randn(8, 4, requires_grad=True)
    values = [alignment(z, z), uniformity(z), effective_rank(z), normalized_std(z)]
    assert all(type(v) is float for v in values)
    assert type(is_collapsed(z)) is bool


LOCAL_BATCH = 16


def test_rankme_on_a_1024_row_sample_exceeds_twice_the_local_batch() -> None:
    """The bound a batch puts on RankMe (min(rows, D)) is gone on the fixed sample."""
    from stages.common.diagnostics import sample_indices, sample_metrics

    gen = torch.Generator().manual_seed(3)
    full_rank = torch.randn(5000, 256, generator=gen)
    pick = torch.from_numpy(sample_indices(len(full_rank), 1024, seed=0))
    assert len(pick) == 1024 and len(set(pick.tolist())) == 1024
    sample = full_rank[pick]
    batch = sample[: 2 * LOCAL_BATCH]  # what the old batch-based diagnostic saw (two views of a batch)
    assert effective_rank(batch) <= 2 * LOCAL_BATCH
    noisy = sample + 0.1 * torch.randn(sample.shape, generator=gen)
    m = sample_metrics(sample, sample, noisy)
    assert m["rankme"] > 2 * LOCAL_BATCH and m["rankme"] > 150  # near D=256 (finite-sample spread)
    assert 0 < m["alignment"] < 0.05 and m["collapsed"] == 0


def test_sample_is_seeded_and_capped_by_bytes() -> None:
    import numpy as np

    from stages.common.diagnostics import SAMPLE_BYTES, sample_indices

    a, b = sample_indices(3000, 1024, seed=0), sample_indices(3000, 1024, seed=0)
    assert np.array_equal(a, b) and not np.array_equal(a, sample_indices(3000, 1024, seed=1))
    assert len(sample_indices(10, 1024, seed=0)) == 10  # fewer rows than asked: all of them
    volume = 32**3 * 4  # a 32^3 float32 patch
    assert len(sample_indices(3000, 1024, seed=0, row_bytes=volume)) == SAMPLE_BYTES // volume


def test_the_loop_logs_rankme_above_twice_its_local_batch_in_process() -> None:
    """A tiny in-process run: RankMe comes from the fixed sample at checkpoint epochs, not a batch."""
    import numpy as np

    from stages.common.schema import PretrainCfg
    from stages.pretrain.loop import run_in_process

    pre = PretrainCfg(
        epochs=2, batch_size=4, checkpoint_every=1, head={"hidden_dim": 32, "out_dim": 16}
    ).model_dump()
    config = {
        "domain": "timeseries",
        "encoder": {"in_channels": 1, "hidden_dim": 128, "out_dim": 256, "depth": 3},
        "pretrain": pre,
        "policy": {"name": "default", "params": {}},
        "local_batch": 4,
        "steps_per_epoch": 2,
    }
    rng = np.random.default_rng(0)
    # z-normalised noise, as ingest normalises; RankMe is uncentred (as in the paper), so the features'
    # common mean direction keeps it well below D here
    xs = [rng.standard_normal((1, 48)).astype(np.float32) for _ in range(300)]
    xs = [(x - x.mean()) / x.std() for x in xs]
    _, history = run_in_process(config, xs)
    assert all("rankme" in h and "alignment" in h and "uniformity" in h for h in history)
    assert history[-1]["rankme"] > 2 * 4, history[-1]  # a batch of 4 (two views) could give 8 at most
