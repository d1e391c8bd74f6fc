"""domains/audio/encoders.py: the BYOL-A CNN's temporal pooling."""

from __future__ import annotations

import pytest
import torch

from domains.audio.encoders import AudioCNN

SR = 8000


def _encoder(pool: str) -> AudioCNN:
    torch.manual_seed(0)
    return AudioCNN(
        sample_rate=SR, n_mels=32, channels=4, hidden_dim=8, out_dim=6, pool=pool, segments=4
    ).eval()


def test_whole_clip_pooling_cannot_tell_the_order_of_two_sounds_segment_pooling_can(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ "tap" vs "pat": the same frames in the other order."""
    first, second = torch.randn(1, 4, 8), torch.randn(1, 4, 8)
    ab, ba = torch.cat([first, second], 1), torch.cat([second, first], 1)  # [B, frames, hidden]
    out = {}
    for pool in ("meanmax", "segments"):
        enc = _encoder(pool)
        with torch.no_grad():
            monkeypatch.setattr(enc, "frames", lambda wav, h=ab: h)
            x = enc(torch.zeros(1, 1, SR))
            monkeypatch.setattr(enc, "frames", lambda wav, h=ba: h)
            out[pool] = (x, enc(torch.zeros(1, 1, SR)))
    assert torch.allclose(*out["meanmax"], atol=1e-6)  # pooled over the clip: order is gone
    assert not torch.allclose(*out["segments"], atol=1e-3)
    assert out["segments"][0].shape == (1, 6) and _encoder("segments").proj.in_features == 2 * 8 * 4


def test_a_bad_pooling_names_its_key() -> None:
    with pytest.raises(ValueError, match="encoder.pool"):
        AudioCNN(pool="attention")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="encoder.segments"):
        AudioCNN(pool="segments", segments=0)
