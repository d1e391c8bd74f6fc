"""Medical domain: validation reasons, MONAI views, encoders with their segmenters, spatial hold-out."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from domains import get_domain
from domains.base import ViewPolicy
from domains.medical.volumes import block_ids, choose_test_blocks, encode_mask, sample_centres, valid_centres

D = get_domain("medical")


def _patch(seed: int = 0, side: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(1, side, side, side)).astype(np.float32)


def test_validate_reasons() -> None:
    ok = {"x": _patch(), "meta": {"seg": encode_mask(np.zeros((16, 16, 16)))}}
    assert D.validate(ok) is None
    assert "expected a patch" in D.validate({"x": np.zeros((16, 16), np.float32)})
    nan = _patch()
    nan[0, 1, 2, 3] = np.nan
    assert "NaN/Inf" in D.validate({"x": nan})
    assert "constant patch" in D.validate({"x": np.zeros((1, 16, 16, 16), np.float32)})
    bad_seg = {"x": _patch(), "meta": {"seg": encode_mask(np.zeros((8, 8, 8)))}}
    assert "does not match" in D.validate(bad_seg)


def test_views_are_seeded_new_arrays_of_the_same_shape() -> None:
    x = _patch()
    before = x.copy()
    pol = ViewPolicy("default")
    a = D.augment(x, np.random.default_rng(1), pol)
    b = D.augment(x, np.random.default_rng(1), pol)
    c = D.augment(x, np.random.default_rng(2), pol)
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(x, before)  # the input is never written to


def test_view_policy_errors_name_the_step() -> None:
    x = _patch()
    with pytest.raises(KeyError, match="warp"):
        D.augment(x, np.random.default_rng(0), ViewPolicy("custom", {"steps": [{"name": "warp"}]}))
    with pytest.raises(TypeError, match="noise"):
        D.augment(x, np.random.default_rng(0), ViewPolicy("custom", {"steps": [{"name": "noise", "sdt": 1}]}))
    with pytest.raises(KeyError, match="unknown medical view policy"):
        D.augment(x, np.random.default_rng(0), ViewPolicy("nope"))


@pytest.mark.parametrize(
    ("cfg", "side"),
    [
        ({"name": "resnet", "widths": [8, 8, 16, 16]}, 16),
        ({"name": "basicunet", "features": [8, 8, 8, 16, 16, 8]}, 32),  # instance norm needs > 1 voxel
        ({"name": "swin", "feature_size": 12}, 64),  # SwinUNETR: 1/32 scale must exceed 1 voxel
    ],
)
def test_encoders_embed_and_segment_with_shared_weights(cfg: dict, side: int) -> None:
    torch.manual_seed(0)
    enc = D.build_encoder({**cfg, "in_channels": 1})
    x = D.collate([_patch(i, side) for i in range(2)])
    h = enc(x)
    assert h.shape == (2, enc.embedding_dim) and torch.isfinite(h).all()
    seg = enc.segmenter(4)
    assert seg(x).shape == (2, 4, side, side, side)
    # the segmenter is built around the encoder's own parameters (so pretraining carries over)
    enc_params = {id(p) for p in enc.parameters()}
    assert enc_params <= {id(p) for p in seg.parameters()}


def test_resnet_runs_channels_last_and_round_trips_its_weights() -> None:
    """The ResNet's conv weights live in channels-last layout (the fast 3-D conv layout on CPU and
    GPU); it embeds like the same weights in the default layout, and its saved weights (plain
    contiguous tensors) load back into a fresh encoder bit for bit."""
    from stages.common.encoders import load_state_bytes, state_to_bytes

    torch.manual_seed(0)
    enc = D.build_encoder({"name": "resnet", "widths": [8, 8, 16, 16], "in_channels": 1}).eval()
    convs = [m.weight for m in enc.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in convs)
    assert not all(w.is_contiguous() for w in convs)  # really another layout, not a 1x1x1 corner case
    x = D.collate([_patch(i, 16) for i in range(3)])
    plain = copy.deepcopy(enc).to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), plain(x), rtol=1e-4, atol=1e-5)
        fresh = D.build_encoder({"name": "resnet", "widths": [8, 8, 16, 16], "in_channels": 1}).eval()
        load_state_bytes(fresh, state_to_bytes(enc))
        assert torch.equal(fresh(x), enc(x))


def test_unknown_encoder_is_named() -> None:
    with pytest.raises(KeyError, match="unknown medical encoder 'vit3d'"):
        D.build_encoder({"name": "vit3d"})


def test_spatial_hold_out_never_overlaps() -> None:
    """Train windows lie outside every test block and test windows inside them, per class."""
    rng = np.random.default_rng(0)
    labels = np.zeros((60, 60, 60), np.int64)
    labels[5:55, 5:30, 5:55] = 1
    labels[5:55, 30:55, 5:55] = 2
    blocks = block_ids(labels.shape, 12)
    test = choose_test_blocks(blocks, labels, 0.25, seed=0, min_voxels=10)
    test_region = np.isin(blocks, sorted(test))
    dominant = {int(np.bincount(labels[(blocks == b) & (labels > 0)]).argmax()) for b in test}
    assert dominant == {1, 2}  # every class has a held-out region
    p = 8
    for region in (~test_region, test_region):
        centres = sample_centres(valid_centres(region, p) & (labels > 0), 50, rng, labels)
        assert len(centres)
        for c in centres:
            win = region[tuple(slice(int(v) - p // 2, int(v) - p // 2 + p) for v in c)]
            assert win.shape == (p, p, p) and win.all()
