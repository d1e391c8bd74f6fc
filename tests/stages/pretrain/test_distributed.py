"""gather_with_grad / distributed NT-Xent checked against the single-process result.

The multiprocess tests share one 2-rank gloo run (module-scoped fixture), since
spawning processes is the expensive part.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from stages.common.distributed import gather_with_grad, rank, world_size
from stages.common.losses import NTXentLoss

WORLD_SIZE = 2
LOCAL_N, DIM = 3, 5
TEMPERATURE = 0.2

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="needs the gloo backend",
)


def _full_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1234)
    z0, z1 = torch.randn(2, WORLD_SIZE * LOCAL_N, DIM, generator=gen)
    return z0, z1


def _gather_input(r: int) -> torch.Tensor:
    return torch.arange(6.0).reshape(2, 3) + 100 * r


def _gather_weight() -> torch.Tensor:
    return torch.arange(WORLD_SIZE * 2 * 3, dtype=torch.float32).reshape(WORLD_SIZE * 2, 3)


def _worker(r: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=r,
        world_size=WORLD_SIZE,
        timeout=timedelta(seconds=60),
    )
    try:
        res: dict[str, Any] = {"world_size": world_size(), "rank": rank()}

        # gather_with_grad alone: values, and gradient of sum_r (gathered * w).sum()
        x = _gather_input(r).requires_grad_()
        gathered = gather_with_grad(x)
        (gathered * _gather_weight()).sum().backward()
        res["gathered"] = gathered.detach()
        res["gather_grad"] = x.grad

        # distributed NT-Xent on this rank's half of the batch
        full0, full1 = _full_batch()
        rows = slice(r * LOCAL_N, (r + 1) * LOCAL_N)
        z0 = full0[rows].clone().requires_grad_()
        z1 = full1[rows].clone().requires_grad_()
        loss = NTXentLoss(temperature=TEMPERATURE, gather_distributed=True)(z0, z1)
        # grad of the mean over ranks == grad of the single-process loss
        (loss / world_size()).backward()
        res["loss"] = loss.detach()
        res["grad0"], res["grad1"] = z0.grad, z1.grad

        # unequal batch sizes must raise on every rank (no deadlock)
        try:
            gather_with_grad(torch.zeros(1 + r, 3))
        except ValueError as err:
            res["unequal_error"] = str(err)

        torch.save(res, Path(out_dir) / f"rank{r}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD_SIZE, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD_SIZE)]


@needs_gloo
@pytest.mark.multiprocess
def test_gather_values_and_grad(rank_results: list[dict[str, Any]]) -> None:
    expected = torch.cat([_gather_input(r) for r in range(WORLD_SIZE)])
    for r, res in enumerate(rank_results):
        assert (res["world_size"], res["rank"]) == (WORLD_SIZE, r)
        torch.testing.assert_close(res["gathered"], expected)
        # every rank's loss uses x_r with the same weights -> gradients are summed
        w_slice = _gather_weight()[r * 2 : (r + 1) * 2]
        torch.testing.assert_close(res["gather_grad"], WORLD_SIZE * w_slice)


@needs_gloo
@pytest.mark.multiprocess
def test_gather_unequal_batch_sizes_raise(rank_results: list[dict[str, Any]]) -> None:
    for res in rank_results:
        assert "same batch size" in res["unequal_error"]


@needs_gloo
@pytest.mark.multiprocess
def test_distributed_ntxent_matches_single_process(
    rank_results: list[dict[str, Any]],
) -> None:
    full0, full1 = (t.clone().requires_grad_() for t in _full_batch())
    loss = NTXentLoss(temperature=TEMPERATURE, gather_distributed=True)(full0, full1)
    loss.backward()

    mean_loss = sum(res["loss"] for res in rank_results) / WORLD_SIZE
    torch.testing.assert_close(mean_loss, loss.detach(), atol=1e-5, rtol=0)
    # each rank averages over its own samples only, so per-rank losses differ
    assert not torch.allclose(rank_results[0]["loss"], rank_results[1]["loss"])

    for r, res in enumerate(rank_results):
        rows = slice(r * LOCAL_N, (r + 1) * LOCAL_N)
        torch.testing.assert_close(res["grad0"], full0.grad[rows], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(res["grad1"], full1.grad[rows], atol=1e-6, rtol=1e-5)


def test_identity_without_process_group() -> None:
    assert not (dist.is_available() and dist.is_initialized())
    assert (world_size(), rank()) == (1, 0)
    x = torch.randn(4, 3, requires_grad=True)
    assert gather_with_grad(x) is x


def test_gather_distributed_is_noop_without_process_group() -> None:
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 6, 4, generator=gen)
    gathered = NTXentLoss(gather_distributed=True)(z0, z1)
    torch.testing.assert_close(gathered, NTXentLoss(gather_distributed=False)(z0, z1))
