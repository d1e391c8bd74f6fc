"""3D encoders from MONAI networks, each with a segmentation network built around its weights.

Every encoder maps ``[B, 1, D, H, W]`` to embeddings ``[B, embedding_dim]`` (global average of its
deepest feature map) and offers ``segmenter(n_classes, norm)``: a segmentation network whose encoder
*is* this module (shared parameters) plus a fresh decoder normalised by ``norm`` (MONAI's norm name,
``"instance"`` or ``"batch"``), so fine-tuning for Dice starts from the pretrained weights. MONAI
networks used: ``ResNet`` (a 3D ResNet-10 with small widths, MedicalNet's shape), ``BasicUNet`` (its
contracting path) and ``SwinUNETR`` (its Swin transformer, ``swinViT``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# The ResNet encoder's 3-D convolutions run in channels-last layout (NDHWC): oneDNN's CPU kernels and
# cuDNN's tensor-core kernels work in it natively, and NCDHW costs a reorder around every conv. On the
# 2-core CPU machine a training step of the demo's ResNet-10 (batch 32 of 32³) took 0.69 s in NCDHW
# and 0.44 s channels-last at one thread (0.39 s vs 0.26 s at two); its Dice segmenter 0.37 s vs
# 0.30 s. BasicUNet gained nothing measurable (1.60 s vs 1.56 s), so it stays as MONAI builds it.
# Parameters are kept in that layout (``channels_last``), inputs converted on entry; saved weights
# are plain contiguous tensors (``state_to_bytes``), so checkpoints do not depend on it.
CHANNELS_LAST = torch.channels_last_3d


def channels_last(module: nn.Module) -> nn.Module:
    """``module`` with its 5-D parameters and buffers (3-D conv weights) in channels-last layout."""
    return module.to(memory_format=CHANNELS_LAST)


def _as_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=CHANNELS_LAST) if x.dim() == 5 else x


class FeaturePyramid:
    """An encoder's feature maps, fine to coarse, each ``[B, C_l, ...]``; slicing takes rows of every
    level, so the pretrain loop can split the two views' batch as it splits a tensor."""

    def __init__(self, levels: list[torch.Tensor]) -> None:
        self.levels = levels

    def __getitem__(self, rows: slice) -> FeaturePyramid:
        if not isinstance(rows, slice):
            raise TypeError("FeaturePyramid: index rows with a slice")
        return FeaturePyramid([level[rows] for level in self.levels])

    def __len__(self) -> int:
        return len(self.levels[0])


class SkipDecoder(nn.Module):
    """A UNet-style decoder (MONAI ``UnetUpBlock``s, then ``UnetOutBlock``) over a feature pyramid
    whose levels have ``channels`` (fine to coarse), its blocks normalised by ``norm``."""

    def __init__(self, channels: list[int], n_out: int, norm: str = "instance") -> None:
        super().__init__()
        from monai.networks.blocks import UnetOutBlock, UnetUpBlock

        self.ups = nn.ModuleList(
            UnetUpBlock(3, deep, skip, kernel_size=3, stride=1, upsample_kernel_size=2, norm_name=norm)
            for deep, skip in zip(channels[:0:-1], channels[-2::-1], strict=True)
        )
        self.out = UnetOutBlock(3, channels[0], n_out)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        h = levels[-1]
        for up, skip in zip(self.ups, levels[-2::-1], strict=True):
            h = up(h, skip)
        return self.out(h)


class ResNetEncoder(nn.Module):
    """MONAI ``ResNet`` (basic blocks, ``layers`` per stage) without its classifier; a 3³ stem
    with stride 1 keeps small patches from collapsing to one voxel too early."""

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = (16, 32, 64, 128),
        layers: Sequence[int] = (1, 1, 1, 1),
    ) -> None:
        super().__init__()
        from monai.networks.nets import ResNet

        self.widths = [int(w) for w in widths]
        self.in_channels = in_channels
        self.net = ResNet(
            block="basic",
            layers=list(layers),
            block_inplanes=self.widths,
            spatial_dims=3,
            n_input_channels=in_channels,
            conv1_t_size=3,
            conv1_t_stride=1,
            feed_forward=False,
        )
        channels_last(self.net)
        self.embedding_dim = self.widths[-1]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at full, 1/2, 1/4, 1/8 and 1/16 resolution."""
        n = self.net
        x0 = n.act(n.bn1(n.conv1(_as_channels_last(x))))
        x1 = n.layer1(n.maxpool(x0))
        x2 = n.layer2(x1)
        x3 = n.layer3(x2)
        x4 = n.layer4(x3)
        return [x0, x1, x2, x3, x4]

    @property
    def pyramid_channels(self) -> list[int]:
        """Channels of :meth:`features`' maps, fine to coarse (a decoder's skip inputs)."""
        return [self.widths[0], *self.widths]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1].mean(dim=(2, 3, 4))

    def forward_timestamps(self, x: torch.Tensor) -> tuple[FeaturePyramid, None]:
        """Dense output for dense objectives (the pretrain loop's ``timestamps=True``): every scale."""
        return FeaturePyramid(self.features(x)), None

    def segmenter(self, n_classes: int, norm: str = "instance") -> nn.Module:
        return _SkipDecoderSegmenter(self, self.pyramid_channels, n_classes, norm)


class _SkipDecoderSegmenter(nn.Module):
    """The encoder and a UNet-style decoder over its multi-scale features."""

    def __init__(
        self, encoder: ResNetEncoder, channels: Sequence[int], n_classes: int, norm: str = "instance"
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = channels_last(SkipDecoder(list(channels), n_classes, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder.features(x))


class BasicUNetEncoder(nn.Module):
    """The contracting path of MONAI's ``BasicUNet`` (``conv_0``, ``down_1..4``)."""

    def __init__(self, in_channels: int = 1, features: Sequence[int] = (16, 16, 32, 64, 128, 16)) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNet

        self.features_cfg = tuple(int(f) for f in features)
        self.in_channels = in_channels
        unet = BasicUNet(spatial_dims=3, in_channels=in_channels, out_channels=1, features=self.features_cfg)
        self.conv_0, self.down_1, self.down_2 = unet.conv_0, unet.down_1, unet.down_2
        self.down_3, self.down_4 = unet.down_3, unet.down_4
        self.embedding_dim = self.features_cfg[4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_0(x)
        for down in (self.down_1, self.down_2, self.down_3, self.down_4):
            h = down(h)
        return h.mean(dim=(2, 3, 4))

    def segmenter(self, n_classes: int, norm: str = "instance") -> nn.Module:
        from monai.networks.nets import BasicUNet

        unet = BasicUNet(
            spatial_dims=3,
            in_channels=self.in_channels,
            out_channels=n_classes,
            features=self.features_cfg,
            norm=(norm, {"affine": True}),  # BasicUNet's own default is ("instance", {"affine": True})
        )
        unet.conv_0, unet.down_1, unet.down_2 = self.conv_0, self.down_1, self.down_2
        unet.down_3, unet.down_4 = self.down_3, self.down_4
        return unet


class SwinEncoder(nn.Module):
    """The Swin transformer of MONAI's ``SwinUNETR`` (``swinViT``); patches must be multiples of 32."""

    def __init__(
        self,
        in_channels: int = 1,
        feature_size: int = 12,
        depths: Sequence[int] = (1, 1, 1, 1),
        num_heads: Sequence[int] = (1, 2, 4, 8),
    ) -> None:
        super().__init__()
        self.cfg = {
            "in_channels": in_channels,
            "feature_size": int(feature_size),
            "depths": tuple(depths),
            "num_heads": tuple(num_heads),
        }
        self.swinViT = self._full(1).swinViT  # noqa: N815 - MONAI's attribute name, kept for checkpoints
        self.embedding_dim = 16 * int(feature_size)

    def _full(self, n_classes: int, norm: str = "instance") -> nn.Module:
        from monai.networks.nets import SwinUNETR

        c = self.cfg
        return SwinUNETR(
            in_channels=c["in_channels"],
            out_channels=n_classes,
            feature_size=c["feature_size"],
            depths=c["depths"],
            num_heads=c["num_heads"],
            norm_name=norm,
            spatial_dims=3,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % 32 for s in x.shape[2:]):
            raise ValueError(f"swin encoder needs patch sides divisible by 32, got {tuple(x.shape[2:])}")
        return self.swinViT(x, normalize=True)[-1].mean(dim=(2, 3, 4))

    def segmenter(self, n_classes: int, norm: str = "instance") -> nn.Module:
        net = self._full(n_classes, norm)
        net.swinViT = self.swinViT
        return net


ENCODERS: dict[str, type[nn.Module]] = {
    "resnet": ResNetEncoder,
    "basicunet": BasicUNetEncoder,
    "swin": SwinEncoder,
}
