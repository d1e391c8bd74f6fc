"""Small ``torch.distributed`` helpers for contrastive pretraining.

Contrastive losses such as NT-Xent get better with more negatives, so under
data parallelism every rank wants the embeddings of *all* ranks.  A plain
``dist.all_gather`` returns tensors that are cut from the autograd graph, so the
gradient that other ranks' losses send back to this rank's embeddings would be
lost.  :func:`gather_with_grad` keeps that path (as lightly's ``GatherLayer``
and the SimCLR reference implementations do).

Every helper degrades to the single-process behaviour when ``torch.distributed``
is unavailable or no process group is initialised.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = ["gather_with_grad", "is_distributed", "rank", "world_size"]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a process group exists."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of ranks in the default process group (1 when not initialised)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default process group (0 when not initialised)."""
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward routes gradients to their owner."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.batch_size = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        # Every rank's loss depends on every rank's embeddings: rank r's rows of
        # the gathered tensor are used as negatives by all ranks.  This rank's
        # grad_output only holds d(loss_this_rank)/d(gathered), so summing it
        # over ranks gives d(sum_r loss_r)/d(gathered); the slice of our own
        # rows is then the full gradient w.r.t. our local input.  (Returning
        # the local slice alone would drop every other rank's contribution.)
        # Clone: all_reduce works in place and grad_output may be shared.
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch_size
        return grad.narrow(0, start, ctx.batch_size)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` along dim 0 across ranks, keeping gradients.

    Returns ``x`` unchanged when ``torch.distributed`` is unavailable, not
    initialised, or the world size is 1.  The result is the concatenation of
    every rank's ``x`` in rank order, so this rank's rows start at
    ``rank() * x.shape[0]``.

    In backward, the incoming gradients are summed over ranks and this rank's
    slice is returned; i.e. the gradient w.r.t. the local ``x`` is that of
    ``sum_r loss_r`` (divide each rank's loss by :func:`world_size` to get the
    gradient of the mean).

    Raises:
        ValueError: if the ranks hold different batch sizes (checked on every
            rank, so all ranks raise together instead of deadlocking).
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    if x.dim() == 0:
        raise ValueError("gather_with_grad needs a tensor with at least one dim")
    # all_gather needs equally shaped tensors; gather the sizes first so that a
    # mismatch becomes a clear error on every rank rather than a hang/garbage.
    size = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    sizes = [torch.empty_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    batch_sizes = [int(s.item()) for s in sizes]
    if len(set(batch_sizes)) != 1:
        raise ValueError(
            f"gather_with_grad requires the same batch size on all ranks, got {batch_sizes} (rank -> size)"
        )
    return _GatherWithGrad.apply(x)
