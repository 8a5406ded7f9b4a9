"""PraNet (Fan et al., "PraNet: Parallel Reverse Attention Network for Polyp Segmentation",
MICCAI 2020), written to reproduce the official implementation's arithmetic and state_dict layout.

Facts of the official code that this module keeps (they change the outputs):

- ``BasicConv2d`` is conv (no bias) + batch norm with NO ReLU in its forward (it owns an unused
  ReLU); ReLUs are applied only where the official forward applies them.
- The RFB-like modules sum the concatenated-branch conv and a 1x1 residual conv, then ReLU.
- The partial decoder upsamples with ``align_corners=True``; every other resize is
  ``F.interpolate(..., scale_factor=s, mode="bilinear")`` with ``align_corners=False``.
- Reverse attention multiplies the features by ``1 - sigmoid(coarser map)`` and ADDS the branch's
  output to that coarser map; branch 4 has no ReLU after its first 1x1 conv, and ReLUs after
  its three 5x5 convs; branches 3 and 2 likewise after their two 3x3 convs.

The forward returns the four side outputs (lateral maps 5, 4, 3, 2: coarse to fine) as logits at
the input resolution. The input size must be a multiple of 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medis.errors import MedisError
from medis.models.res2net import Res2Net, res2net50_v1b_26w_4s, res2net_lite


class InputSizeError(MedisError, ValueError):
    """The network got an input whose size it cannot process."""


class BasicConv2d(nn.Module):
    """Convolution without bias followed by batch norm (no activation: see the module docstring)."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, dilation, bias=False)
        self.bn = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)  # present in the official layout, never applied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def _rfb_branch(in_channel: int, out_channel: int, k: int) -> nn.Sequential:
    """1x1 reduce, 1xk and kx1 convs, then a 3x3 conv with dilation k."""
    return nn.Sequential(
        BasicConv2d(in_channel, out_channel, 1),
        BasicConv2d(out_channel, out_channel, (1, k), padding=(0, k // 2)),
        BasicConv2d(out_channel, out_channel, (k, 1), padding=(k // 2, 0)),
        BasicConv2d(out_channel, out_channel, 3, padding=k, dilation=k),
    )


class RFB_modified(nn.Module):  # noqa: N801 (name fixed by the official state_dict's structure)
    """Receptive-field block: four branches of growing receptive field plus a residual 1x1 conv."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(True)
        self.branch0 = nn.Sequential(BasicConv2d(in_channel, out_channel, 1))
        self.branch1 = _rfb_branch(in_channel, out_channel, 3)
        self.branch2 = _rfb_branch(in_channel, out_channel, 5)
        self.branch3 = _rfb_branch(in_channel, out_channel, 7)
        self.conv_cat = BasicConv2d(4 * out_channel, out_channel, 3, padding=1)
        self.conv_res = BasicConv2d(in_channel, out_channel, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channel, h, w) -> (B, out_channel, h, w)."""
        branches = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)
        return self.relu(self.conv_cat(branches) + self.conv_res(x))


class Aggregation(nn.Module):
    """Partial decoder: fuses the three deepest RFB outputs into a coarse map (stride 8)."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(True)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv_upsample1 = BasicConv2d(channel, channel, 3, padding=1)
        self.conv_upsample2 = BasicConv2d(channel, channel, 3, padding=1)
        self.conv_upsample3 = BasicConv2d(channel, channel, 3, padding=1)
        self.conv_upsample4 = BasicConv2d(channel, channel, 3, padding=1)
        self.conv_upsample5 = BasicConv2d(2 * channel, 2 * channel, 3, padding=1)
        self.conv_concat2 = BasicConv2d(2 * channel, 2 * channel, 3, padding=1)
        self.conv_concat3 = BasicConv2d(3 * channel, 3 * channel, 3, padding=1)
        self.conv4 = BasicConv2d(3 * channel, 3 * channel, 3, padding=1)
        self.conv5 = nn.Conv2d(3 * channel, 1, 1)

    def forward(self, deep: torch.Tensor, middle: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
        """Features at strides 32, 16, 8 (B, C, ·, ·) -> a logit map (B, 1, H/8, W/8)."""
        up = self.upsample
        middle_gated = self.conv_upsample1(up(deep)) * middle
        shallow_gated = self.conv_upsample2(up(up(deep))) * self.conv_upsample3(up(middle)) * shallow
        middle_cat = self.conv_concat2(torch.cat([middle_gated, self.conv_upsample4(up(deep))], dim=1))
        shallow_cat = self.conv_concat3(torch.cat([shallow_gated, self.conv_upsample5(up(middle_cat))], dim=1))
        return self.conv5(self.conv4(shallow_cat))


def _resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def _reverse_attention(coarse: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Erase what the coarse map already found: features * (1 - sigmoid(coarse))."""
    return (1.0 - torch.sigmoid(coarse)).expand(-1, features.shape[1], -1, -1) * features


class PraNet(nn.Module):
    """PraNet with a Res2Net backbone.

    Args:
        channel: RFB / partial decoder width (32 in the paper).
        backbone: a :class:`~medis.models.res2net.Res2Net`; default Res2Net-50 v1b 26w 4s.
        ra4_width: width of reverse-attention branch 4 (256 in the paper).
        ra_width: width of reverse-attention branches 3 and 2 (64 in the paper).

    With the defaults, ``state_dict()`` matches the official ``PraNet-19.pth`` key for key.
    """

    def __init__(self, channel: int = 32, backbone: Res2Net | None = None, ra4_width: int = 256,
                 ra_width: int = 64) -> None:
        super().__init__()
        self.resnet = backbone if backbone is not None else res2net50_v1b_26w_4s()
        _, c2, c3, c4 = self.resnet.out_channels
        self.rfb2_1 = RFB_modified(c2, channel)
        self.rfb3_1 = RFB_modified(c3, channel)
        self.rfb4_1 = RFB_modified(c4, channel)
        self.agg1 = Aggregation(channel)
        self.ra4_conv1 = BasicConv2d(c4, ra4_width, kernel_size=1)
        self.ra4_conv2 = BasicConv2d(ra4_width, ra4_width, kernel_size=5, padding=2)
        self.ra4_conv3 = BasicConv2d(ra4_width, ra4_width, kernel_size=5, padding=2)
        self.ra4_conv4 = BasicConv2d(ra4_width, ra4_width, kernel_size=5, padding=2)
        self.ra4_conv5 = BasicConv2d(ra4_width, 1, kernel_size=1)
        self.ra3_conv1 = BasicConv2d(c3, ra_width, kernel_size=1)
        self.ra3_conv2 = BasicConv2d(ra_width, ra_width, kernel_size=3, padding=1)
        self.ra3_conv3 = BasicConv2d(ra_width, ra_width, kernel_size=3, padding=1)
        self.ra3_conv4 = BasicConv2d(ra_width, 1, kernel_size=3, padding=1)
        self.ra2_conv1 = BasicConv2d(c2, ra_width, kernel_size=1)
        self.ra2_conv2 = BasicConv2d(ra_width, ra_width, kernel_size=3, padding=1)
        self.ra2_conv3 = BasicConv2d(ra_width, ra_width, kernel_size=3, padding=1)
        self.ra2_conv4 = BasicConv2d(ra_width, 1, kernel_size=3, padding=1)

    @staticmethod
    def _refine(coarse: torch.Tensor, features: torch.Tensor, convs: tuple[BasicConv2d, ...]) -> torch.Tensor:
        """One reverse-attention branch: erase ``coarse`` from ``features``, then the first conv (no
        ReLU), the middle convs (each followed by ReLU), the last conv (no ReLU), plus ``coarse``."""
        y = convs[0](_reverse_attention(coarse, features))
        for conv in convs[1:-1]:
            y = F.relu(conv(y))
        return convs[-1](y) + coarse

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Side outputs of a normalised batch.

        Args:
            x: (B, 3, H, W), ImageNet-normalised, H and W multiples of 32.

        Returns:
            Logits (B, 1, H, W) of lateral maps 5, 4, 3, 2 (coarse to fine).
        """
        height, width = x.shape[-2:]
        if height % 32 or width % 32:
            raise InputSizeError(f"PraNet input size must be a multiple of 32, got {height}x{width} "
                                 f"(set the model's input_size, e.g. 352)")
        _, x2, x3, x4 = self.resnet.features(x)
        ra5_feat = self.agg1(self.rfb4_1(x4), self.rfb3_1(x3), self.rfb2_1(x2))
        map5 = _resize(ra5_feat, 8)

        crop4 = _resize(ra5_feat, 0.25)
        y = self._refine(crop4, x4, (self.ra4_conv1, self.ra4_conv2, self.ra4_conv3, self.ra4_conv4, self.ra4_conv5))
        map4 = _resize(y, 32)
        crop3 = _resize(y, 2)
        y = self._refine(crop3, x3, (self.ra3_conv1, self.ra3_conv2, self.ra3_conv3, self.ra3_conv4))
        map3 = _resize(y, 16)
        crop2 = _resize(y, 2)
        y = self._refine(crop2, x2, (self.ra2_conv1, self.ra2_conv2, self.ra2_conv3, self.ra2_conv4))
        map2 = _resize(y, 8)
        return map5, map4, map3, map2


def pranet_lite(channel: int = 16) -> PraNet:
    """The light variant for CPU demos and tests: PraNet's heads (RFB, partial decoder, reverse
    attention) on :func:`~medis.models.res2net.res2net_lite`, with narrower reverse-attention branches."""
    return PraNet(channel=channel, backbone=res2net_lite(), ra4_width=64, ra_width=32)
