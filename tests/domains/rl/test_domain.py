"""RL domain: validation, views, encoder, CURL/ATC objectives in the pretrain loop, the state probe."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from domains import get_domain
from domains.base import ViewPolicy
from domains.rl.objectives import ATCObjective, CURLObjective
from domains.rl.tasks import episode_bootstrap_r2, ridge_probe
from domains.rl.views import shift
from stages.common.schema import PretrainCfg
from stages.pretrain.loop import run_in_process

D = get_domain("rl")


def _row(x: np.ndarray, state=(0.0, 1.0), reward: float = 1.0) -> dict:  # noqa: ANN001
    return {"id": "r", "x": x, "meta": {"state": list(state), "reward": reward}}


def _blob_rows(n: int = 64, side: int = 24, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Frame stacks of a bright square moving with constant velocity; its position is the state."""
    rng = np.random.default_rng(seed)
    xs, states = [], []
    for _ in range(n):
        pos, vel = rng.integers(4, side - 8, size=2), rng.integers(-1, 2, size=2)
        frames = []
        for t in range(4):  # 3 current frames + 1 future
            f = np.zeros((side, side), np.float32)
            y, x = np.clip(pos + t * vel, 0, side - 4)
            f[y : y + 4, x : x + 4] = 1.0
            frames.append(f)
        xs.append(np.stack([np.stack(frames[:3]), np.stack(frames[1:])]))
        states.append([*(pos + 2 * vel), *vel])
    return xs, np.asarray(states, dtype=np.float64)


def test_validate_rejects_what_the_encoder_cannot_use() -> None:
    ok = np.zeros((2, 3, 8, 8), np.float32)
    assert D.validate(_row(ok)) is None
    assert "expected [2, planes" in D.validate(_row(ok[0]))
    bad = ok.copy()
    bad[0, 0, 0, 0] = np.nan
    assert "non-finite pixels" in D.validate(_row(bad))
    assert "outside [0, 1]" in D.validate(_row(ok + 2.0))
    assert "non-finite true state" in D.validate(_row(ok, state=(np.nan, 0.0)))
    assert "reward" in D.validate(_row(ok, reward=float("inf")))


def test_shift_moves_the_whole_stack_together() -> None:
    xs, _ = _blob_rows(1)
    x = xs[0][0]
    v = shift(x, np.random.default_rng(3), pad=4)
    assert v.shape == x.shape and not np.array_equal(v, x)
    # one offset for all stacked frames: the blob's displacement between frames (velocity) survives
    c = [np.argwhere(f > 0.5).mean(0) for f in v]
    c0 = [np.argwhere(f > 0.5).mean(0) for f in x]
    np.testing.assert_allclose(np.diff(c, axis=0), np.diff(c0, axis=0), atol=1e-6)
    view = D.augment(xs[0], np.random.default_rng(0), ViewPolicy("drq"))
    assert view.shape == (3, 24, 24)
    with pytest.raises(KeyError, match="unknown RL view policy"):
        D.augment(xs[0], np.random.default_rng(0), ViewPolicy("nope"))


def test_vertical_shift_keeps_every_horizontal_position() -> None:
    # axes=y: the cart's x (a horizontal position) must survive the views; some seed moves vertically
    xs, _ = _blob_rows(1)
    x = xs[0][0]
    moved = 0
    for seed in range(10):
        v = shift(x, np.random.default_rng(seed), pad=4, axes="y")
        for f, f0 in zip(v, x, strict=True):
            np.testing.assert_allclose(np.argwhere(f > 0.5)[:, 1].mean(), np.argwhere(f0 > 0.5)[:, 1].mean())
        moved += not np.array_equal(v, x)
    assert moved > 0
    with pytest.raises(ValueError, match="axes must be one of"):
        shift(x, np.random.default_rng(0), axes="z")


def test_encoder_embeds_the_current_stack() -> None:
    xs, _ = _blob_rows(5)
    enc = D.build_encoder({**D.data_args(xs[0]), "feature_dim": 50}).eval()
    batch = D.collate(xs)
    assert batch.shape == (5, 3, 24, 24)
    out = enc(batch)
    assert out.shape == (5, 50) and enc.embedding_dim == 50
    # the future stack is never seen by the encoder at evaluation time
    ys = [np.stack([x[0], np.zeros_like(x[1])]) for x in xs]
    torch.testing.assert_close(enc(D.collate(ys)), out)


@pytest.mark.parametrize("objective", [CURLObjective, ATCObjective])
def test_objective_trains_encoder_and_bilinear_w_and_moves_the_target(objective: type) -> None:
    xs, _ = _blob_rows(16)
    enc = D.build_encoder(D.data_args(xs[0]))
    obj = objective()
    obj.bind(enc)
    anchors, rest, keys = obj.make_views(xs, np.random.default_rng(0))
    assert rest == [] and keys.shape == (16, 3, 24, 24)
    q, _ = enc.forward_timestamps(D.collate(anchors))
    loss = obj.loss(q, q[:0], 0, keys)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert obj.W.grad is not None and obj.W.grad.abs().sum() > 0
    assert enc.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in obj.target.parameters())  # keys carry no gradient
    before = copy.deepcopy(obj.target.state_dict())
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(1.0)
    obj.after_step(enc)
    w0, w1 = before["fc.weight"], obj.target.state_dict()["fc.weight"]
    torch.testing.assert_close(w1, w0 + obj.tau * 1.0)  # EMA: θ' ← θ' + τ (θ - θ')


def test_atc_positive_is_the_future_stack_and_curl_the_same_stack() -> None:
    xs, _ = _blob_rows(4)
    for cls, which in ((ATCObjective, 1), (CURLObjective, 0)):
        obj = cls()
        obj.steps = []  # no augmentation: keys must be exactly the chosen stack
        _, _, keys = obj.make_views(xs, np.random.default_rng(0))
        np.testing.assert_array_equal(keys, np.stack([x[which] for x in xs]))


def _config(loss: str, epochs: int = 3) -> dict:
    return {
        "domain": "rl",
        "encoder": {"in_channels": 3, "image_size": 24, "num_layers": 2, "num_filters": 8, "feature_dim": 16},
        "pretrain": PretrainCfg(loss=loss, epochs=epochs, batch_size=16, lr=3e-3).model_dump(),
        "policy": {"name": "drq", "params": {}},
        "local_batch": 16,
        "steps_per_epoch": 4,
    }


def test_pretrain_loop_runs_atc_with_its_parameters_in_the_model() -> None:
    xs, _ = _blob_rows(64)
    model, history = run_in_process(_config("atc", epochs=4), xs)
    # the objective is the model's head: W and the EMA target are trained/updated and checkpointed
    assert isinstance(model.head, ATCObjective)
    keys = model.state_dict().keys()
    assert "head.W" in keys and any(k.startswith("head.target.") for k in keys)
    assert not torch.equal(model.head.target.fc.weight, _fresh_target_fc())
    assert len(history) == 4 and all(np.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]


def _fresh_target_fc() -> torch.Tensor:
    torch.manual_seed(0)
    enc = D.build_encoder(_config("atc")["encoder"])
    return enc.fc.weight.detach()


def test_ntxent_on_shifted_views_also_runs() -> None:
    xs, _ = _blob_rows(64)
    cfg = _config("ntxent", epochs=1)
    cfg["pretrain"]["head"] = {"type": "mlp", "hidden_dim": 16, "out_dim": 8, "depth": 2}
    _, history = run_in_process(cfg, xs)
    assert np.isfinite(history[0]["loss"])


def test_ridge_probe_recovers_a_linear_state_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    state = rng.normal(size=(400, 3))
    groups = np.repeat(np.arange(40), 10)
    feats = state @ rng.normal(size=(3, 20)) + 0.01 * rng.normal(size=(400, 20))
    r2 = ridge_probe(feats[:300], state[:300], groups[:300], feats[300:], state[300:]).r2
    assert (r2 > 0.99).all()
    noise = rng.normal(size=(400, 20))
    r2 = ridge_probe(noise[:300], state[:300], groups[:300], noise[300:], state[300:]).r2
    assert (r2 < 0.1).all()
    const = np.column_stack([state, np.ones(400)])
    r2 = ridge_probe(feats[:300], const[:300], groups[:300], feats[300:], const[300:]).r2
    assert np.isnan(r2[-1])  # a constant target (CartPole's reward) has no R²


def test_r2_interval_resamples_episodes_and_shows_one_outlying_episode() -> None:
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 10)
    y = rng.normal(size=(200, 2))
    pred = y + 0.1 * rng.normal(size=(200, 2))
    pred[:10, 1] += 3.0  # column 1: episode 0 alone is predicted badly
    ci = episode_bootstrap_r2(y, pred, groups, n=400)
    assert ci.shape == (2, 2) and (ci[:, 0] <= ci[:, 1]).all()
    assert ci[0, 0] > 0.97  # every episode good: a tight interval near 1
    assert ci[1, 1] - ci[1, 0] > 0.4  # the interval spans samples with and without episode 0
    # ridge_probe reports it only when told the test rows' episodes
    feats = y @ rng.normal(size=(2, 8))
    res = ridge_probe(feats[:150], y[:150], groups[:150], feats[150:], y[150:], groups[150:])
    assert res.ci95.shape == (2, 2) and (res.ci95[:, 0] <= res.r2 + 1e-9).all()
    assert ridge_probe(feats[:150], y[:150], groups[:150], feats[150:], y[150:]).ci95 is None


def test_ridge_probe_is_quiet_on_a_singular_system(monkeypatch: pytest.MonkeyPatch) -> None:
    # a collapsed encoder's features make the dual system singular: sklearn warns and falls back to
    # least squares, which the alpha grid's fold score judges; the DVC log should not carry it
    import domains.rl.tasks as tasks

    class WarningRidge(tasks.Ridge):
        def fit(self, x, y, sample_weight=None):  # noqa: ANN001, ANN201
            warnings.warn(
                "Singular matrix in solving dual problem. Using least-squares solution instead.", stacklevel=2
            )
            return super().fit(x, y, sample_weight)

    monkeypatch.setattr(tasks, "Ridge", WarningRidge)
    rng = np.random.default_rng(0)
    state, groups = rng.normal(size=(100, 2)), np.repeat(np.arange(10), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r2 = ridge_probe(state[:80], state[:80], groups[:80], state[80:], state[80:]).r2
    assert (r2 > 0.99).all()


def test_wide_features_choose_the_same_penalty_as_one_ridge_per_alpha(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # raw pixels have more columns than rows: the probe's CV solves them on one kernel per fold,
    # which must score every alpha as the standardised sklearn ridge does
    import domains.rl.tasks as tasks

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(120, 6))
    feats = (latent @ rng.normal(size=(6, 400)) + rng.normal(scale=2.0, size=(120, 400))).astype(np.float32)
    y = latent[:, :3] + rng.normal(scale=0.3, size=(120, 3))
    tr, va = np.arange(90), np.arange(90, 120)
    loop = tasks._fold_scores(feats[tr], y[tr], feats[va], y[va])
    wide = tasks._wide_fold_scores(feats[tr], y[tr], feats[va], y[va])
    assert np.allclose(loop, wide, rtol=1e-5) and np.argmax(loop) == np.argmax(wide)
    assert len(set(np.round(loop, 3))) > 1  # the grid's scores differ, so the choice means something
    # the probe takes the kernel path for wide features only
    calls: list[str] = []
    monkeypatch.setattr(tasks, "_fold_scores", lambda *a: calls.append("loop") or loop)
    monkeypatch.setattr(tasks, "_wide_fold_scores", lambda *a: calls.append("wide") or wide)
    groups = np.repeat(np.arange(12), 10)
    ridge_probe(feats[:90], y[:90], groups[:90], feats[90:], y[90:])
    ridge_probe(latent[:90], y[:90], groups[:90], latent[90:], y[90:])
    assert calls == ["wide"] * 5 + ["loop"] * 5


def test_supervised_baseline_holds_out_whole_training_episodes_to_choose_its_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import domains.rl.tasks as tasks

    xs, states = _blob_rows(60)
    groups = np.repeat(np.arange(12), 5)
    row_of = {x.__array_interface__["data"][0]: i for i, x in enumerate(xs)}
    trained: set[int] = set()
    real = tasks.apply_policy

    def recording(x, rng, steps):  # noqa: ANN001, ANN202
        trained.add(row_of[x.__array_interface__["data"][0]])
        return real(x, rng, steps)

    monkeypatch.setattr(tasks, "apply_policy", recording)
    enc = D.build_encoder(D.data_args(xs[0]))
    out = tasks.train_supervised(enc, xs, states, epochs=2, batch_size=8, groups=groups)
    assert not out.training
    held_out = set(range(60)) - trained
    held_groups = {groups[i] for i in held_out}
    assert held_out and {i for i in range(60) if groups[i] in held_groups} == held_out  # whole episodes
    assert len(held_groups) == 3  # ceil(0.2 x 12 episodes)
    trained.clear()
    tasks.train_supervised(D.build_encoder(D.data_args(xs[0])), xs, states, epochs=1, batch_size=4)
    assert trained == set(range(60))  # without episodes: every row trains (nothing to hold out by)
