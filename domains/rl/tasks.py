"""The RL domain's own evaluation: how much of the true state a frozen pixel embedding holds.

**State probe** (as in ATC's and SPR-style probing studies): a ridge regression from the frozen
embedding of ``o_t`` to the true physical state ``s_t`` (each dimension standardised on the training
episodes) and to the reward ``r_t``, fit on the training episodes with its penalty chosen by
episode-grouped cross-validation, scored once as R² per dimension on the held-out test episodes.
Encoders compared: the pretrained one, the same architecture at random init, and an **end-to-end
supervised** encoder trained to regress the state from pixels on the training episodes, its epoch
chosen on held-out training episodes (the probe's upper reference); plus a ridge on the raw pixels.

The agent evaluation (frozen encoder vs pixels from scratch vs true state under a fixed step budget)
lives in ``domains.rl.agent`` and runs only when the recipe asks for it (``evaluate.domain.agent``).
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.linalg import LinAlgWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold, GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from domains.rl.views import apply_policy

ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
#: resamples of the test episodes for the R² intervals
N_BOOTSTRAP = 1000


class ProbeResult(NamedTuple):
    r2: np.ndarray  #: R² per target column on the test rows (NaN: constant target)
    alpha: float  #: the ridge penalty chosen by episode-grouped CV on the training rows
    ci95: np.ndarray | None  #: ``[columns, 2]`` 95 % interval over resampled test episodes


def _ridge(alpha: float, x: np.ndarray, y: np.ndarray) -> Any:
    """Standardised ridge fit, quiet about conditioning.

    The smallest alphas are ill-conditioned on wide features (pixels: more columns than rows) and
    a collapsed encoder's features are rank-deficient; that is what the alpha grid is for, and the
    fold score judges it (sklearn falls back to least squares on a singular system). Without this,
    one probe prints dozens of scipy and sklearn warnings into the DVC log.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        warnings.filterwarnings("ignore", message="Singular matrix in solving dual problem")
        return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x, y)


def _fold_scores(x: np.ndarray, y: np.ndarray, x_va: np.ndarray, y_va: np.ndarray) -> list[float]:
    """Negative validation MSE of the standardised ridge at each of ``ALPHAS``."""
    return [-float(np.mean((_ridge(a, x, y).predict(x_va) - y_va) ** 2)) for a in ALPHAS]


def _wide_fold_scores(x: np.ndarray, y: np.ndarray, x_va: np.ndarray, y_va: np.ndarray) -> list[float]:
    """:func:`_fold_scores` for features wider than the rows (raw pixels): the same fits, solved in
    their dual form on one linear kernel per fold.

    On standardised features (centred by the fold's own means) the ridge with an intercept predicts
    ``mean(y) + K_va (K + alpha I)^-1 (y - mean(y))`` with ``K = X Xᵀ``; that is what ``Ridge``
    solves for each alpha when columns outnumber rows, and what ``KernelRidge`` solves on a
    precomputed kernel. Standardising once and forming the kernel once per fold, instead of once per
    alpha, takes the pixel probe at the demo's size (1,800 x 12,288) from 14.0 s to 6.0 s, with the
    same scores to 1e-8 and so the same alpha.
    """
    scaler = StandardScaler().fit(x)
    xs, xs_va = scaler.transform(x), scaler.transform(x_va)
    k, k_va = xs @ xs.T, xs_va @ xs.T
    mu = y.mean(0)
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)  # as in _ridge: the alpha grid judges it
        warnings.filterwarnings("ignore", message="Singular matrix in solving dual problem")
        for a in ALPHAS:
            pred = mu + KernelRidge(alpha=a, kernel="precomputed").fit(k, y - mu).predict(k_va)
            scores.append(-float(np.mean((pred - y_va) ** 2)))
    return scores


def r2_columns(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """R² per column (sklearn's ``r2_score``); NaN for a constant column, which has none."""
    out = np.full(y.shape[1], np.nan)
    ok = y.std(0) > 1e-9
    if ok.any():
        out[ok] = r2_score(y[:, ok], pred[:, ok], multioutput="raw_values")
    return out


def episode_bootstrap_r2(
    y: np.ndarray, pred: np.ndarray, groups: np.ndarray, n: int = N_BOOTSTRAP, seed: int = 0
) -> np.ndarray:
    """95 % percentile interval ``[columns, 2]`` of R² when the test *episodes* are resampled with
    replacement (a cluster bootstrap: steps of one episode are not independent).

    Why: a test split of a few dozen random-policy episodes can hinge on one of them. In the
    CartPole demo's 20 test episodes one 77-step episode reaches ``|x| = 0.79`` while no training
    step passes 0.55 (99 % stay under 0.23): that episode alone decides the test R² of ``x``, and
    the interval says so.
    """
    rng = np.random.default_rng(seed)
    episodes = np.unique(groups)
    members = [np.flatnonzero(groups == e) for e in episodes]
    samples = np.full((n, y.shape[1]), np.nan)
    for b in range(n):
        idx = np.concatenate([members[i] for i in rng.integers(len(episodes), size=len(episodes))])
        samples[b] = r2_columns(y[idx], pred[idx])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: a constant target
        return np.nanpercentile(samples, [2.5, 97.5], axis=0).T


def ridge_probe(
    f_tr: np.ndarray,
    y_tr: np.ndarray,
    g_tr: np.ndarray,
    f_te: np.ndarray,
    y_te: np.ndarray,
    g_te: np.ndarray | None = None,
) -> ProbeResult:
    """Fit ridge (alpha by GroupKFold over episodes); R² per target column on the test rows, and
    with the test rows' episodes ``g_te`` its 95 % interval over resampled test episodes.

    A constant target column (e.g. CartPole's reward, always 1) has no R²: NaN there.
    """
    # standardised targets: every state dimension weighs the same in the penalty's selection
    mu, sd = y_tr.mean(0), y_tr.std(0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    y_tr, y_te = (y_tr - mu) / sd, (y_te - mu) / sd
    n_splits = min(5, len(np.unique(g_tr)))
    best, best_alpha = -np.inf, ALPHAS[0]
    if n_splits >= 2:
        folds = list(GroupKFold(n_splits=n_splits).split(f_tr, y_tr, g_tr))
        fold_scores = _wide_fold_scores if f_tr.shape[1] > len(f_tr) else _fold_scores
        scores = np.mean([fold_scores(f_tr[tr], y_tr[tr], f_tr[va], y_tr[va]) for tr, va in folds], axis=0)
        for alpha, score in zip(ALPHAS, scores, strict=True):
            if score > best:
                best, best_alpha = float(score), alpha
    pred = _ridge(best_alpha, f_tr, y_tr).predict(f_te)
    r2 = r2_columns(y_te, pred)
    ci = None if g_te is None else episode_bootstrap_r2(y_te, pred, g_te)
    return ProbeResult(r2, best_alpha, ci)


def targets(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(states ``[N, d]``, rewards ``[N]``, episode groups ``[N]``) of rows."""
    states = np.asarray([r["meta"]["state"] for r in rows], dtype=np.float64)
    rewards = np.asarray([r["meta"]["reward"] for r in rows], dtype=np.float64)
    groups = np.asarray([r["group"] for r in rows])
    return states, rewards, groups


def train_supervised(
    encoder: nn.Module,
    xs: list[np.ndarray],
    y: np.ndarray,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    groups: np.ndarray | None = None,
    val_fraction: float = 0.2,
) -> nn.Module:
    """Train ``encoder`` + a linear head end to end to regress standardised ``y`` from pixels (MSE),
    with the same random shift the contrastive views use; return the encoder in eval mode.

    With ``groups`` (episodes), ``val_fraction`` of the training episodes are held out and the
    encoder of the epoch with the lowest held-out MSE is returned: a fixed epoch count either
    stopped short or memorised the training episodes, and the baseline swung by R² ±0.6 between
    seeds. The held-out episodes are training data: the test episodes are never read.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mu, sd = y.mean(0), y.std(0) + 1e-8
    target = torch.as_tensor((y - mu) / sd, dtype=torch.float32)
    fit_idx, val_idx = np.arange(len(xs)), np.array([], dtype=int)
    if groups is not None and len(np.unique(groups)) >= 5:
        split = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
        fit_idx, val_idx = next(split.split(np.zeros(len(xs)), groups=groups))
    head = nn.Linear(encoder.embedding_dim, y.shape[1])
    params = list(encoder.parameters()) + list(head.parameters())
    optim = torch.optim.Adam(params, lr=lr)
    steps = [{"name": "shift", "pad": 4}]
    val_x = torch.as_tensor(np.stack([xs[i][0] for i in val_idx])) if len(val_idx) else None
    best_mse, best_state = np.inf, None
    for _ in range(epochs):
        encoder.train()
        order = rng.permutation(fit_idx)
        for s in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[s : s + batch_size]
            batch = torch.as_tensor(np.stack([apply_policy(xs[i][0], rng, steps) for i in idx]))
            loss = nn.functional.mse_loss(head(encoder(batch)), target[idx])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        if val_x is not None:
            encoder.eval()
            with torch.no_grad():
                mse = float(nn.functional.mse_loss(head(encoder(val_x)), target[val_idx]))
            if mse < best_mse:
                best_mse, best_state = mse, copy.deepcopy(encoder.state_dict())
    if best_state is not None:
        encoder.load_state_dict(best_state)
    return encoder.eval()


def state_probe(
    ctx: Any, build: Any, opts: dict[str, Any], state_names: list[str]
) -> tuple[dict[str, Any], list[list[Any]]]:
    """R² table rows and metrics for every encoder (see the module docstring)."""
    s_tr, r_tr, g_tr = targets(ctx.train_rows)
    s_te, r_te, g_te = targets(ctx.test_rows)
    y_tr = np.column_stack([s_tr, r_tr])
    y_te = np.column_stack([s_te, r_te])
    xs_tr = [r["x"] for r in ctx.train_rows]
    xs_te = [r["x"] for r in ctx.test_rows]

    encoders = dict(ctx.encoders)
    t0 = time.perf_counter()
    sup = build()
    encoders["supervised"] = train_supervised(
        sup, xs_tr, s_tr, epochs=int(opts.get("supervised_epochs", 20)), seed=ctx.seed, groups=g_tr
    )
    sup_s = time.perf_counter() - t0
    feats = {name: (ctx.embed(enc, xs_tr), ctx.embed(enc, xs_te)) for name, enc in encoders.items()}
    if opts.get("pixel_ridge", True):
        feats["raw_pixels"] = (
            np.stack([x[0].reshape(-1) for x in xs_tr]),
            np.stack([x[0].reshape(-1) for x in xs_te]),
        )
    metrics: dict[str, Any] = {"supervised_train_s": round(sup_s, 1)}
    table = []
    names = [*state_names, "reward"]
    for name, (f_tr, f_te) in feats.items():
        r2, alpha, ci = ridge_probe(f_tr, y_tr, g_tr, f_te, y_te, g_te)
        per_dim = {n: _num(v) for n, v in zip(names, r2, strict=True)}
        state_mean = float(np.nanmean(r2[:-1]))
        metrics[name] = {
            "r2": per_dim,
            "r2_ci95": {
                n: None if not np.isfinite(c).all() else [_num(c[0]), _num(c[1])]
                for n, c in zip(names, ci, strict=True)
            },
            "state_r2_mean": round(state_mean, 4),
            "alpha": alpha,
        }
        table.append([name, *[_fmt_ci(v, c) for v, c in zip(r2, ci, strict=True)], _fmt(state_mean)])
    return metrics, table


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)


def _fmt(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.3f}"


def _fmt_ci(v: float, ci: np.ndarray) -> str:
    if not np.isfinite(v) or not np.isfinite(ci).all():
        return _fmt(v)
    return f"{v:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"
