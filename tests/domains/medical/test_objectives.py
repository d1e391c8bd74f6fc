"""MONAI's SSL recipe (``pretrain.loss: ssl_recon``): corruption, the loss's definition, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from domains import get_domain
from domains.base import check_objective
from domains.medical.objectives import INPAINT, FeaturePyramid, ReconContrastObjective, _scaled
from stages.common.schema import PretrainCfg
from stages.pretrain.loop import build_model, run_in_process

D = get_domain("medical")


def _patches(n: int, side: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # smooth blobs, not white noise: a reconstruction target with structure to learn
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, side)] * 3, indexing="ij"))
    out = []
    for _ in range(n):
        c = rng.uniform(-0.5, 0.5, size=(3, 1, 1, 1))
        out.append(np.exp(-((grid - c) ** 2).sum(0, keepdims=True) * 4).astype(np.float32))
    return out


def _objective(encoder: nn.Module) -> ReconContrastObjective:
    obj = check_objective("ssl_recon", D.objectives()["ssl_recon"]())
    obj.bind(encoder)
    return obj


def test_corruption_is_seeded_keeps_the_shape_and_sizes_scale_with_the_patch() -> None:
    assert _scaled(INPAINT, 96) == INPAINT  # the tutorial's own crop size
    assert _scaled(INPAINT, 32) == {"holes": 6, "spatial_size": 2, "max_spatial_size": 11}
    obj = ReconContrastObjective()
    xs = _patches(3)
    a1, a2, clean = obj.make_views(xs, np.random.default_rng(4))
    b1, _, _ = obj.make_views(xs, np.random.default_rng(4))
    assert clean.shape == (3, 1, 16, 16, 16) and np.array_equal(clean[0], xs[0])
    assert all(v.shape == x.shape and v.dtype == np.float32 for v, x in zip(a1 + a2, xs + xs, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(a1, b1, strict=True))
    assert all(not np.array_equal(v, x) for v, x in zip(a1, xs, strict=True))  # every view is corrupted
    assert not np.array_equal(a1[0], a2[0])  # the two views of a patch differ


def test_loss_is_l1_plus_the_ntxent_of_the_reconstructions_scaled_by_it() -> None:
    enc = D.build_encoder({"name": "resnet", "in_channels": 1, "widths": [4, 4, 8, 8]})
    obj = _objective(enc)
    rng = np.random.default_rng(0)
    rec = torch.as_tensor(rng.normal(size=(4, 1, 8, 8, 8)), dtype=torch.float32)
    target = rng.normal(size=(2, 1, 8, 8, 8)).astype(np.float32)
    outputs = iter([rec[:2], rec[2:]])

    class Fixed(nn.Module):  # the decoder's outputs, fixed
        def forward(self, _levels: list[torch.Tensor]) -> torch.Tensor:
            return next(outputs)

    obj.decoder = Fixed()
    dummy = FeaturePyramid([torch.zeros(2, 1)])
    value = float(obj.loss(dummy, dummy, 8, target))

    t = torch.as_tensor(target)
    recon = ((rec[:2] - t).abs().mean() + (rec[2:] - t).abs().mean()) / 2
    z = nn.functional.normalize(rec.flatten(1), dim=1)
    sim = (z @ z.T / 0.05).double()
    nll = [
        -(sim[i, (i + 2) % 4] - math.log(sum(math.exp(sim[i, j]) for j in range(4) if j != i)))
        for i in range(4)
    ]
    expected = float(recon) * (1 + float(np.mean(nll)))
    assert value == pytest.approx(expected, rel=1e-4)


def test_feature_pyramid_slices_rows_of_every_level() -> None:
    p = FeaturePyramid([torch.arange(6.0).reshape(6, 1), torch.arange(12.0).reshape(6, 2)])
    head = p[:2]
    assert len(head) == 2 and head.levels[1].tolist() == [[0.0, 1.0], [2.0, 3.0]]
    with pytest.raises(TypeError, match="slice"):
        p[0]


def test_only_encoders_with_a_feature_pyramid_can_bind() -> None:
    enc = D.build_encoder({"name": "basicunet", "in_channels": 1, "features": [4, 4, 8, 8, 16, 4]})
    with pytest.raises(TypeError, match="pretrain.loss=ssl_recon needs an encoder with a feature pyramid"):
        ReconContrastObjective().bind(enc)
    with pytest.raises(ValueError, match="temperature"):
        ReconContrastObjective(temperature=0.0)


def _config(epochs: int) -> dict:
    return {
        "domain": "medical",
        "encoder": {"name": "resnet", "in_channels": 1, "widths": [4, 8, 8, 16]},
        "pretrain": PretrainCfg(loss="ssl_recon", epochs=epochs, batch_size=4, lr=3e-3).model_dump(),
        "policy": {"name": "default", "params": {}},
        "local_batch": 4,
        "steps_per_epoch": 4,
    }


def test_pretrain_loop_learns_to_reconstruct() -> None:
    xs = _patches(16)
    model, history = run_in_process(_config(epochs=6), xs)
    losses = [h["loss"] for h in history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert isinstance(model.head, ReconContrastObjective) and model.head.decoder is not None
    # the encoder's features now reconstruct a patch better than a fresh network's do
    fresh = build_model(_config(epochs=1))
    obj = model.head.eval()
    fresh_obj = _objective(fresh.encoder).eval()
    x = torch.as_tensor(np.stack(xs[:4]))
    with torch.no_grad():
        err = (obj.decoder(model.encoder.features(x)) - x).abs().mean()
        fresh_err = (fresh_obj.decoder(fresh.encoder.features(x)) - x).abs().mean()
    assert err < fresh_err
