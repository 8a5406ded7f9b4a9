"""Res2Net v1b backbone (Gao et al., "Res2Net: A New Multi-scale Backbone Architecture", TPAMI 2021).

The ``v1b`` variant has a deep stem (three 3x3 convolutions instead of one 7x7) and average pooling
before the 1x1 projection of strided shortcuts. Module names and parameter order follow the public
implementation, so its ImageNet weights (``res2net50_v1b_26w_4s-3cf99910.pth``) and the backbone
part of PraNet's checkpoint load with ``strict=True``.

Each bottleneck splits the 1x1-reduced features into ``scale`` groups of ``width`` channels; group
``i`` (``i >= 1``) goes through a 3x3 convolution after adding the previous group's output
("hierarchical residual-like connections"), and the last group passes unchanged (or average-pooled
in the first block of a stage, which also carries the stride).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class Bottle2neck(nn.Module):
    """Res2Net bottleneck: 1x1 reduce -> multi-scale 3x3 groups -> 1x1 expand, plus shortcut.

    Args:
        inplanes: input channels.
        planes: bottleneck planes; the block outputs ``planes * 4`` channels.
        stride: stride of the 3x3 convolutions (and of the pooled last group in a stage block).
        downsample: the shortcut projection, when the shape changes.
        base_width: width of a group per 64 planes (26 in "26w").
        scale: number of groups (4 in "4s").
        stage: first block of a stage (groups are not chained; the last one is average-pooled).
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 base_width: int = 26, scale: int = 4, stage: bool = False) -> None:
        super().__init__()
        width = int(math.floor(planes * base_width / 64.0))
        self.width, self.scale, self.stage = width, scale, stage
        self.nums = 1 if scale == 1 else scale - 1
        self.conv1 = nn.Conv2d(inplanes, width * scale, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        if stage:
            self.pool = nn.AvgPool2d(kernel_size=3, stride=stride, padding=1)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False) for _ in range(self.nums))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(self.nums))
        self.conv3 = nn.Conv2d(width * scale, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, inplanes, H, W) -> (B, planes*4, H/stride, W/stride)."""
        groups = torch.split(self.relu(self.bn1(self.conv1(x))), self.width, dim=1)
        outputs = []
        carried: torch.Tensor | None = None
        for i in range(self.nums):
            branch = groups[i] if (carried is None or self.stage) else carried + groups[i]
            carried = self.relu(self.bns[i](self.convs[i](branch)))
            outputs.append(carried)
        if self.scale != 1:
            last = groups[self.nums]
            outputs.append(self.pool(last) if self.stage else last)
        out = self.bn3(self.conv3(torch.cat(outputs, dim=1)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Res2Net(nn.Module):
    """Res2Net v1b for ImageNet classification; PraNet uses its stem and four stages.

    Args:
        layers: blocks per stage (``[3, 4, 6, 3]`` for Res2Net-50).
        base_width, scale: see :class:`Bottle2neck`.
        planes: bottleneck planes of the four stages (``(64, 128, 256, 512)``: output channels
            256, 512, 1024, 2048).
        stem_width: channels of the first two stem convolutions (the third outputs ``planes[0]``).
        num_classes: classifier outputs (the classifier is kept so ImageNet weights load strictly).
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), base_width: int = 26, scale: int = 4,
                 planes: Sequence[int] = (64, 128, 256, 512), stem_width: int = 32, num_classes: int = 1000) -> None:
        super().__init__()
        self.base_width, self.scale = base_width, scale
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stem_width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, planes[0], 3, 1, 1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.inplanes = planes[0]
        self.layer1 = self._make_layer(planes[0], layers[0], stride=1)
        self.layer2 = self._make_layer(planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes[3] * Bottle2neck.expansion, num_classes)
        self.out_channels = tuple(p * Bottle2neck.expansion for p in planes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * Bottle2neck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(self.inplanes, out, kernel_size=1, stride=1, bias=False),
                nn.BatchNorm2d(out),
            )
        blocks_list = [Bottle2neck(self.inplanes, planes, stride, downsample, self.base_width, self.scale, stage=True)]
        self.inplanes = out
        blocks_list += [Bottle2neck(out, planes, base_width=self.base_width, scale=self.scale) for _ in range(1, blocks)]
        return nn.Sequential(*blocks_list)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage outputs at strides 4, 8, 16, 32.

        Args:
            x: (B, 3, H, W) normalised images.

        Returns:
            (B, C1, H/4, W/4), (B, C2, H/8, W/8), (B, C3, H/16, W/16), (B, C4, H/32, W/32).
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x1 = self.layer1(x)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        return x1, x2, x3, self.layer4(x3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> class logits (B, num_classes)."""
        return self.fc(torch.flatten(self.avgpool(self.features(x)[-1]), 1))


def res2net50_v1b_26w_4s() -> Res2Net:
    """Res2Net-50 v1b, 26w x 4s: PraNet's backbone (weights: ``res2net50_v1b_26w_4s-3cf99910.pth``)."""
    return Res2Net((3, 4, 6, 3), base_width=26, scale=4)


def res2net_lite() -> Res2Net:
    """A slim Res2Net v1b for CPU demos and tests: one block per stage, a quarter of the planes.

    Output channels 64, 128, 256, 512 at strides 4..32; about 1.5% of Res2Net-50's weights.
    """
    return Res2Net((1, 1, 1, 1), base_width=26, scale=4, planes=(16, 32, 64, 128), stem_width=16, num_classes=10)
