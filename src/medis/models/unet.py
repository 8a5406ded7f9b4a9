"""U-Net (Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015): a second victim family behind the same :class:`~medis.models.frontend.Victim`
interface, so that nothing in the framework is PraNet-only.

Same-padding convolutions with batch norm (so output size = input size), max-pool down, bilinear
or transposed-convolution up, one logit channel. The input size must be divisible by
``2 ** (depth - 1)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medis.models.pranet import InputSizeError


class DoubleConv(nn.Sequential):
    """(conv 3x3 -> BN -> ReLU) x 2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net with ``depth`` resolution levels.

    Args:
        in_channels: image channels.
        base_channels: channels of the first level; each level down doubles them.
        depth: number of levels (4 pools for depth 5, as in the paper).
        bilinear: upsample bilinearly (else transposed convolutions).
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 32, depth: int = 5, bilinear: bool = True) -> None:
        super().__init__()
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth)]
        self.down = nn.ModuleList([DoubleConv(in_channels, widths[0])] +
                                  [DoubleConv(widths[i - 1], widths[i]) for i in range(1, depth)])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for i in range(depth - 1, 0, -1):
            if bilinear:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                             nn.Conv2d(widths[i], widths[i - 1], 1)))
            else:
                self.up.append(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2))
            self.merge.append(DoubleConv(2 * widths[i - 1], widths[i - 1]))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> logits (B, 1, H, W)."""
        factor = 2 ** (self.depth - 1)
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise InputSizeError(f"U-Net input size must be divisible by {factor}, got {x.shape[-2]}x{x.shape[-1]}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([skip, up(x)], dim=1))
        return self.head(x)
