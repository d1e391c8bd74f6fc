import math

import pytest
import torch

from stages.pretrain.diagnostics import (
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
