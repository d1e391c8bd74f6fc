"""Every registered loss against a naive reference computation of its definition (loops over i, j).

References work in float64 on Python lists of vectors so they share no code with the vectorised losses.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stages.common.heads import EncoderWithHead
from stages.common.losses import get_loss
from stages.common.losses.extra import (
    CWCLoss,
    DCLLoss,
    DCLWLoss,
    MoCHiLoss,
    NTXentIndividualLoss,
    SupConLoss,
    SwAVLoss,
    VICRegLoss,
)
from stages.common.losses.momentum import BYOLLoss, MoCoLoss, byol_regression

N, D = 5, 4


def _pair(seed: int = 0, n: int = N, d: int = D) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z0, z1 = torch.randn(2, n, d, generator=gen)
    return z0, z1


def _unit(v: torch.Tensor) -> list[float]:
    v = v.double()
    return (v / v.norm()).tolist()


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _views(z0: torch.Tensor, z1: torch.Tensor) -> list[list[float]]:
    return [_unit(v) for v in torch.cat([z0, z1])]


def ref_dcl(z0: torch.Tensor, z1: torch.Tensor, t: float, sigma: float | None = None) -> float:
    v, n = _views(z0, z1), z0.shape[0]
    weights = [1.0] * n
    if sigma is not None:  # DCLW: w_j = 2 - exp(s_jj'/sigma) / mean_l exp(s_ll'/sigma)
        e = [math.exp(_dot(v[j], v[j + n]) / sigma) for j in range(n)]
        weights = [2 - ej / (sum(e) / n) for ej in e]
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        neg = sum(math.exp(_dot(v[i], v[k]) / t) for k in range(2 * n) if k not in (i, pos))
        total += -weights[i % n] * _dot(v[i], v[pos]) / t + math.log(neg)
    return total / (2 * n)


def ref_supcon(z0: torch.Tensor, z1: torch.Tensor, labels: list[int], t: float) -> float:
    v, n = _views(z0, z1), z0.shape[0]
    total = 0.0
    for i in range(2 * n):
        denom = sum(math.exp(_dot(v[i], v[a]) / t) for a in range(2 * n) if a != i)
        positives = [p for p in range(2 * n) if p != i and labels[p % n] == labels[i % n]]
        total += -sum(math.log(math.exp(_dot(v[i], v[p]) / t) / denom) for p in positives) / len(positives)
    return total / (2 * n)


def ref_individual(z0: torch.Tensor, z1: torch.Tensor, t: float, alpha: float) -> float:
    v, n = _views(z0, z1), z0.shape[0]
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        tau = t * (1 + alpha * _dot(v[i % n], v[i % n + n]))
        denom = sum(math.exp(_dot(v[i], v[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(_dot(v[i], v[pos]) / tau) / denom)
    return total / (2 * n)


def ref_cwcl(z0: torch.Tensor, z1: torch.Tensor, t: float) -> float:
    a_all, b_all = [_unit(v) for v in z0], [_unit(v) for v in z1]
    n = len(a_all)
    total = 0.0
    for a, b in ((a_all, b_all), (b_all, a_all)):
        for i in range(n):
            w = [(1 + _dot(a[i], a[j])) / 2 for j in range(n)]
            log_z = math.log(sum(math.exp(_dot(a[i], b[k]) / t) for k in range(n)))
            total += -sum(w[j] / sum(w) * (_dot(a[i], b[j]) / t - log_z) for j in range(n)) / n
    return total / 2


def ref_vicreg(z0: torch.Tensor, z1: torch.Tensor, eps: float = 1e-4) -> float:
    x0, x1 = z0.double().tolist(), z1.double().tolist()
    n, d = len(x0), len(x0[0])
    inv = sum((x0[i][k] - x1[i][k]) ** 2 for i in range(n) for k in range(d)) / (n * d)

    def var_cov(x: list[list[float]]) -> tuple[float, float]:
        mu = [sum(x[i][k] for i in range(n)) / n for k in range(d)]
        cov = [
            [sum((x[i][a] - mu[a]) * (x[i][b] - mu[b]) for i in range(n)) / (n - 1) for b in range(d)]
            for a in range(d)
        ]
        var = sum(max(0.0, 1 - math.sqrt(cov[k][k] + eps)) for k in range(d)) / d
        off = sum(cov[a][b] ** 2 for a in range(d) for b in range(d) if a != b) / d
        return var, off

    (v0, c0), (v1, c1) = var_cov(x0), var_cov(x1)
    return 25 * inv + 25 * (v0 + v1) / 2 + (c0 + c1)


def ref_sinkhorn(scores: list[list[float]], eps: float, iters: int) -> list[list[float]]:
    b, k = len(scores), len(scores[0])
    q = [[math.exp(scores[i][j] / eps) for j in range(k)] for i in range(b)]
    s = sum(map(sum, q))
    q = [[x / s for x in row] for row in q]
    for _ in range(iters):
        for j in range(k):  # every prototype gets mass 1/K
            col = sum(q[i][j] for i in range(b))
            for i in range(b):
                q[i][j] /= col * k
        for i in range(b):  # every sample gets mass 1/B
            row = sum(q[i])
            q[i] = [x / (row * b) for x in q[i]]
    return [[x * b for x in row] for row in q]


def ref_swav(views: list[torch.Tensor], protos: torch.Tensor, t: float, eps: float, iters: int) -> float:
    c = [_unit(p) for p in protos]
    scores = [[[_dot(_unit(z), cj) for cj in c] for z in v] for v in views]
    total = 0.0
    for a in (0, 1):
        q = ref_sinkhorn(scores[a], eps, iters)
        sub = 0.0
        for v in range(len(views)):
            if v == a:
                continue
            ce = 0.0
            for i, row in enumerate(scores[v]):
                log_z = math.log(sum(math.exp(s / t) for s in row))
                ce += -sum(q[i][j] * (row[j] / t - log_z) for j in range(len(row)))
            sub += ce / len(scores[v])
        total += sub / (len(views) - 1)
    return total / 2


# ----------------------------------------------------------------------------------------------- DCL


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_dcl_matches_reference(t: float) -> None:
    z0, z1 = _pair(1)
    assert DCLLoss(temperature=t)(z0, z1).item() == pytest.approx(ref_dcl(z0, z1, t), abs=1e-5)


def test_dclw_matches_reference() -> None:
    z0, z1 = _pair(2)
    got = DCLWLoss(temperature=0.2, sigma=0.5)(z0, z1).item()
    assert got == pytest.approx(ref_dcl(z0, z1, 0.2, sigma=0.5), abs=1e-5)


def test_dcl_differs_from_ntxent_by_the_positive_in_the_denominator() -> None:
    z0, z1 = _pair(3)
    ntxent = get_loss("ntxent", temperature=0.3)(z0, z1)
    assert DCLLoss(temperature=0.3)(z0, z1) < ntxent  # removing a positive term lowers log-sum-exp


def test_dcl_needs_two_pairs() -> None:
    with pytest.raises(ValueError, match="at least 2 pairs"):
        DCLLoss()(*_pair(0, n=1))


# -------------------------------------------------------------------------------------------- SupCon


def test_supcon_matches_reference_with_labels() -> None:
    z0, z1 = _pair(4, n=6)
    labels = [0, 1, 0, 2, 1, 1]
    got = SupConLoss(temperature=0.2)(z0, z1, torch.tensor(labels)).item()
    assert got == pytest.approx(ref_supcon(z0, z1, labels, 0.2), abs=1e-5)


def test_supcon_without_labels_is_ntxent() -> None:
    z0, z1 = _pair(5)
    torch.testing.assert_close(
        SupConLoss(temperature=0.2)(z0, z1), get_loss("ntxent", temperature=0.2)(z0, z1)
    )


# --------------------------------------------------------------------------------------------- MoCHi


def test_mochi_matches_reference_with_the_same_draws() -> None:
    z0, z1 = _pair(6, n=4)
    t, k, n_mix = 0.2, 3, 5
    got = MoCHiLoss(temperature=t, n_hard=k, n_mix=n_mix)(z0, z1, generator=torch.Generator().manual_seed(7))

    v, n = _views(z0, z1), z0.shape[0]
    gen = torch.Generator().manual_seed(7)
    pick = torch.randint(k, (2 * n, n_mix, 2), generator=gen).tolist()
    coef = torch.rand(2 * n, n_mix, 1, generator=gen, dtype=torch.float32).tolist()
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        negatives = sorted(
            (k_ for k_ in range(2 * n) if k_ not in (i, pos)), key=lambda k_: -_dot(v[i], v[k_])
        )
        hard = negatives[:k]
        terms = [math.exp(_dot(v[i], v[k_]) / t) for k_ in range(2 * n) if k_ != i]
        for m in range(n_mix):
            a = coef[i][m][0]
            mix = [
                a * x + (1 - a) * y
                for x, y in zip(v[hard[pick[i][m][0]]], v[hard[pick[i][m][1]]], strict=True)
            ]
            norm = math.sqrt(_dot(mix, mix))
            terms.append(math.exp(_dot(v[i], [x / norm for x in mix]) / t))
        total += -math.log(math.exp(_dot(v[i], v[pos]) / t) / sum(terms))
    assert got.item() == pytest.approx(total / (2 * n), abs=1e-5)


def test_mochi_without_mixing_is_ntxent_and_mixing_makes_it_harder() -> None:
    z0, z1 = _pair(8, n=6)
    ntxent = get_loss("ntxent", temperature=0.2)(z0, z1)
    torch.testing.assert_close(MoCHiLoss(temperature=0.2, n_mix=0)(z0, z1), ntxent)
    assert MoCHiLoss(temperature=0.2, n_hard=4, n_mix=8, seed=0)(z0, z1) > ntxent


# ---------------------------------------------------------------------------- per-sample temperature


@pytest.mark.parametrize("alpha", [0.0, 0.5, -0.5])
def test_individual_temperature_matches_reference(alpha: float) -> None:
    z0, z1 = _pair(9)
    got = NTXentIndividualLoss(temperature=0.2, alpha=alpha)(z0, z1).item()
    assert got == pytest.approx(ref_individual(z0, z1, 0.2, alpha), abs=1e-5)


def test_individual_temperature_given_tau_gets_gradients() -> None:
    z0, z1 = _pair(10)
    tau = torch.full((N,), 0.3, requires_grad=True)
    loss = NTXentIndividualLoss()(z0, z1, tau=tau)
    torch.testing.assert_close(loss, get_loss("ntxent", temperature=0.3)(z0, z1))
    loss.backward()
    assert tau.grad is not None and tau.grad.abs().sum() > 0


def test_individual_temperature_rejects_alpha_that_could_make_tau_negative() -> None:
    with pytest.raises(ValueError, match="alpha"):
        NTXentIndividualLoss(alpha=1.0)


# ---------------------------------------------------------------------------------------------- CWCL


@pytest.mark.parametrize("t", [0.1, 1.0])
def test_cwcl_matches_reference(t: float) -> None:
    z0, z1 = _pair(11)
    assert CWCLoss(temperature=t)(z0, z1).item() == pytest.approx(ref_cwcl(z0, z1, t), abs=1e-5)


# -------------------------------------------------------------------------------------------- VICReg


def test_vicreg_matches_reference() -> None:
    z0, z1 = _pair(12, n=6, d=5)
    z0 = z0 * 0.5  # some dimensions below the variance target, so the hinge is active
    assert VICRegLoss()(z0, z1).item() == pytest.approx(ref_vicreg(z0, z1), rel=1e-5)


# ---------------------------------------------------------------------------------------------- SwAV


@pytest.mark.parametrize("crops", [0, 2])
def test_swav_matches_reference_with_multicrop(crops: int) -> None:
    gen = torch.Generator().manual_seed(13)
    views = list(torch.randn(2 + crops, 6, D, generator=gen))
    torch.manual_seed(0)
    loss_fn = SwAVLoss(dim=D, n_prototypes=3, temperature=0.5, epsilon=0.5, sinkhorn_iterations=3)
    protos = loss_fn.prototypes.weight.detach().clone()
    got = loss_fn(*views).item()
    assert got == pytest.approx(ref_swav(views, protos, 0.5, 0.5, 3), abs=1e-5)


def test_swav_codes_are_equipartitioned() -> None:
    loss_fn = SwAVLoss(dim=D, n_prototypes=3, epsilon=0.5, sinkhorn_iterations=50)
    q = loss_fn.sinkhorn(loss_fn.scores(torch.randn(12, D)))
    torch.testing.assert_close(q.sum(dim=1), torch.ones(12))
    torch.testing.assert_close(q.sum(dim=0), torch.full((3,), 4.0), atol=1e-3, rtol=0)


def test_swav_attach_sizes_the_prototypes_from_the_model() -> None:
    loss_fn = SwAVLoss(n_prototypes=7)
    loss_fn.attach(EncoderWithHead(nn.Linear(3, 5), nn.Linear(5, 6)))
    assert loss_fn.prototypes is not None and loss_fn.prototypes.weight.shape == (7, 6)


# ---------------------------------------------------------------------------------------------- BYOL


def _model(seed: int = 0) -> EncoderWithHead:
    torch.manual_seed(seed)
    return EncoderWithHead(
        nn.Linear(3, 8), nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, D))
    )


def test_byol_regression_matches_reference() -> None:
    p0, p1 = _pair(14)
    t0, t1 = _pair(15)
    ref = 0.0
    for p, t in ((p0, t1), (p1, t0)):
        ref += sum(2 - 2 * _dot(_unit(p[i]), _unit(t[i])) for i in range(N)) / N / 2
    assert byol_regression(p0, p1, t0, t1).item() == pytest.approx(ref, abs=1e-6)


def test_byol_predicts_targets_without_gradient_into_them() -> None:
    loss_fn = BYOLLoss(dim=D, predictor_hidden_dim=16)
    z0, z1 = (z.requires_grad_() for z in _pair(16))
    t0, t1 = (t.requires_grad_() for t in _pair(17))
    loss = loss_fn(z0, z1, targets=(t0, t1))
    assert loss_fn.predictor is not None
    p = loss_fn.predictor(torch.cat([z0, z1]))
    torch.testing.assert_close(loss, byol_regression(p[:N], p[N:], t0, t1))
    loss.backward()
    assert z0.grad is not None and t0.grad is None


def test_byol_target_follows_online_by_ema() -> None:
    model = _model()
    loss_fn = BYOLLoss(momentum=0.9, predictor_hidden_dim=16)
    loss_fn.attach(model)
    assert loss_fn.target is not None and not any(p.requires_grad for p in loss_fn.target.parameters())
    before = [p.clone() for p in loss_fn.target.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    loss_fn.on_step(model)
    for old, new, online in zip(before, loss_fn.target.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * online)


def test_byol_at_momentum_zero_targets_the_online_network() -> None:
    """SimSiam's case: the target is the online network with a stop-gradient."""
    model = _model()
    loss_fn = BYOLLoss(momentum=0.0, predictor_hidden_dim=16)
    loss_fn.attach(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-2.0)
    loss_fn.on_step(model)
    x = torch.randn(2 * N, 3)
    _, z = model(x)
    torch.testing.assert_close(loss_fn(z[:N], z[N:], inputs=x), loss_fn(z[:N], z[N:], targets=(z[:N], z[N:])))


# ---------------------------------------------------------------------------------------------- MoCo


def test_moco_matches_reference_and_enqueues_keys_fifo() -> None:
    t, queue_size = 0.2, 7
    loss_fn = MoCoLoss(temperature=t, queue_size=queue_size, dim=D, seed=3)
    queue = loss_fn.queue.clone()
    z0, z1 = _pair(18, n=3)
    keys = torch.cat(_pair(19, n=3))
    got = loss_fn(z0, z1, keys=keys).item()

    q, k, u = _views(z0, z1), [_unit(x) for x in keys], [x.tolist() for x in queue]
    total = 0.0
    for i in range(6):
        pos = math.exp(_dot(q[i], k[(i + 3) % 6]) / t)  # the key of the other view
        total += -math.log(pos / (pos + sum(math.exp(_dot(q[i], uj) / t) for uj in u)))
    assert got == pytest.approx(total / 6, abs=1e-5)

    loss_fn.on_step(_model())  # no key encoder attached: only the queue moves
    expected = queue.clone()
    expected[:6] = torch.nn.functional.normalize(keys, dim=1)
    torch.testing.assert_close(loss_fn.queue, expected)
    loss_fn(z0, z1, keys=keys.flip(0))
    loss_fn.on_step(_model())  # 6 more keys wrap around the ring of 7
    assert int(loss_fn.queue_ptr) == 12 % queue_size
    torch.testing.assert_close(loss_fn.queue[6], torch.nn.functional.normalize(keys.flip(0), dim=1)[0])


def test_moco_key_encoder_runs_on_the_inputs() -> None:
    model = _model()
    loss_fn = MoCoLoss(queue_size=16)
    loss_fn.attach(model)
    x = torch.randn(2 * N, 3)
    _, z = model(x)
    with torch.no_grad():
        _, keys = model(x)
    torch.testing.assert_close(loss_fn(z[:N], z[N:], inputs=x), loss_fn(z[:N], z[N:], keys=keys))
