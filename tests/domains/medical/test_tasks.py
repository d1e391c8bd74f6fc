"""The few-label Dice protocol's scoring and its intensity baseline (domains/medical/tasks.py)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

from domains.medical.tasks import _test_dice, intensity_dice


def _bands(n: int, rng: np.random.Generator, means: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)) -> tuple:
    """Patches ``[n, 1, 8, 8, 8]`` whose voxel label is the intensity band it was drawn from."""
    ys = rng.integers(0, len(means), size=(n, 1, 8, 8, 8))
    xs = np.asarray(means, dtype=np.float32)[ys] + rng.normal(0, 0.1, size=ys.shape).astype(np.float32)
    return xs, ys


def test_dice_is_scored_per_class_without_background() -> None:
    y = np.zeros((1, 1, 4, 4, 4), dtype=np.int64)
    y[0, 0, :2] = 1  # class 1: 32 voxels
    y[0, 0, 3] = 2  # class 2: 16 voxels; the other 16 are background, which is not scored
    pred = y.copy()
    pred[0, 0, 0, :2] = 0  # 8 of class 1's voxels missed
    pred[0, 0, 2] = 2  # 16 background voxels called class 2
    dice = _test_dice(lambda x: pred, np.zeros_like(y, dtype=np.float32), y, 3)
    assert dice.shape == (2,)
    assert np.allclose(dice, [2 * 24 / (24 + 32), 2 * 16 / (32 + 16)])


def test_intensity_baseline_separates_intensity_bands() -> None:
    rng = np.random.default_rng(0)
    xs, ys = _bands(4, rng)
    test_xs, test_ys = _bands(6, rng)
    dice = intensity_dice(4, xs, ys, test_xs, test_ys)
    assert dice.shape == (3,) and (dice > 0.99).all()


def test_intensity_baseline_fits_on_the_labelled_patches_only() -> None:
    """Test patches labelled by another rule than the training patches score badly: the labels the
    baseline predicts come from the training patches, never from the test masks."""
    rng = np.random.default_rng(1)
    xs, ys = _bands(4, rng)
    test_xs, test_ys = _bands(6, rng)
    swapped = np.array([0, 3, 1, 2])[test_ys]  # the test masks' classes permuted
    assert (intensity_dice(4, xs, ys, test_xs, swapped) < 0.05).all()


def test_intensity_baseline_reads_every_channel() -> None:
    """Two channels, classes told apart only by the second one."""
    rng = np.random.default_rng(2)
    ys = rng.integers(0, 3, size=(5, 1, 6, 6, 6))
    noise = rng.normal(0, 0.1, size=(5, 2, 6, 6, 6)).astype(np.float32)
    xs = noise + np.concatenate([np.zeros_like(ys), 2.0 * ys], axis=1).astype(np.float32)
    dice = intensity_dice(3, xs[:3], ys[:3], xs[3:], ys[3:])
    assert (dice > 0.99).all()


# --------------------------------------------------------------------------- encoder_lr_scale


def _bands16(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two :func:`_bands` patches upsampled to 16³ (the tiny ResNet's pyramid needs the size)."""
    xs, ys = _bands(2, np.random.default_rng(seed))
    up = lambda a: np.repeat(np.repeat(np.repeat(a, 2, 2), 2, 3), 2, 4)  # noqa: E731
    return up(xs), up(ys)


def _tiny_encoder() -> torch.nn.Module:
    from domains.medical.encoders import ENCODERS

    torch.manual_seed(0)
    return ENCODERS["resnet"](widths=[4, 4, 8, 8], layers=[1, 1, 1, 1])


def _finetuned(
    monkeypatch: pytest.MonkeyPatch, steps: int = 3, **options: Any
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The encoder handed in and the segmenter ``finetune_dice`` trained with ``options`` (captured
    from its copy)."""
    import domains.medical.tasks as tasks

    encoder = _tiny_encoder()
    seen: list[torch.nn.Module] = []
    original = type(encoder).segmenter

    def spy(self: torch.nn.Module, n_classes: int, norm: str = "instance") -> torch.nn.Module:
        net = original(self, n_classes, norm)
        seen.append(net)
        return net

    monkeypatch.setattr(type(encoder), "segmenter", spy)
    xs, ys = _bands16(3)
    tasks.finetune_dice(encoder, 4, xs, ys, xs, ys, steps=steps, batch_size=2, lr=1e-2, seed=0, **options)
    return encoder, seen[0]


def test_frozen_encoder_keeps_weights_and_batchnorm_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder, net = _finetuned(monkeypatch, encoder_lr_scale=0.0)
    trained = net.encoder.state_dict()
    for name, value in encoder.state_dict().items():  # running means and variances included
        assert torch.equal(value, trained[name]), name
    enc_ids = {id(p) for p in net.encoder.parameters()}
    assert not any(p.requires_grad for p in net.encoder.parameters())
    # the decoder did learn
    assert all(p.grad is not None for p in net.parameters() if id(p) not in enc_ids)


def test_encoder_learns_at_the_scaled_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder, slow = _finetuned(monkeypatch, encoder_lr_scale=0.01)
    _, fast = _finetuned(monkeypatch, encoder_lr_scale=1.0)

    def moved(net: torch.nn.Module) -> float:
        return sum(
            float((p - q).abs().sum().detach())
            for p, q in zip(net.encoder.parameters(), encoder.parameters(), strict=True)
        )

    assert 0 < moved(slow) < 0.1 * moved(fast)


def test_default_scale_is_the_single_group_fine_tune() -> None:
    """Scale 1 (the default) gives exactly what one AdamW over all parameters gave before the option."""
    from monai.losses import DiceCELoss

    from domains.medical.tasks import DEFAULTS, finetune_dice

    xs, ys = _bands16(4)
    got = finetune_dice(_tiny_encoder(), 4, xs, ys, xs, ys, steps=3, batch_size=2, lr=1e-2, seed=0)

    encoder = _tiny_encoder()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = copy.deepcopy(encoder).segmenter(4, DEFAULTS["decoder_norm"])
    net.train()
    optim = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    for _ in range(3):
        idx = rng.choice(2, size=2, replace=False)
        x, y = torch.from_numpy(xs[idx]), torch.from_numpy(ys[idx])
        if rng.random() < 0.5:
            x, y = x.flip(2), y.flip(2)
        loss = loss_fn(net(x), y)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    net.eval()
    with torch.no_grad():
        want = _test_dice(lambda x: net(torch.from_numpy(x)).argmax(1, keepdim=True), xs, ys, 4)
    np.testing.assert_array_equal(got, want)


def test_per_arm_scale_and_unknown_arm() -> None:
    from domains.medical.tasks import DEFAULTS, encoder_lr_scale

    opts = {**DEFAULTS, "encoder_lr_scale": {"pretrained": 0.1}}
    assert encoder_lr_scale(opts, "pretrained") == 0.1
    assert encoder_lr_scale(opts, "random_init") == 1.0
    with pytest.raises(ValueError, match="encoder_lr_scale"):
        encoder_lr_scale({**DEFAULTS, "encoder_lr_scale": {"pretrain": 0.1}}, "pretrained")


# --------------------------------------------------------------------------- decoder_norm


@pytest.mark.parametrize(
    ("cfg", "side"),
    [
        ({"name": "resnet", "widths": [4, 4, 8, 8]}, 16),
        ({"name": "basicunet", "features": [4, 4, 4, 8, 8, 4]}, 32),
        ({"name": "swin", "feature_size": 12}, 64),
    ],
)
@pytest.mark.parametrize(
    ("norm", "layer"), [("instance", torch.nn.InstanceNorm3d), ("batch", torch.nn.BatchNorm3d)]
)
def test_decoder_norm_reaches_every_encoders_decoder(cfg: dict, side: int, norm: str, layer: type) -> None:
    """``decoder_norm`` sets the fresh decoder's normalisation and leaves the shared encoder as it is."""
    from domains import get_domain

    torch.manual_seed(0)
    enc = get_domain("medical").build_encoder({**cfg, "in_channels": 1})
    enc_modules = {id(m) for m in enc.modules()}
    net = enc.segmenter(3, norm)
    decoder_norms = [
        type(m)
        for m in net.modules()
        if id(m) not in enc_modules and isinstance(m, (torch.nn.InstanceNorm3d, torch.nn.BatchNorm3d))
    ]
    assert decoder_norms and set(decoder_norms) == {layer}
    assert net(torch.randn(2, 1, side, side, side)).shape == (2, 3, side, side, side)


@pytest.mark.parametrize(
    ("norm", "layer"), [("instance", torch.nn.InstanceNorm3d), ("batch", torch.nn.BatchNorm3d)]
)
def test_decoder_norm_is_passed_to_the_segmenter_and_checked(
    monkeypatch: pytest.MonkeyPatch, norm: str, layer: type
) -> None:
    import domains.medical.tasks as tasks
    from domains.medical.options import EvaluateOptions

    _, net = _finetuned(monkeypatch, steps=1, decoder_norm=norm)
    norms = {
        type(m)
        for m in net.decoder.modules()
        if isinstance(m, (torch.nn.InstanceNorm3d, torch.nn.BatchNorm3d))
    }
    assert norms == {layer}  # the option reached the segmenter finetune_dice trained, default or not
    assert EvaluateOptions().decoder_norm == tasks.DEFAULTS["decoder_norm"]
    with pytest.raises(ValueError, match="decoder_norm"):
        EvaluateOptions(decoder_norm="layer")
