"""CURL's and ATC's momentum-target bilinear InfoNCE (``pretrain.loss: curl`` / ``atc``).

* **CURL** (Laskin et al. 2020): anchor = one random shift of ``o_t``, positive = another shift of
  the same ``o_t``; ``q = f(anchor)``, ``k = f_EMA(positive)`` (no gradient), logits ``q W kᵀ`` (a
  learned bilinear ``W``), max-subtracted, cross-entropy with the diagonal as the target.
* **ATC** (Stooke et al. 2021): the positive is a shift of the observation ``k`` steps later,
  ``o_{t+k}`` (stored in the row), and the anchor code passes through a residual MLP predictor
  before the bilinear product; a slower target (``tau = 0.01``).

These objectives own parameters (``W``, the predictor, the EMA target), so they are ``nn.Module``s:
the pretrain loop makes such an objective the model's head, so that the optimiser, DDP and the
checkpoints cover it, and calls ``after_step(encoder)`` after every optimiser step for the EMA.
Keys from every worker are gathered (they need no gradient) so negatives come from the global batch.

Protocol with the pretrain loop (shared with TS2Vec's objective): ``make_views(batch, rng)`` →
``(anchors, [], keys)``; the loop encodes the anchors online; ``loss(q, _, _, keys)``;
``instance_embeddings`` returns ``[q; k]`` for the loop's alignment/uniformity diagnostics.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from domains.rl.views import apply_policy

SHIFT = [{"name": "shift", "pad": 4}]


def _gather(k: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All workers' keys (no gradient needed) and this worker's offset into them."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return k, 0
    parts = [torch.empty_like(k) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, k.contiguous())
    return torch.cat(parts), dist.get_rank() * k.shape[0]


class MomentumBilinearContrast(nn.Module):
    def __init__(self, temporal: bool, predictor: bool, tau: float, steps: list[dict] | None = None) -> None:
        super().__init__()
        self.temporal, self.use_predictor, self.tau = temporal, predictor, tau
        self.steps = SHIFT if steps is None else steps
        self.target: nn.Module | None = None
        self.W: nn.Parameter | None = None
        self.predictor: nn.Module | None = None
        self._keys: torch.Tensor | None = None

    def bind(self, encoder: nn.Module) -> None:
        """Create the EMA target (a frozen copy of ``encoder``), ``W`` and the predictor."""
        d = encoder.embedding_dim
        self.target = copy.deepcopy(encoder)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.W = nn.Parameter(torch.rand(d, d))  # CURL's initialisation
        if self.use_predictor:
            self.predictor = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, d))

    # -- the loop protocol
    def make_views(
        self, batch: list[np.ndarray], rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Rows ``[2, S*C, H, W]`` → (anchors, [], keys): keys come from ``x[1]`` (``o_{t+k}``) for
        ATC, from another shift of ``x[0]`` for CURL."""
        anchors = [apply_policy(x[0], rng, self.steps) for x in batch]
        keys = [apply_policy(x[1] if self.temporal else x[0], rng, self.steps) for x in batch]
        return anchors, [], np.stack(keys)

    def loss(self, q: torch.Tensor, _unused: torch.Tensor, _length: int, keys: np.ndarray) -> torch.Tensor:
        assert self.target is not None and self.W is not None, "call bind(encoder) first"
        with torch.no_grad():
            self.target.train(self.training)
            k = self.target(torch.as_tensor(keys, device=q.device))
        self._keys = k
        if self.predictor is not None:
            q = q + self.predictor(q)  # ATC's residual predictor on the anchor code
        all_k, offset = _gather(k)
        logits = q @ self.W @ all_k.T
        logits = logits - logits.max(dim=1, keepdim=True).values.detach()
        labels = torch.arange(q.shape[0], device=q.device) + offset
        return F.cross_entropy(logits, labels)

    def instance_embeddings(self, q: torch.Tensor, _b: int, _length: int, _keys: np.ndarray) -> torch.Tensor:
        k = self._keys if self._keys is not None else q
        return torch.cat([q.detach(), k.detach()])

    @torch.no_grad()
    def after_step(self, encoder: nn.Module) -> None:
        """EMA update of the target: ``θ' ← (1 - tau) θ' + tau θ``."""
        assert self.target is not None
        for pt, p in zip(self.target.parameters(), encoder.parameters(), strict=True):
            pt.lerp_(p.detach(), self.tau)
        for bt, b in zip(self.target.buffers(), encoder.buffers(), strict=True):
            bt.copy_(b)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # as a head it is never used for features
        return h


class CURLObjective(MomentumBilinearContrast):
    """CURL: instance positives, key encoder EMA with tau 0.05 (CURL's ``encoder_tau``)."""

    def __init__(self) -> None:
        super().__init__(temporal=False, predictor=False, tau=0.05)


class ATCObjective(MomentumBilinearContrast):
    """ATC: temporal positives ``k`` steps ahead, residual predictor, target tau 0.01."""

    def __init__(self) -> None:
        super().__init__(temporal=True, predictor=True, tau=0.01)
