"""More than two global views and multi-crop (small crops) in the pretraining loop, in-process."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from domains import get_domain
from domains.base import ViewPolicy
from stages.common.losses import build_loss
from stages.common.losses.extra import SwAVLoss
from stages.common.schema import PretrainCfg, ViewsCfg
from stages.pretrain.loop import (
    build_model,
    check_views,
    multiview_loss,
    run_in_process,
    small_crops,
)
from stages.pretrain.shards import list_batches

B = 8


def _config(loss: str = "ntxent", epochs: int = 1, steps: int = 1, **views: object) -> dict:
    pre = PretrainCfg(
        loss=loss,
        epochs=epochs,
        batch_size=B,
        lr=3e-3,
        temperature=0.2,
        head={"hidden_dim": 32, "out_dim": 16},
    ).model_dump()
    return {
        "domain": "timeseries",
        # no timestamp masking or dropout: the forward draws no random numbers, so a reference
        # forward on the same views reproduces the loop's exactly
        "encoder": {
            "in_channels": 1,
            "hidden_dim": 16,
            "out_dim": 32,
            "depth": 2,
            "mask_p": 0.0,
            "dropout": 0.0,
        },
        "pretrain": pre,
        "policy": {"name": "default", "params": {}},
        "views": views,
        "local_batch": B,
        "steps_per_epoch": steps,
    }


def _data(n: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 60, dtype=np.float32)
    return [
        np.sin(2 * np.pi * (1 + i % 4) * t + rng.uniform(0, 6))[None].astype(np.float32) for i in range(n)
    ]


@pytest.mark.parametrize("n_views", [2, 3])
def test_loop_loss_is_the_mean_over_view_pairs(n_views: int) -> None:
    """The first step's loss equals NT-Xent averaged over every pair of the step's global views."""
    config = _config(n_views=n_views)
    xs = _data()
    _, history = run_in_process(config, xs)  # one step: the logged loss is the step-0 loss

    model = build_model(config)  # same seed: the same initial weights
    model.train()
    domain = get_domain("timeseries")
    batch = next(list_batches(xs, B, 0, config["pretrain"]["seed"]))
    rng = np.random.default_rng([config["pretrain"]["seed"], 0, 0])  # the loop's epoch-0 stream
    policy = ViewPolicy(name="default")
    views = [[domain.augment(x, rng, policy) for x in batch] for _ in range(n_views)]
    with torch.no_grad():
        _, z = model(domain.collate([v for view in views for v in view]))
    ntxent = build_loss("ntxent", 0.2)
    zs = z.split(B)
    pairs = list(itertools.combinations(range(n_views), 2))
    assert len(pairs) == n_views * (n_views - 1) // 2
    reference = sum(float(ntxent(zs[a], zs[b])) for a, b in pairs) / len(pairs)
    assert history[0]["loss"] == pytest.approx(reference, rel=1e-5)


def test_three_views_train() -> None:
    _, history = run_in_process(_config(epochs=4, steps=4, n_views=3), _data())
    assert all(np.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]


def test_multiview_loss_pairs_crops_only_with_global_views() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4 * B, 16, generator=gen)  # 2 global views, then 2 small crops
    ntxent = build_loss("ntxent", 0.5)
    v = z.split(B)
    pairs = [(0, 1), (2, 0), (2, 1), (3, 0), (3, 1)]  # never crop with crop
    expected = torch.stack([ntxent(v[a], v[b]) for a, b in pairs]).mean()
    torch.testing.assert_close(multiview_loss(ntxent, z, B, n_global=2), expected)
    # two views: exactly the loss itself (n_views=2 runs are unchanged)
    assert torch.equal(multiview_loss(ntxent, z[: 2 * B], B, 2), ntxent(v[0], v[1]))


def test_swav_codes_come_from_every_global_view_only() -> None:
    gen = torch.Generator().manual_seed(1)
    swav = SwAVLoss(dim=16, n_prototypes=8)
    zs = [torch.randn(B, 16, generator=gen) for _ in range(4)]
    got = multiview_loss(swav, torch.cat(zs), B, n_global=3)  # views 0-2 global, view 3 a crop
    swav.normalize_prototypes()
    scores = [swav.scores(z) for z in zs]
    log_p = [torch.log_softmax(s / swav.temperature, dim=1) for s in scores]
    ref = 0.0
    for c in range(3):
        q = swav.sinkhorn(scores[c])
        ref += sum(-(q * log_p[v]).sum(1).mean() for v in range(4) if v != c) / 3
    torch.testing.assert_close(got, ref / 3)
    # the old two-view call is the n_global=2 case
    torch.testing.assert_close(swav(zs[0], zs[1], zs[2]), swav(zs[0], zs[1], zs[2], n_global=2))


def test_timeseries_small_crops_share_one_length_of_the_scale() -> None:
    domain = get_domain("timeseries")
    xs = [np.arange(60, dtype=np.float32)[None], np.arange(80, dtype=np.float32)[None]]
    crops = small_crops(domain, xs, np.random.default_rng(0), ViewPolicy("default"), ViewsCfg(small_crops=3))
    assert len(crops) == 6
    assert {c.shape for c in crops} == {(1, 18)}  # 0.3 of the shortest series, one length for collate
    assert domain.collate(crops).shape == (6, 1, 18)


@pytest.mark.parametrize("loss", ["ntxent", "swav"])
def test_small_crops_train(loss: str) -> None:
    model, history = run_in_process(
        _config(loss, epochs=2, steps=2, small_crops=2, small_crop_scale=0.4), _data()
    )
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)


def test_small_crops_need_the_domain_hook() -> None:
    pointcloud = get_domain("pointcloud")  # a real domain without the small-crop hook
    with pytest.raises(ValueError, match=r"views\.small_crops=2"):
        check_views(
            pointcloud,
            "ntxent",
            build_loss("ntxent", 0.1),
            ViewsCfg(small_crops=2),
            ViewPolicy("default"),
            np.zeros((64, 3), np.float32),
        )


@pytest.mark.parametrize(
    ("loss", "views", "key"),
    [("byol", {"n_views": 3}, "views.n_views"), ("ts2vec", {"small_crops": 1}, "views.small_crops")],
)
def test_losses_that_take_exactly_two_views_refuse_more(loss: str, views: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        run_in_process(_config(loss, **views), _data())
