"""More contrastive / self-supervised losses, registered in :mod:`stages.common.losses`.

Kept in a sibling module so that ``losses.py`` stays short; ``losses.py`` imports
this module at its end, so the registry always holds every loss.  The momentum
losses (BYOL, MoCo) live in :mod:`stages.common.losses.momentum`.

Every loss is a plain ``nn.Module`` whose ``forward`` takes the two views'
embeddings (row i of each is a pair) plus optional extras and returns a scalar.
Each docstring says what the loss does under ``torch.distributed``:

* **gathers negatives with gradients** (``gather_with_grad``): the per-rank loss
  is the mean over the rank's own samples with the global batch as negatives;
  the mean of the per-rank losses equals the single-process loss on the
  concatenated batch, and backward through ``loss / world_size()`` on every
  rank (what DDP's gradient averaging amounts to) gives the single-process
  gradient;
* **all-reduces / gathers statistics** (VICReg, SwAV): batch statistics are
  global, the same convention holds;
* **local per worker**: the loss only sees the local batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from stages.common.distributed import gather_with_grad, rank, world_size
from stages.common.losses.registry import ModelLoss, register_loss

__all__ = [
    "CWCLoss",
    "DCLLoss",
    "DCLWLoss",
    "MoCHiLoss",
    "NTXentIndividualLoss",
    "SupConLoss",
    "SwAVLoss",
    "VICRegLoss",
]


# --------------------------------------------------------------------------- helpers


def _check_pair(z0: torch.Tensor, z1: torch.Tensor) -> None:
    if z0.dim() != 2 or z0.shape != z1.shape:
        raise ValueError(
            f"expected two (N, D) tensors of equal shape, got {tuple(z0.shape)} and {tuple(z1.shape)}"
        )


def _check_temperature(temperature: float, name: str = "temperature") -> float:
    if not temperature > 0:
        raise ValueError(f"{name} must be > 0, got {temperature}")
    return float(temperature)


def _distributed(gather: bool) -> bool:
    return gather and world_size() > 1


def _gather_pair(z0: torch.Tensor, z1: torch.Tensor, gather: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(all0, all1, offset): the global batch (with gradients) and this rank's first row in it."""
    if _distributed(gather):
        return gather_with_grad(z0), gather_with_grad(z1), rank() * z0.shape[0]
    return z0, z1, 0


def _view_indices(n: int, m: int, offset: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For the 2n local views ``cat([z0, z1])`` as rows of the 2m global views ``cat([all0, all1])``:
    (index of the view itself, index of its positive)."""
    local = torch.arange(n, device=device) + offset
    self_idx = torch.cat([local, local + m])
    pos_idx = torch.cat([local + m, local])
    return self_idx, pos_idx


def _gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Plain all_gather along dim 0 (no autograd); sizes were already checked by gather_with_grad."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class _Contrastive(nn.Module):
    """Base with the shared temperature / gather_distributed settings."""

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        self.gather_distributed = gather_distributed

    def _views(self, z0: torch.Tensor, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """Normalised local views (2n, D), global views (2m, D), n and the rank offset."""
        _check_pair(z0, z1)
        z0, z1 = F.normalize(z0, dim=1), F.normalize(z1, dim=1)
        all0, all1, offset = _gather_pair(z0, z1, self.gather_distributed)
        return torch.cat([z0, z1]), torch.cat([all0, all1]), z0.shape[0], offset

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"


# --------------------------------------------------------------------------- DCL / DCLW


@register_loss("dcl")
class DCLLoss(_Contrastive):
    """Decoupled contrastive loss (Yeh et al. 2022, "Decoupled Contrastive Learning", ECCV).

    NT-Xent with the positive removed from the denominator.  For each of the 2N
    views ``i`` with positive ``i'`` and cosine similarity ``s``::

        l_i = -w_i * s_ii' / t + log sum_{k not in {i, i'}} exp(s_ik / t)

    with ``w_i = 1``; the loss is the mean over the 2N views (both directions
    averaged; the paper's reference code sums the two directions, i.e. twice this).

    Across workers: gathers negatives with gradients exactly like
    :class:`~stages.common.losses.NTXentLoss` (mean of per-rank losses ==
    single-process loss on the concatenated batch; backward through
    ``loss / world_size()`` == single-process gradient).

    Raises ``ValueError`` when the (global) batch has fewer than 2 pairs: there
    are no negatives then.
    """

    def _weights(self, all0: torch.Tensor, all1: torch.Tensor) -> torch.Tensor | None:
        return None

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        views, all_views, n, offset = self._views(z0, z1)
        m = all_views.shape[0] // 2
        if m < 2:
            raise ValueError("DCL needs at least 2 pairs in the (global) batch: there are no negatives")
        self_idx, pos_idx = _view_indices(n, m, offset, views.device)
        sim = views @ all_views.T / self.temperature
        rows = torch.arange(2 * n, device=views.device)
        pos = sim[rows, pos_idx]
        drop = F.one_hot(self_idx, 2 * m).bool() | F.one_hot(pos_idx, 2 * m).bool()
        neg = torch.logsumexp(sim.masked_fill(drop, float("-inf")), dim=1)
        w = self._weights(all_views[:m], all_views[m:])
        if w is not None:
            local_w = w[offset : offset + n]
            pos = pos * torch.cat([local_w, local_w])
        return (neg - pos).mean()


@register_loss("dclw")
class DCLWLoss(DCLLoss):
    """Weighted decoupled contrastive loss, DCLW (Yeh et al. 2022, see :class:`DCLLoss`).

    The positive term of pair ``j`` is weighted by the negative von Mises-Fisher weight::

        w_j = 2 - M * softmax_j(s_jj' / sigma)        (softmax over the M pairs)

    so the weights average to 1 and easy (very similar) positives get less
    weight.  This equals ``2 - 2M * softmax`` over the 2M directed views, since
    both views of a pair share ``s_jj'``.  The weights are computed from detached
    embeddings (as in lightly's DCLW), i.e. treated as constants.

    Across workers: gathers negatives with gradients like :class:`DCLLoss`; the
    softmax of the weights runs over the *global* batch, so the distributed loss
    equals the single-process one (lightly normalises over the local batch).
    """

    def __init__(self, temperature: float = 0.1, sigma: float = 0.5, gather_distributed: bool = True) -> None:
        super().__init__(temperature=temperature, gather_distributed=gather_distributed)
        self.sigma = _check_temperature(sigma, "sigma")

    def _weights(self, all0: torch.Tensor, all1: torch.Tensor) -> torch.Tensor:
        s_pos = (all0.detach() * all1.detach()).sum(dim=1)
        return 2 - all0.shape[0] * torch.softmax(s_pos / self.sigma, dim=0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma={self.sigma}"


# --------------------------------------------------------------------------- SupCon


@register_loss("supcon")
class SupConLoss(_Contrastive):
    """Supervised contrastive loss (Khosla et al. 2020, "Supervised Contrastive Learning", NeurIPS).

    The ``L_out`` form: for each of the 2N views ``i``, with ``P(i)`` all other
    views carrying the same label (including its own other view)::

        l_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip / t) / sum_{a != i} exp(s_ia / t) )

    and the loss is the mean over views.  ``labels=None`` gives every pair its
    own class, which is exactly NT-Xent.  The paper code's extra factor
    ``t / base_temperature`` is not applied (it is 1 with its defaults).

    Across workers: embeddings are gathered with gradients and labels with a
    plain ``all_gather`` (no gradient), so positives and negatives come from
    the global batch; same convention as NT-Xent.

    In the pipeline: the pretrain stage deliberately feeds only unlabeled rows
    to the workers, so a recipe naming ``supcon`` is refused when it loads;
    call it with ``labels`` from your own loop for supervised use.
    """

    def forward(self, z0: torch.Tensor, z1: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        views, all_views, n, offset = self._views(z0, z1)
        m = all_views.shape[0] // 2
        self_idx, _ = _view_indices(n, m, offset, views.device)
        if labels is None:
            all_labels = torch.arange(m, device=views.device)
        else:
            if labels.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
            labels = labels.to(views.device)
            all_labels = _gather_no_grad(labels) if _distributed(self.gather_distributed) else labels
        view_labels = torch.cat([all_labels, all_labels])
        local_labels = view_labels[self_idx]

        self_mask = F.one_hot(self_idx, 2 * m).bool()
        logits = (views @ all_views.T / self.temperature).masked_fill(self_mask, float("-inf"))
        log_prob = torch.log_softmax(logits, dim=1).masked_fill(self_mask, 0.0)
        positives = (local_labels[:, None] == view_labels[None, :]) & ~self_mask
        return (-(log_prob * positives).sum(dim=1) / positives.sum(dim=1)).mean()


# --------------------------------------------------------------------------- MoCHi


@register_loss("mochi")
class MoCHiLoss(_Contrastive):
    """NT-Xent with hard negative mixing, MoCHi (Kalantidis et al. 2020,
    "Hard Negative Mixing for Contrastive Learning", NeurIPS).

    For every anchor view, its negatives (the 2M - 2 other views that are not
    its positive) are ranked by similarity; from the ``n_hard`` hardest:

    * ``n_mix`` synthetic negatives ``normalize(a * n_i + (1 - a) * n_j)`` with
      ``i, j`` drawn uniformly (with replacement) from the hardest and
      ``a ~ U(0, 1)`` (the paper's ``s``);
    * ``n_mix_query`` synthetic negatives ``normalize(b * q + (1 - b) * n_j)``
      mixing in the anchor ``q`` itself with ``b ~ U(0, 0.5)`` (the paper's ``s'``; off by default);

    are appended to the anchor's denominator.  As in the paper they are
    detached (no gradient flows through them).  ``n_mix = n_mix_query = 0`` is
    NT-Xent.  The paper mixes negatives from MoCo's memory queue; here they come
    from the (global) batch.

    Randomness: ``forward(..., generator=g)`` uses ``g``; otherwise a generator
    seeded with ``seed`` (if given) or torch's global RNG.  Draw order, per
    call: ``randint(k, (2n, n_mix, 2))``, ``rand(2n, n_mix)``,
    ``randint(k, (2n, n_mix_query))``, ``rand(2n, n_mix_query)`` (each only when
    its count > 0), with ``k = min(n_hard, 2M - 2)`` and anchors ordered as ``cat([z0, z1])``.

    Across workers: gathers negatives with gradients like NT-Xent; the hardest
    negatives are chosen among the global batch; each rank draws its own
    mixing coefficients.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        n_hard: int = 16,
        n_mix: int = 16,
        n_mix_query: int = 0,
        seed: int | None = None,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(temperature=temperature, gather_distributed=gather_distributed)
        if min(n_hard, n_mix, n_mix_query) < 0:
            raise ValueError("n_hard, n_mix and n_mix_query must be >= 0")
        self.n_hard, self.n_mix, self.n_mix_query = n_hard, n_mix, n_mix_query
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _default_generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def forward(
        self, z0: torch.Tensor, z1: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        views, all_views, n, offset = self._views(z0, z1)
        m = all_views.shape[0] // 2
        dev = views.device
        self_idx, pos_idx = _view_indices(n, m, offset, dev)
        self_mask = F.one_hot(self_idx, 2 * m).bool()
        logits = (views @ all_views.T / self.temperature).masked_fill(self_mask, float("-inf"))

        k = min(self.n_hard, 2 * m - 2)
        extra = []
        if k > 0 and (self.n_mix > 0 or self.n_mix_query > 0):
            gen = generator if generator is not None else self._default_generator(dev)
            with torch.no_grad():
                hardness = logits.masked_fill(F.one_hot(pos_idx, 2 * m).bool(), float("-inf"))
                hard = all_views.detach()[hardness.topk(k, dim=1).indices]  # (2n, k, D)
                rows = torch.arange(2 * n, device=dev)[:, None]
                synth = []
                if self.n_mix > 0:
                    pick = torch.randint(k, (2 * n, self.n_mix, 2), generator=gen, device=dev)
                    a = torch.rand(2 * n, self.n_mix, 1, generator=gen, device=dev, dtype=views.dtype)
                    synth.append(a * hard[rows, pick[..., 0]] + (1 - a) * hard[rows, pick[..., 1]])
                if self.n_mix_query > 0:
                    pick = torch.randint(k, (2 * n, self.n_mix_query), generator=gen, device=dev)
                    b = 0.5 * torch.rand(
                        2 * n, self.n_mix_query, 1, generator=gen, device=dev, dtype=views.dtype
                    )
                    synth.append(b * views.detach()[:, None, :] + (1 - b) * hard[rows, pick])
                synth_t = F.normalize(torch.cat(synth, dim=1), dim=2)
            extra.append(torch.einsum("nd,nkd->nk", views, synth_t) / self.temperature)
        return F.cross_entropy(torch.cat([logits, *extra], dim=1), pos_idx)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, n_hard={self.n_hard}, n_mix={self.n_mix}, "
            f"n_mix_query={self.n_mix_query}, seed={self.seed}"
        )


# --------------------------------------------------------------------------- per-anchor temperature


@register_loss("ntxent_individual")
class NTXentIndividualLoss(_Contrastive):
    """NT-Xent with an individual temperature per anchor.

    Each pair ``i`` gets its own temperature ``tau_i``, used for both of its
    anchor views::

        l_i = -log( exp(s_ii' / tau_i) / sum_{k != i} exp(s_ik / tau_i) )

    Where ``tau_i`` comes from:

    * ``forward(z0, z1, tau=...)``: the caller's temperatures of shape (N,)
      (e.g. a temperature head or a per-sample table learnt as in AutoTemp,
      Qiu et al. 2023, "Not All Semantics are Created Equal: Contrastive
      Self-supervised Learning with Automatic Temperature Individualization";
      gradients flow into ``tau`` if it requires grad);
    * otherwise (what a recipe gets): ``tau_i = t * (1 + alpha * s_ii')``
      with the pair's own detached positive cosine ``s_ii'`` - the per-anchor
      form of the alignment-adaptive temperature of MACL (Huang et al. 2023,
      "Model-Aware Contrastive Learning"), which sets one temperature per
      batch from the mean alignment.  Well-aligned (easy) pairs get a softer
      softmax, poorly aligned ones a sharper one.  ``alpha = 0`` is NT-Xent;
      ``|alpha| < 1`` keeps every ``tau_i > 0``.

    This does not implement AutoTemp's distributionally robust objective (it
    needs a per-sample dual variable indexed by dataset position, which the
    pipeline's anonymous batches do not carry).

    Across workers: gathers negatives with gradients like NT-Xent; ``tau``
    stays local (each rank's anchors use their own temperatures), so the
    distributed loss and gradients equal the single-process ones.
    """

    def __init__(self, temperature: float = 0.1, alpha: float = 0.5, gather_distributed: bool = True) -> None:
        super().__init__(temperature=temperature, gather_distributed=gather_distributed)
        if not -1.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (-1, 1) so that every temperature stays > 0, got {alpha}")
        self.alpha = float(alpha)

    def forward(self, z0: torch.Tensor, z1: torch.Tensor, tau: torch.Tensor | None = None) -> torch.Tensor:
        views, all_views, n, offset = self._views(z0, z1)
        m = all_views.shape[0] // 2
        self_idx, pos_idx = _view_indices(n, m, offset, views.device)
        if tau is None:
            s_pos = (views[:n] * views[n:]).sum(dim=1).detach()
            tau = self.temperature * (1 + self.alpha * s_pos)
        tau = torch.as_tensor(tau, device=views.device, dtype=views.dtype)
        if tau.dim() > 1 or tau.numel() not in (1, n):
            raise ValueError(f"tau must be a scalar or have shape ({n},), got {tuple(tau.shape)}")
        tau = tau.expand(n)
        if not bool((tau > 0).all()):
            raise ValueError("tau must be > 0")
        tau2 = torch.cat([tau, tau])[:, None]
        self_mask = F.one_hot(self_idx, 2 * m).bool()
        logits = (views @ all_views.T / tau2).masked_fill(self_mask, float("-inf"))
        return F.cross_entropy(logits, pos_idx)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}"


# --------------------------------------------------------------------------- CWCL


@register_loss("cwcl")
class CWCLoss(_Contrastive):
    """Continuously weighted contrastive loss (Srinivasa et al. 2023, "CWCL: Cross-Modal
    Transfer with Continuously Weighted Contrastive Loss", NeurIPS).

    Every candidate of the other view is a soft positive, weighted by how
    similar it is to the anchor *within the anchor's own view*.  Direction
    z0 -> z1, for anchor ``i`` and candidates ``j`` over the batch::

        w_ij = (1 + cos(z0_i, z0_j)) / 2                 (detached)
        l_i  = -sum_j w_ij / (sum_k w_ik) * log softmax_j(cos(z0_i, z1_j) / t)

    and the loss averages both directions (z1 -> z0 uses weights from z1).
    The paper applies one direction with weights from a frozen modality; with
    two views of one modality each direction takes its weights from its own
    (detached) anchor view - the adaptation for unimodal pretraining.
    ``w_ii = 1`` is the largest weight, so the true pair still dominates.

    Across workers: candidates and weights range over the global batch
    (gathered with gradients); anchors are the local rows.  The mean of the
    per-rank losses equals the single-process loss and the gradients match.
    """

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        views, all_views, n, offset = self._views(z0, z1)
        m = all_views.shape[0] // 2
        loss = views.new_zeros(())
        for a, b in ((0, 1), (1, 0)):
            anchors = views[a * n : (a + 1) * n]
            same, other = all_views[a * m : (a + 1) * m], all_views[b * m : (b + 1) * m]
            with torch.no_grad():
                w = (1 + anchors @ same.T) / 2
                w = w / w.sum(dim=1, keepdim=True)
            log_p = torch.log_softmax(anchors @ other.T / self.temperature, dim=1)
            loss = loss - (w * log_p).sum(dim=1).mean() / 2
        return loss


# --------------------------------------------------------------------------- VICReg


@register_loss("vicreg")
class VICRegLoss(nn.Module):
    """VICReg (Bardes et al. 2022, "VICReg: Variance-Invariance-Covariance Regularization
    for Self-Supervised Learning", ICLR), as in the authors' reference code.

    ``loss = 25 * inv + 25 * var + 1 * cov`` on the raw (unnormalised) embeddings, with

    * ``inv = mean((z0 - z1)^2)`` over all N x D entries;
    * ``var = (v(z0) + v(z1)) / 2``, ``v(z) = mean_d relu(gamma - sqrt(Var_d(z) + eps))``
      (unbiased variance, gamma=1, eps=1e-4);
    * ``cov = c(z0) + c(z1)``, ``c(z) = sum_{d != e} Cov(z)_de^2 / D`` (unbiased covariance).

    The paper's equation writes ``mu * [v(Z) + v(Z')]``; the reference code
    (followed here, like lightly) halves the variance term.

    Across workers: ``inv`` is local (mean over the rank's own rows), while the
    variance / covariance statistics use the global batch gathered with
    gradients.  The mean of the per-rank losses equals the single-process loss
    on the concatenated batch and backward through ``loss / world_size()`` gives
    the single-process gradient (the var/cov terms are identical on every rank
    and gather_with_grad sums their gradients over ranks) - the same convention
    as NT-Xent and as DDP's gradient averaging.
    """

    def __init__(
        self,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.sim_coeff, self.std_coeff, self.cov_coeff = sim_coeff, std_coeff, cov_coeff
        self.gamma, self.eps = gamma, eps
        self.gather_distributed = gather_distributed

    def terms(self, z0: torch.Tensor, z1: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted ``inv``, ``var`` and ``cov`` terms."""
        _check_pair(z0, z1)
        inv = F.mse_loss(z0, z1)
        all0, all1, _ = _gather_pair(z0, z1, self.gather_distributed)
        if all0.shape[0] < 2:
            raise ValueError("VICReg needs at least 2 samples in the (global) batch")
        var = (self._variance(all0) + self._variance(all1)) / 2
        cov = self._covariance(all0) + self._covariance(all1)
        return {"inv": inv, "var": var, "cov": cov}

    def _variance(self, z: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(z.var(dim=0) + self.eps)
        return F.relu(self.gamma - std).mean()

    @staticmethod
    def _covariance(z: torch.Tensor) -> torch.Tensor:
        n, d = z.shape
        z = z - z.mean(dim=0)
        cov = z.T @ z / (n - 1)
        off = cov - torch.diag(torch.diagonal(cov))
        return off.pow(2).sum() / d

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        t = self.terms(z0, z1)
        return self.sim_coeff * t["inv"] + self.std_coeff * t["var"] + self.cov_coeff * t["cov"]

    def extra_repr(self) -> str:
        return (
            f"sim_coeff={self.sim_coeff}, std_coeff={self.std_coeff}, cov_coeff={self.cov_coeff}, "
            f"gamma={self.gamma}, eps={self.eps}, gather_distributed={self.gather_distributed}"
        )


# --------------------------------------------------------------------------- SwAV


@register_loss("swav")
class SwAVLoss(ModelLoss):
    """SwAV swapped prediction (Caron et al. 2020, "Unsupervised Learning of Visual Features by
    Contrasting Cluster Assignments", NeurIPS).

    The module owns the prototypes ``nn.Linear(dim, n_prototypes, bias=False)``;
    with ``dim=None`` they are built by ``attach(model)`` from the model's
    output width, and the loop optimises them with the model.  Each forward
    first L2-normalises the prototype rows in place (no gradient, as in the
    paper's training loop) and the embeddings, then scores ``s = z @ C^T``.
    Codes ``q`` come from ``sinkhorn_iterations`` Sinkhorn-Knopp steps on
    ``exp(s / epsilon)`` (without gradient); each row of ``q`` sums to 1 and
    each prototype receives ~B/K of the mass.  Predictions are
    ``softmax(s / temperature)``.  With views ``V = [z0, z1, *crops]``, as the
    reference code::

        loss = 1/G sum_{c < G} 1/(|V| - 1) sum_{v != c} mean_i CE(q_c[i], p_v[i])

    where the first ``G = n_global`` views are global (``views.n_views``, 2 by
    default) and the rest are multi-crop views (``views.small_crops``), only
    predicted, never used for codes.
    ``n_prototypes`` defaults to 64 for the small data sets here (the paper
    uses 3000 on ImageNet).  Omitted from the paper: the feature queue for
    small batches and freezing the prototypes during the first epoch.

    Across workers: Sinkhorn's sums are all-reduced, so the codes equal the
    single-process codes on the concatenated batch; the cross-entropy is a
    mean over local rows.  Hence the mean of the per-rank losses equals the
    single-process loss, and backward through ``loss / world_size()`` gives
    the single-process gradient for the local embeddings (and, averaged over
    ranks by :func:`~stages.common.losses.sync_loss_gradients`, for the
    prototypes).
    """

    def __init__(
        self,
        dim: int | None = None,
        n_prototypes: int = 64,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        if n_prototypes < 1 or sinkhorn_iterations < 0:
            raise ValueError("n_prototypes must be >= 1 and sinkhorn_iterations >= 0")
        self.n_prototypes = n_prototypes
        self.prototypes: nn.Linear | None = None
        if dim is not None:
            self.prototypes = nn.Linear(dim, n_prototypes, bias=False)
        self.temperature = _check_temperature(temperature)
        self.epsilon = _check_temperature(epsilon, "epsilon")
        self.sinkhorn_iterations = sinkhorn_iterations
        self.gather_distributed = gather_distributed

    def attach(self, model: nn.Module) -> None:
        if self.prototypes is None:
            self.prototypes = nn.Linear(model.out_dim, self.n_prototypes, bias=False)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        w = self.prototypes.weight
        w.copy_(F.normalize(w, dim=1))

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """Cosine scores (B, K) of embeddings against the (current) prototypes."""
        if self.prototypes is None:
            raise RuntimeError("SwAVLoss without dim: call attach(model) first")
        return self.prototypes(F.normalize(z, dim=1))

    @torch.no_grad()
    def sinkhorn(self, scores: torch.Tensor) -> torch.Tensor:
        """Codes (B, K) for scores (B, K) of cosine similarities (<= 1)."""
        distributed = _distributed(self.gather_distributed)
        # shifting by the maximal cosine (1) avoids overflow and cancels in the first normalisation
        q = torch.exp((scores.detach() - 1) / self.epsilon).T  # (K, B)
        k = q.shape[0]
        b = q.shape[1] * (world_size() if distributed else 1)
        total = q.sum()
        if distributed:
            dist.all_reduce(total)
        q /= total
        for _ in range(self.sinkhorn_iterations):
            per_prototype = q.sum(dim=1, keepdim=True)
            if distributed:
                dist.all_reduce(per_prototype)
            q /= per_prototype * k
            q /= q.sum(dim=0, keepdim=True) * b
        return (q * b).T

    #: the loop passes every view at once (``forward(*global_views, *small_crops, n_global=G)``)
    multi_view = True

    def forward(
        self, z0: torch.Tensor, z1: torch.Tensor, *crops: torch.Tensor, n_global: int = 2
    ) -> torch.Tensor:
        """``z0, z1, *crops``: the first ``n_global`` are global views (they get codes), the rest are
        only predicted; every view predicts the code of every other global view."""
        _check_pair(z0, z1)
        for c in crops:
            if c.shape != z0.shape:
                raise ValueError(f"crops must have the shape of z0 {tuple(z0.shape)}, got {tuple(c.shape)}")
        if not 2 <= n_global <= 2 + len(crops):
            raise ValueError(f"n_global must be in [2, {2 + len(crops)}], got {n_global}")
        self.normalize_prototypes()
        scores = [self.scores(v) for v in (z0, z1, *crops)]
        log_p = [torch.log_softmax(s / self.temperature, dim=1) for s in scores]
        loss = scores[0].new_zeros(())
        for c in range(n_global):
            q = self.sinkhorn(scores[c])
            sub = sum(-(q * log_p[v]).sum(dim=1).mean() for v in range(len(scores)) if v != c)
            loss = loss + sub / (len(scores) - 1)
        return loss / n_global

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, epsilon={self.epsilon}, "
            f"sinkhorn_iterations={self.sinkhorn_iterations}, gather_distributed={self.gather_distributed}"
        )
