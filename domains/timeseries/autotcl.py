"""AutoTCL: a learned, parametric augmentation for time series (``pretrain.loss: autotcl``).

Zheng et al., "Parametric Augmentation for Time Series Contrastive Learning", ICLR 2024 (code:
``AslanDing/AutoTCL``, built on TS2Vec). Instead of hand-picked jitter/scaling/cropping, an
*augmentation network* looks at each series ``x`` ``[B, C, T]`` and produces

* a factorisation mask ``h(x) ∈ [0, 1]^T``: a hard-concrete relaxation (Louizos et al. 2018) of a
  per-timestep Bernoulli "keep" gate, so gradients flow through a sample that can be exactly 0 or 1.
  ``x* = h(x) ⊙ x`` is the informative part, the rest is treated as noise;
* an invertible transformation ``g``: a per-timestep, per-channel affine map with a scale bounded
  away from zero (``exp(±max_log_scale)``) and a bounded shift, so ``x*`` can always be recovered
  from ``g(x*)`` — the view loses nothing of ``x*`` (the paper's lossless-on-``x*`` requirement).

The view is ``v = scale(x) ⊙ (h(x) ⊙ x) + shift(x) + σ ε`` with ``ε ~ N(0, 1)``, time-aligned with
``x``. The encoder contrasts ``x`` with ``v``; the augmenter is trained *adversarially*: it maximises
the same contrastive loss (harder positives), held back by the information-preservation regulariser
that keeps ``h`` from erasing the series (a keep-rate term pulling each series' mean gate to
``keep_ratio``, and a total-variation "regularity" term favouring contiguous kept segments).

One optimiser, one backward: the adversarial min-max is a **gradient-reversal layer** on the
augmenter's output. Forward it is the identity; backward it negates the gradient, so one
``loss.backward(); optim.step()`` descends the contrastive loss in the encoder's parameters and
ascends it in the augmenter's. The regulariser is added after the reversal, so the augmenter
*minimises* it. (The paper alternates an augmenter step and an encoder step; the reversal makes the
simultaneous-gradient version of the same game, which fits the loop's single optimiser, DDP and
checkpoints without a second optimiser state.)

Contrastive loss: TS2Vec's hierarchical loss (``objectives.hierarchical_contrastive_loss``) between the
per-timestep representations of ``x`` and ``v``. AutoTCL's released classification code pairs a global
instance InfoNCE on max-pooled representations with a weighted local (segment) InfoNCE; the hierarchical
loss has both parts — instance contrast at every scale down to the max-pooled series, and temporal
(local) contrast — and is the repo's TS2Vec objective, so ``autotcl`` vs ``ts2vec`` isolates the
augmentation.

Loop protocol (as TS2Vec's and CURL's objectives): ``make_views`` returns ``(windows, [], x)``; the
loop encodes the raw windows through the (possibly DDP-wrapped) model; ``loss`` builds ``v`` from ``x``,
encodes it with the bound encoder and contrasts the two. The module is the model's head, so the
optimiser, DDP and checkpoints cover the augmenter.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import RelaxedBernoulli

from domains.timeseries.encoders import TS2VecEncoder
from domains.timeseries.objectives import _random_window, hierarchical_contrastive_loss

# hard-concrete stretch interval (Louizos et al. 2018): samples in (0, 1) are stretched to
# (GAMMA, ZETA) and clamped, so exact 0s and 1s have non-zero probability.
GAMMA, ZETA = -0.1, 1.1


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, coeff: float) -> Tensor:  # noqa: ANN401
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN401
        return -ctx.coeff * grad, None


def reverse_grad(x: Tensor, coeff: float = 1.0) -> Tensor:
    """Identity forward; multiplies the gradient by ``-coeff`` backward (Ganin & Lempitsky 2015)."""
    return _ReverseGrad.apply(x, coeff)


class Augmenter(nn.Module):
    """``x`` ``[B, C, T]`` → (mask logits ``[B, T]``, scale ``[B, C, T]``, shift ``[B, C, T]``).

    A small TS2Vec dilated CNN (no timestamp masking, no dropout: the augmentation should depend on
    the series only) reads the series and emits ``1 + 2C`` values per timestep.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_dim: int = 16,
        depth: int = 2,
        keep_init: float = 0.7,
        max_log_scale: float = 1.0,
        max_shift: float = 0.5,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.max_log_scale, self.max_shift = max_log_scale, max_shift
        self.net = TS2VecEncoder(
            in_channels,
            hidden_dim=hidden_dim,
            out_dim=1 + 2 * in_channels,
            depth=depth,
            mask_p=0.0,
            dropout=0.0,
        )
        # Start near the identity transformation with a gate that keeps ``keep_init`` of the steps:
        # zero the last block's output so only the bias decides the first steps.
        last = self.net.blocks[-1]
        for conv in (last.conv2.conv, last.projector):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        with torch.no_grad():
            last.conv2.conv.bias[0] = _keep_logit(keep_init)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, _ = self.net.forward_timestamps(x)  # [B, T, 1 + 2C]
        logits = out[..., 0]
        c = self.in_channels
        scale = torch.exp(self.max_log_scale * torch.tanh(out[..., 1 : 1 + c])).transpose(1, 2)
        shift = (self.max_shift * torch.tanh(out[..., 1 + c :])).transpose(1, 2)
        return logits, scale, shift


def _keep_logit(p: float, temperature: float = 2.0 / 3.0) -> float:
    """Gate logit whose hard-concrete gate has expected value about ``p`` (its pre-stretch sigmoid
    solves ``GAMMA + (ZETA - GAMMA) s = p``; temperature barely moves the mean)."""
    s = (p - GAMMA) / (ZETA - GAMMA)
    return math.log(s / (1 - s))


class AutoTCLObjective(nn.Module):
    """AutoTCL's adversarially learned augmentation + TS2Vec's hierarchical contrastive loss."""

    def __init__(
        self,
        alpha: float = 0.5,
        max_train_length: int | None = 3000,
        noise_std: float = 0.05,
        keep_ratio: float = 0.7,
        reg_weight: float = 1.0,
        smooth_weight: float = 0.1,
        adv_weight: float = 1.0,
        gate_temperature: float = 2.0 / 3.0,
        aug_hidden_dim: int = 16,
        aug_depth: int = 2,
    ) -> None:
        super().__init__()
        self.alpha, self.max_train_length = alpha, max_train_length
        self.noise_std, self.keep_ratio = noise_std, keep_ratio
        self.reg_weight, self.smooth_weight, self.adv_weight = reg_weight, smooth_weight, adv_weight
        self.gate_temperature = gate_temperature
        self.aug_hidden_dim, self.aug_depth = aug_hidden_dim, aug_depth
        self.augmenter: Augmenter | None = None
        # The bound encoder lives in a tuple so that nn.Module does not register it as a child: the
        # encoder already belongs to the model; registering it twice would duplicate its weights in
        # the head's state_dict (and safetensors refuses tensors that share memory).
        self._encoder: tuple[nn.Module, ...] = ()
        self._last: dict[str, Tensor] = {}

    def bind(self, encoder: nn.Module) -> None:
        """Size the augmenter for the encoder's input channels and remember the encoder."""
        self._encoder = (encoder,)
        self.augmenter = Augmenter(
            int(encoder.in_channels), self.aug_hidden_dim, self.aug_depth, keep_init=self.keep_ratio
        )

    # -- the augmentation
    def gate(self, logits: Tensor) -> Tensor:
        """Hard-concrete gate ``[B, T]``: a reparameterised sample while training, the deterministic
        (noise-free) gate in eval mode."""
        if self.training:
            s = RelaxedBernoulli(
                torch.tensor(self.gate_temperature, device=logits.device), logits=logits
            ).rsample()
        else:
            s = torch.sigmoid(logits)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def augment(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, C, T]`` → (view ``v`` ``[B, C, T]``, gate ``h`` ``[B, T]``), without reversal."""
        assert self.augmenter is not None, "call bind(encoder) first"
        missing = torch.isnan(x)
        x0 = torch.where(missing, torch.zeros_like(x), x)
        logits, scale, shift = self.augmenter(x)
        h = self.gate(logits)
        v = scale * (h.unsqueeze(1) * x0) + shift
        # padded / missing steps stay missing, so the encoder masks them in both views
        return torch.where(missing, x, v), h

    def regulariser(self, h: Tensor) -> Tensor:
        """Information preservation: each series keeps about ``keep_ratio`` of its steps (so ``h``
        can neither erase nor pass through everything), and kept segments are contiguous."""
        keep = ((h.mean(dim=1) - self.keep_ratio) ** 2).mean()
        smooth = (h[:, 1:] - h[:, :-1]).abs().mean() if h.size(1) > 1 else h.new_zeros(())
        return self.reg_weight * keep + self.smooth_weight * smooth

    # -- the loop protocol
    def make_views(
        self, xs: list[np.ndarray], rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """One random window per series, all cut to the batch's shortest length (and at most
        ``max_train_length``) as TS2Vec does, so ``x`` and ``v`` stay time-aligned. Returns
        ``(windows, [], stacked windows)``: the loop encodes the windows, ``loss`` augments the stack."""
        if self.max_train_length is not None:
            xs = [_random_window(np.asarray(x), self.max_train_length, rng) for x in xs]
        length = min(int(np.asarray(x).shape[-1]) for x in xs)
        windows = [np.ascontiguousarray(_random_window(np.asarray(x), length, rng)) for x in xs]
        return windows, [], np.stack(windows).astype(np.float32)

    def contrast(self, hx: Tensor, x: Tensor, reverse: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """(contrastive loss, reps of ``v``, gate) for reps ``hx`` ``[B, T', D]`` of ``x`` ``[B, C, T]``."""
        assert self._encoder, "call bind(encoder) first"
        v, h = self.augment(x)
        if reverse:
            v = reverse_grad(v, self.adv_weight)
        if self.noise_std > 0:
            v = v + self.noise_std * torch.randn_like(v)
        hv, _ = self._encoder[0].forward_timestamps(v)
        T = x.size(-1)
        return hierarchical_contrastive_loss(hx[:, :T], hv[:, :T], alpha=self.alpha), hv, h

    def loss(self, hx: Tensor, _unused: Tensor, _length: int, x: np.ndarray) -> Tensor:
        """Contrast the loop's reps of ``x`` with the encoder's reps of the learned view, plus the
        augmenter's regulariser. The encoder gets ``∇ contrast``, the augmenter
        ``-adv_weight · ∇ contrast + ∇ regulariser``."""
        xt = torch.as_tensor(x, device=hx.device)
        loss, hv, h = self.contrast(hx, xt)
        self._last = {"hv": hv.detach(), "gate_mean": h.detach().mean()}
        return loss + self.regulariser(h)

    def instance_embeddings(self, reps: Tensor, batch: int, length: int, _x: np.ndarray) -> Tensor:
        """Max-pooled embeddings ``[2B, D]`` of ``x`` and of its learned view, for diagnostics."""
        with torch.no_grad():
            hx = reps[:batch, :length].max(1).values
            hv = self._last["hv"][:, :length].max(1).values if "hv" in self._last else hx
            return torch.cat([hx, hv])

    def forward(self, h: Tensor) -> Tensor:  # as a head it is never used for features
        return h
