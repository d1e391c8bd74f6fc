import math

import pytest
import torch
from torch import nn

from stages.common.losses import NTXentLoss, get_loss, list_losses, register_loss


def reference_ntxent(z0: torch.Tensor, z1: torch.Tensor, temperature: float) -> float:
    """NT-Xent straight from its definition, with explicit loops over the 2N views."""
    views = [v / v.norm() for v in torch.cat([z0, z1]).double()]
    n = z0.shape[0]
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sim = [float(views[i] @ views[k]) / temperature for k in range(2 * n)]
        denom = sum(math.exp(sim[k]) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(sim[pos]) / denom)
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("n", [1, 2, 7])
def test_ntxent_matches_loop_reference(n: int, temperature: float) -> None:
    gen = torch.Generator().manual_seed(n)
    z0 = torch.randn(n, 5, generator=gen)
    z1 = torch.randn(n, 5, generator=gen)
    loss = NTXentLoss(temperature=temperature)(z0, z1)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(reference_ntxent(z0, z1, temperature), abs=1e-5)


def test_ntxent_invariant_to_embedding_scale() -> None:
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 8, 16, generator=gen)
    loss_fn = NTXentLoss(temperature=0.2)
    base = loss_fn(z0, z1)
    torch.testing.assert_close(loss_fn(z0 * 37.0, z1 * 0.01), base)


def test_ntxent_lower_for_aligned_pairs() -> None:
    gen = torch.Generator().manual_seed(1)
    z0 = torch.randn(16, 32, generator=gen)
    aligned = z0 + 0.05 * torch.randn(16, 32, generator=gen)
    random = torch.randn(16, 32, generator=gen)
    loss_fn = NTXentLoss()
    assert loss_fn(z0, aligned) < loss_fn(z0, random)


def test_ntxent_gradients_flow() -> None:
    z0 = torch.randn(4, 8, requires_grad=True)
    z1 = torch.randn(4, 8, requires_grad=True)
    NTXentLoss()(z0, z1).backward()
    assert z0.grad is not None and torch.isfinite(z0.grad).all()
    assert z1.grad is not None and torch.isfinite(z1.grad).all()


@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan")])
def test_ntxent_bad_temperature_raises(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=temperature)


def test_ntxent_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        NTXentLoss()(torch.randn(4, 8), torch.randn(3, 8))


def test_registry_lookup() -> None:
    assert {"ntxent", "infonce"} <= set(list_losses())
    loss = get_loss("ntxent", temperature=0.3, gather_distributed=False)
    assert isinstance(loss, NTXentLoss)
    assert loss.temperature == 0.3 and loss.gather_distributed is False
    assert isinstance(get_loss("infonce"), NTXentLoss)


def test_registry_unknown_name_lists_known() -> None:
    with pytest.raises(KeyError, match="ntxent") as excinfo:
        get_loss("no-such-loss")
    assert "no-such-loss" in str(excinfo.value)


def test_registry_rejects_duplicate_name() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_loss("ntxent")
        class Other(nn.Module):
            pass
