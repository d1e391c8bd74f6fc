"""Core-tuning: contrast-regularised fine-tuning (Zhang et al., NeurIPS 2021; code: Vanint/Core-tuning).

Full fine-tuning whose loss is ``CE + eta * L_con``, where ``L_con`` is the supervised contrastive
loss (SupCon, Khosla et al. 2020) on the projection head's L2-normalised output ``z = g(h)`` of the
labelled batch. What is kept from the paper and its official code:

- **Hard pair mining by feature mixup** (``mine_hard_pairs``), on the encoder features ``h`` of the
  batch, exactly the two generators of the official ``feature_mixup``:
  *hard negatives*: each sample mixed with a randomly shuffled partner, the partner weighted by
  ``lam >= 0.8`` (``lam ~ Beta(a, a)`` clipped from below at 0.8): a point of the partner's class
  lying close to the anchor; *hard positives*: each anchor's hardest positive (the same-class sample
  least cosine-similar to it) mixed with its hardest negative (the other-class sample most similar),
  ``lam * h_pos + (1 - lam) * h_neg``: a positive pushed towards the class boundary.
- **Smoothed classifier boundary**: the cross-entropy is taken on the batch *and* the generated
  features with their mixed (soft) one-hot labels, as in the official code (manifold mixup on ``h``).
- The projection head is the pretrained one when the model has it (the paper fine-tunes the CSL
  model's own head on top of the encoder); random-init runs get a fresh head.

Simplifications / deviations (each marked ``deviation:`` below):

- The positive's weight ``lam`` is folded into ``[0.5, 1]`` so a generated hard positive really
  belongs to the anchor's class; the official code draws it unconstrained and then treats every
  mixed sample with a unique soft label as its own class, which makes "hard positives" negatives.
  Here each generated sample takes the class of its dominant component for the contrastive term.
- ``L_con`` is the plain SupCon ``L_out`` of the paper's equation (mean over each anchor's
  positives, then over anchors that have one); the official code adds a focal weight ``1 - p`` and
  averages over all batch columns, which rescales it (so its ``--eta_weight 10`` is not comparable).
- The temperature defaults to the official code's 0.07; ``eta`` to 0.1 (``finetune.core_eta``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: the official code clips the hard-negative partner's weight from below at 0.8
HARD_NEGATIVE_MIN_LAM = 0.8


@dataclass
class MinedPairs:
    """The batch followed by its generated hard negatives and hard positives (``3B`` rows)."""

    features: torch.Tensor  # [3B, D]
    soft_labels: torch.Tensor  # [3B, C] mixed one-hot targets for the cross-entropy
    classes: torch.Tensor  # [3B] class of each row for the contrastive positives
    # the choices made, for inspection and tests (each [B])
    neg_partner: torch.Tensor
    neg_lam: torch.Tensor
    hard_pos: torch.Tensor
    hard_neg: torch.Tensor
    pos_lam: torch.Tensor


def supcon_loss(z: torch.Tensor, classes: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon ``L_out``: ``-mean_i 1/|P(i)| sum_{p in P(i)} log softmax_{a != i}(z_i . z_a / t)[p]``.

    ``z`` is L2-normalised here; anchors without any positive are left out of the mean (zero loss
    when none has one).
    """
    z = F.normalize(z, dim=1)
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (classes[:, None] == classes[None, :]) & ~self_mask
    n_pos = positives.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    per_anchor = log_prob.masked_fill(~positives, 0.0).sum(1)[has] / n_pos[has]
    return -per_anchor.mean()


def mine_hard_pairs(
    h: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float, rng: np.random.Generator
) -> MinedPairs:
    """Generate Core-tuning's hard negatives and hard positives by mixing encoder features ``h``."""
    b = h.shape[0]
    onehot = F.one_hot(y, n_classes).to(h.dtype)
    with torch.no_grad():
        hn = F.normalize(h.detach(), dim=1)
        sim = hn @ hn.T
        same = y[:, None] == y[None, :]
        eye = torch.eye(b, dtype=torch.bool, device=h.device)
        pos_mask, neg_mask = same & ~eye, ~same
        # hardest positive: least similar same-class sample; hardest negative: most similar
        # other-class sample. Without one, the anchor itself stands in (as the official code does).
        idx = torch.arange(b, device=h.device)
        hard_pos = sim.masked_fill(~pos_mask, float("inf")).argmin(1)
        hard_pos = torch.where(pos_mask.any(1), hard_pos, idx)
        hard_neg = sim.masked_fill(~neg_mask, float("-inf")).argmax(1)
        hard_neg = torch.where(neg_mask.any(1), hard_neg, idx)

    # Hard negatives: a random partner dominates (weight >= 0.8), so the mixed point carries the
    # partner's class while lying near the anchor. The partner is a random permutation, as in the
    # official code ("even if a few pairs are not negative ... it won't affect" it).
    partner = torch.from_numpy(rng.permutation(b)).to(h.device)
    lam_n = torch.from_numpy(np.maximum(rng.beta(alpha, alpha, b), HARD_NEGATIVE_MIN_LAM)).to(h)[:, None]
    f_neg = (1 - lam_n) * h + lam_n * h[partner]
    y_neg = (1 - lam_n) * onehot + lam_n * onehot[partner]

    # Hard positives: the hardest positive pulled towards the hardest negative.
    # deviation: lam folded into [0.5, 1] so the positive dominates (see the module docstring).
    lam = rng.beta(alpha, alpha, b)
    lam_p = torch.from_numpy(np.maximum(lam, 1 - lam)).to(h)[:, None]
    f_pos = lam_p * h[hard_pos] + (1 - lam_p) * h[hard_neg]
    y_pos = lam_p * onehot[hard_pos] + (1 - lam_p) * onehot[hard_neg]

    return MinedPairs(
        features=torch.cat([h, f_neg, f_pos]),
        soft_labels=torch.cat([onehot, y_neg, y_pos]),
        # dominant component's class: the partner's for hard negatives, the anchor's for positives
        classes=torch.cat([y, y[partner], y[hard_pos]]),
        neg_partner=partner,
        neg_lam=lam_n[:, 0],
        hard_pos=hard_pos,
        hard_neg=hard_neg,
        pos_lam=lam_p[:, 0],
    )


def core_loss(
    h: torch.Tensor,
    y: torch.Tensor,
    classifier: nn.Module,
    head: nn.Module,
    n_classes: int,
    eta: float,
    temperature: float,
    alpha: float,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Core-tuning's training loss on one labelled batch of encoder features ``h``.

    Returns the total ``CE(mixed) + eta * SupCon(g(mixed))`` and its two parts (for logging).
    """
    mined = mine_hard_pairs(h, y, n_classes, alpha, rng)
    log_p = F.log_softmax(classifier(mined.features), dim=1)
    ce = -(log_p * mined.soft_labels).sum(1).mean()
    con = supcon_loss(head(mined.features), mined.classes, temperature)
    return ce + eta * con, {"ce": float(ce.detach()), "supcon": float(con.detach())}
