"""Every loss that gathers across workers: on 2 gloo processes, the mean of the per-rank losses and
the gradients equal the single-process loss and gradients on the concatenated batch.

One spawn runs every case (spawning is the expensive part). Each rank backpropagates its own loss
(as under DDP); the gather's backward sums over ranks, so the local embedding gradients are
``world_size`` times the single-process ones, and DDP's averaging of parameter gradients divides
that factor out again. Loss-owned parameters (SwAV's prototypes) are averaged by
``sync_loss_gradients``, as the loop does, and must then equal the single-process gradient.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from stages.common.losses import get_loss, sync_loss_gradients

WORLD, LOCAL_N, DIM = 2, 3, 5
LABELS = torch.tensor([0, 1, 0, 2, 1, 1])

#: name -> constructor options (MoCHi with n_hard=1 mixes the hardest negative with itself, so the
#: synthetic negatives do not depend on the per-rank random draws)
CASES: dict[str, dict[str, Any]] = {
    "ntxent": {"temperature": 0.2},
    "dcl": {"temperature": 0.2},
    "dclw": {"temperature": 0.2, "sigma": 0.5},
    "supcon": {"temperature": 0.2},
    "mochi": {"temperature": 0.2, "n_hard": 1, "n_mix": 2, "seed": 0},
    "ntxent_individual": {"temperature": 0.2, "alpha": 0.5},
    "cwcl": {"temperature": 0.2},
    "vicreg": {},
    "swav": {"dim": DIM, "n_prototypes": 4, "temperature": 0.2, "epsilon": 0.5},
    "moco": {"dim": DIM, "queue_size": 8, "temperature": 0.2},
}

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs the gloo backend"
)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2024)
    z0, z1, keys = torch.randn(3, WORLD * LOCAL_N, DIM, generator=gen)
    return z0, z1, keys


def _run(name: str, z0: torch.Tensor, z1: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor) -> dict:
    """Loss and gradients of ``name`` on this process's rows (the whole batch on one process)."""
    torch.manual_seed(0)  # same SwAV prototypes everywhere
    loss_fn = get_loss(name, **CASES[name])
    z0, z1 = z0.clone().requires_grad_(), z1.clone().requires_grad_()
    extra: dict[str, Any] = {}
    if name == "supcon":
        extra["labels"] = labels
    if name == "moco":  # keys of cat([view0, view1]) from a key encoder
        extra["keys"] = torch.cat([keys, keys.flip(1)])
    loss = loss_fn(z0, z1, **extra)
    loss.backward()
    sync_loss_gradients(loss_fn)
    out = {"loss": loss.detach(), "grad0": z0.grad, "grad1": z1.grad}
    if name == "swav":
        out["protos_grad"] = loss_fn.prototypes.weight.grad
    if name == "moco":
        loss_fn.on_step(None)
        out["queue"] = loss_fn.queue.clone()
    return out


def _worker(r: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=r, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    try:
        z0, z1, keys = _batch()
        rows = slice(r * LOCAL_N, (r + 1) * LOCAL_N)
        res = {name: _run(name, z0[rows], z1[rows], keys[rows], LABELS[rows]) for name in CASES}
        torch.save(res, Path(out_dir) / f"rank{r}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("losses_dist")
    mp.spawn(_worker, args=(_free_port(), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


@needs_gloo
@pytest.mark.multiprocess
@pytest.mark.parametrize("name", sorted(CASES))
def test_two_ranks_equal_one_process_on_the_concatenated_batch(
    name: str, ranks: list[dict[str, Any]]
) -> None:
    z0, z1, keys = _batch()
    single = _run(name, z0, z1, keys, LABELS)
    per_rank = [res[name] for res in ranks]

    mean_loss = sum(res["loss"] for res in per_rank) / WORLD
    torch.testing.assert_close(mean_loss, single["loss"], atol=1e-5, rtol=0)
    for r, res in enumerate(per_rank):
        rows = slice(r * LOCAL_N, (r + 1) * LOCAL_N)
        for g in ("grad0", "grad1"):
            torch.testing.assert_close(res[g] / WORLD, single[g][rows], atol=1e-6, rtol=1e-4)
    if name == "swav":
        for res in per_rank:
            torch.testing.assert_close(res["protos_grad"], single["protos_grad"], atol=1e-6, rtol=1e-4)
    if name == "moco":  # every rank enqueued the global batch's keys in the single-process order
        for res in per_rank:
            torch.testing.assert_close(res["queue"], single["queue"])


@needs_gloo
@pytest.mark.multiprocess
def test_ranks_see_different_local_losses(ranks: list[dict[str, Any]]) -> None:
    """Guards the test above against a rank silently computing the whole batch."""
    for name in CASES:
        assert not torch.allclose(ranks[0][name]["loss"], ranks[1][name]["loss"]), name
