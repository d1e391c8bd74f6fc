"""The time-series plug-in as the stages see it: validate, fingerprint, collate, encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domains import get_domain, list_domains
from domains.base import ViewPolicy


@pytest.fixture(scope="module")
def ts():  # noqa: ANN201
    return get_domain("timeseries")


def test_registry(ts) -> None:  # noqa: ANN001
    assert "timeseries" in list_domains() and ts.name == "timeseries"
    with pytest.raises(KeyError, match="known"):
        get_domain("nope")


def test_validate_reasons(ts) -> None:  # noqa: ANN001
    ok = {"x": np.zeros((1, 10), np.float32)}
    assert ts.validate(ok) is None
    assert "non-finite" in ts.validate({"x": np.array([[1.0, np.nan, 2.0]], np.float32)})
    assert "too short" in ts.validate({"x": np.zeros((1, 1), np.float32)})
    assert "shape" in ts.validate({"x": np.zeros(10, np.float32)})
    assert "too short" in ts.validate({"x": np.zeros((0, 10), np.float32)})


def test_fingerprint_is_fixed_size_and_blind_to_the_level_and_scale_ingest_removed(ts) -> None:  # noqa: ANN001
    # ingest's default (data.normalise: per_row) stores each series z-normalised, so a series and
    # 3x + 1 of it are one training input (a kept level is tested in test_normalise.py)
    x = np.sin(np.linspace(0, 6, 100, dtype=np.float32))[None]
    cos = np.cos(np.linspace(0, 6, 57, dtype=np.float32))[None]
    fp = ts.fingerprint([ts.normalise(x), ts.normalise(3 * x + 1), ts.normalise(cos)])
    assert fp.shape == (3, 256 + 64)  # 256 shape points per channel, then the 64-dim length code
    np.testing.assert_allclose(fp[0], fp[1], atol=1e-4)


def test_collate_pads_with_nan_and_encoder_ignores_padding(ts) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    enc = ts.build_encoder({"in_channels": 2, "hidden_dim": 8, "out_dim": 16, "depth": 3}).eval()
    rng = np.random.default_rng(0)
    short = rng.normal(size=(2, 30)).astype(np.float32)
    batch = ts.collate([short, rng.normal(size=(2, 50)).astype(np.float32)])
    assert batch.shape == (2, 2, 50) and torch.isnan(batch[0, :, 30:]).all()
    with torch.no_grad():
        z = enc(batch)
        alone = enc(ts.collate([short]))
    assert z.shape == (2, 16) and torch.isfinite(z).all()
    # Padding must not leak into the embedding: same series alone or padded in a batch.
    # (Convolutions see zeros at the edge either way; the max-pool excludes padded steps.)
    torch.testing.assert_close(z[0], alone[0], atol=1e-5, rtol=1e-5)


def test_augment_uses_named_policies(ts) -> None:  # noqa: ANN001
    x = np.sin(np.linspace(0, 6, 64, dtype=np.float32))[None]
    v = ts.augment(x, np.random.default_rng(0), ViewPolicy("default"))
    assert v.dtype == np.float32 and v.shape[0] == 1
    with pytest.raises(KeyError):
        ts.augment(x, np.random.default_rng(0), ViewPolicy("no-such-policy"))


def test_encoder_gradients_flow(ts) -> None:  # noqa: ANN001
    enc = ts.build_encoder({"in_channels": 1, "hidden_dim": 8, "out_dim": 8, "depth": 2})
    x = torch.randn(4, 1, 20)
    enc(x).sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
