"""Losses with a momentum target network: BYOL (and SimSiam as its momentum-0 case) and MoCo.

Both are :class:`~stages.common.losses.ModelLoss`es: ``attach(model)`` makes a frozen copy of the
model (encoder + projection head) that follows the online model by an exponential moving average in
``on_step``, and ``forward(z0, z1, inputs=batch)`` runs that copy on the collated views itself. The
copies live in the loss's ``state_dict``, which the loop checkpoints with the model.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from stages.common.distributed import world_size
from stages.common.losses.registry import ModelLoss, register_loss

__all__ = ["BYOLLoss", "MoCoLoss", "byol_regression", "ema_update"]


def byol_regression(p0: torch.Tensor, p1: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
    """BYOL's symmetric normalised MSE: ``(mean_i [2 - 2 cos(p0_i, t1_i)] + mean_i [2 - 2 cos(p1_i, t0_i)]) / 2``.

    Targets are detached (stop-gradient). BYOL sums the two directions (twice this value).
    """
    for a, b in ((p0, p1), (p0, t0), (p1, t1)):
        if a.dim() != 2 or a.shape != b.shape:
            raise ValueError(
                f"expected (N, D) tensors of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
    d01 = 2 - 2 * F.cosine_similarity(p0, t1.detach(), dim=1)
    d10 = 2 - 2 * F.cosine_similarity(p1, t0.detach(), dim=1)
    return (d01.mean() + d10.mean()) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for parameters; buffers are copied."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def _frozen_copy(model: nn.Module) -> nn.Module:
    target = copy.deepcopy(model)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def _check_momentum(momentum: float) -> float:
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    return float(momentum)


@register_loss("byol")
class BYOLLoss(ModelLoss):
    """BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", NeurIPS), a non-contrastive baseline.

    The online branch is the model plus a predictor MLP (``dim -> predictor_hidden_dim -> dim``
    with BatchNorm and ReLU, as in the paper; 4096 hidden there, 256 here for small data); the
    target branch is an EMA copy of the model (encoder and projection head) with stop-gradient::

        loss = byol_regression(pred(z0), pred(z1), target(x0), target(x1))

    ``momentum`` is the EMA rate, constant (the paper anneals 0.996 -> 1 over training).
    ``momentum = 0`` makes the target the current online network: SimSiam's stop-gradient
    (Chen & He 2021). ``forward(..., targets=(t0, t1))`` skips the target network (for tests or
    your own loop).

    Across workers: local, no gather; each rank's loss is the mean over its rows, DDP averages the
    model's gradients and the loop averages the predictor's
    (:func:`~stages.common.losses.sync_loss_gradients`), so every rank keeps identical online,
    predictor and target weights. The predictor's BatchNorm uses per-rank statistics.
    """

    needs_inputs = True

    def __init__(
        self, momentum: float = 0.99, predictor_hidden_dim: int = 256, dim: int | None = None
    ) -> None:
        super().__init__()
        self.momentum = _check_momentum(momentum)
        if predictor_hidden_dim < 1:
            raise ValueError(f"predictor_hidden_dim must be >= 1, got {predictor_hidden_dim}")
        self.predictor_hidden_dim = predictor_hidden_dim
        self.predictor: nn.Module | None = None
        self.target: nn.Module | None = None
        if dim is not None:
            self._build_predictor(dim)

    def _build_predictor(self, dim: int) -> None:
        h = self.predictor_hidden_dim
        self.predictor = nn.Sequential(
            nn.Linear(dim, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Linear(h, dim)
        )

    def attach(self, model: nn.Module) -> None:
        if self.predictor is None:
            self._build_predictor(model.out_dim)
        self.target = _frozen_copy(model)

    def forward(
        self,
        z0: torch.Tensor,
        z1: torch.Tensor,
        inputs: object = None,
        targets: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if self.predictor is None:
            raise RuntimeError("BYOLLoss without dim: call attach(model) first")
        n = z0.shape[0]
        if targets is None:
            if self.target is None or inputs is None:
                raise RuntimeError("BYOLLoss needs attach(model) and inputs=, or targets=")
            with torch.no_grad():
                _, zt = self.target(inputs)
            targets = (zt[:n], zt[n:])
        p = self.predictor(torch.cat([z0, z1]))
        return byol_regression(p[:n], p[n:], *targets)

    @torch.no_grad()
    def on_step(self, model: nn.Module) -> None:
        if self.target is not None:
            ema_update(self.target, model, self.momentum)

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}, predictor_hidden_dim={self.predictor_hidden_dim}"


@register_loss("moco")
class MoCoLoss(ModelLoss):
    """MoCo v2: momentum key encoder with a queue of negatives (He et al. 2020, "Momentum Contrast
    for Unsupervised Visual Representation Learning", CVPR; Chen et al. 2020, "Improved Baselines
    with Momentum Contrastive Learning").

    Queries ``q = normalize(z)`` come from the online model, keys ``k`` from its EMA copy (the key
    encoder, no gradient) on the same collated views. Each query's positive is the key of the *other*
    view of its sample (symmetrised, as MoCo v3), its negatives the ``queue_size`` keys in the
    queue::

        l_i = -log( exp(q_i.k_i' / t) / (exp(q_i.k_i' / t) + sum_{j in queue} exp(q_i.u_j / t)) )

    averaged over both views' queries. After the optimiser step (``on_step``) the key encoder moves by
    EMA and this step's keys replace the oldest queue entries (FIFO ring). The queue starts as random
    unit vectors drawn from ``seed``, as in the reference code. Omitted: MoCo's shuffled BatchNorm.

    Across workers: the keys of all ranks are gathered (no gradient) and enqueued in global order, so
    every rank holds the same queue as a single process on the concatenated batch; the loss is the
    mean over local queries against that shared queue, so the mean of the per-rank losses and the
    gradients equal the single-process ones.
    """

    needs_inputs = True

    def __init__(
        self,
        temperature: float = 0.2,
        queue_size: int = 1024,
        momentum: float = 0.99,
        seed: int = 0,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.temperature = float(temperature)
        self.queue_size = queue_size
        self.momentum = _check_momentum(momentum)
        self.seed = seed
        self.key_encoder: nn.Module | None = None
        self._pending: torch.Tensor | None = None
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue", None)  # (queue_size, dim), built once dim is known
        if dim is not None:
            self._build_queue(dim)

    def _build_queue(self, dim: int) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        self.register_buffer("queue", F.normalize(torch.randn(self.queue_size, dim, generator=gen), dim=1))

    def attach(self, model: nn.Module) -> None:
        if self.queue is None:
            self._build_queue(model.out_dim)
        self.key_encoder = _frozen_copy(model)

    def forward(
        self, z0: torch.Tensor, z1: torch.Tensor, inputs: object = None, keys: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``keys`` (2N, D): the key encoder's output on ``cat([view0, view1])``; default: run it on ``inputs``."""
        if self.queue is None:
            raise RuntimeError("MoCoLoss without dim: call attach(model) first")
        n = z0.shape[0]
        if keys is None:
            if self.key_encoder is None or inputs is None:
                raise RuntimeError("MoCoLoss needs attach(model) and inputs=, or keys=")
            with torch.no_grad():
                _, keys = self.key_encoder(inputs)
        k = F.normalize(keys.detach(), dim=1)
        q = F.normalize(torch.cat([z0, z1]), dim=1)
        k_pos = torch.cat([k[n:], k[:n]])
        l_pos = (q * k_pos).sum(dim=1, keepdim=True)
        l_neg = q @ self.queue.T
        logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature
        loss = F.cross_entropy(logits, torch.zeros(2 * n, dtype=torch.long, device=q.device))
        if self.training:
            # gather now (every rank runs forward), enqueue after the optimiser step
            k0, k1 = k[:n], k[n:]
            if world_size() > 1:
                k0, k1 = _all_gather(k0), _all_gather(k1)
            self._pending = torch.cat([k0, k1])
        return loss

    @torch.no_grad()
    def on_step(self, model: nn.Module) -> None:
        if self.key_encoder is not None:
            ema_update(self.key_encoder, model, self.momentum)
        if self._pending is not None and self.queue is not None:
            keys, self._pending = self._pending[-self.queue_size :], None
            idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % self.queue_size
            self.queue[idx] = keys.to(self.queue.dtype)
            self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % self.queue_size)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, queue_size={self.queue_size}, momentum={self.momentum}"


def _all_gather(x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)
