"""NT-Xent / InfoNCE (SimCLR, Chen 2020; Oord 2018), negatives gathered from every worker with gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stages.common.distributed import gather_with_grad, rank, world_size
from stages.common.losses.registry import register_loss


@register_loss("ntxent", "infonce")
class NTXentLoss(nn.Module):
    """NT-Xent (normalised temperature-scaled cross entropy) loss.

    The contrastive loss of SimCLR (Chen et al. 2020, "A Simple Framework for
    Contrastive Learning of Visual Representations"), an instance of InfoNCE
    (Oord et al. 2018, "Representation Learning with Contrastive Predictive
    Coding").  For the 2N views of a batch of N pairs, with ``s`` the cosine
    similarity and ``i'`` the other view of view ``i``::

        l_i = -log( exp(s_ii' / t) / sum_{k != i} exp(s_ik / t) )

    and the loss is the mean of ``l_i`` over views, i.e. both directions
    (z0 -> z1 and z1 -> z0) averaged.

    Across workers (``gather_distributed=True`` and an initialised
    process group): the embeddings of all ranks are gathered with gradients,
    so the 2M - 2 other views of the *global* batch (M = N * world size) are
    negatives, while the loss on each rank is the mean over that rank's own
    2N views.  The average of the per-rank losses therefore equals the
    single-process loss on the concatenated batch; backward through
    ``loss / world_size()`` on each rank yields exactly the single-process
    gradient for the local embeddings.  Without a process group (or with
    ``gather_distributed=False``) only the local batch is used.

    Args:
        temperature: softmax temperature ``t`` (> 0).
        gather_distributed: draw negatives from all ranks.
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.gather_distributed = gather_distributed

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        """Loss for embeddings ``z0``, ``z1`` of shape (N, D); row i of each is a pair."""
        if z0.dim() != 2 or z0.shape != z1.shape:
            raise ValueError(
                f"expected two (N, D) tensors of equal shape, got {tuple(z0.shape)} and {tuple(z1.shape)}"
            )
        n = z0.shape[0]
        z0 = F.normalize(z0, dim=1)
        z1 = F.normalize(z1, dim=1)

        if self.gather_distributed and world_size() > 1:
            all0, all1 = gather_with_grad(z0), gather_with_grad(z1)
            offset = rank() * n
        else:
            all0, all1, offset = z0, z1, 0

        # Global indices of the local samples: positive of local z0[i] is
        # all1[offset + i] and vice versa; all0[offset + i] is z0[i] itself.
        idx = torch.arange(n, device=z0.device) + offset
        self_mask = F.one_hot(idx, num_classes=all0.shape[0]).bool()

        t = self.temperature
        logits_01 = z0 @ all1.T / t
        logits_00 = (z0 @ all0.T / t).masked_fill(self_mask, float("-inf"))
        logits_10 = z1 @ all0.T / t
        logits_11 = (z1 @ all1.T / t).masked_fill(self_mask, float("-inf"))

        # Columns [cross-view | same-view]; the target (positive) is column idx.
        loss0 = F.cross_entropy(torch.cat([logits_01, logits_00], dim=1), idx)
        loss1 = F.cross_entropy(torch.cat([logits_10, logits_11], dim=1), idx)
        return (loss0 + loss1) / 2

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"
