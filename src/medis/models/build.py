"""Assemble a victim from its parts: network, weights, differentiable front end (Hydra's target for
``conf/model/*.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from torch import nn

from medis.models.checkpoints import load_weights
from medis.models.frontend import IMAGENET_MEAN, IMAGENET_STD, Fusion, Victim


def build_victim(net: nn.Module, input_size: int | Sequence[int] = 352, fusion: Fusion = "paper",
                 checkpoint: str | Path | None = None, backbone_weights: str | Path | None = None,
                 antialias: bool = False, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> Victim:
    """Load weights into ``net`` and wrap it in a :class:`~medis.models.frontend.Victim`.

    Args:
        net: the segmentation network (e.g. :class:`~medis.models.pranet.PraNet`).
        input_size: network input size (PraNet: a multiple of 32).
        fusion: side-output fusion (``paper``, ``clean``, ``last``).
        checkpoint: official PraNet weights or one of our Lightning checkpoints (auto-detected).
        backbone_weights: Res2Net ImageNet weights for ``net.resnet``, loaded before ``checkpoint``.
        antialias, mean, std: see :class:`~medis.models.frontend.Victim`.
    """
    if backbone_weights:
        load_weights(net, backbone_weights, kind="backbone")
    if checkpoint:
        load_weights(net, checkpoint)
    size = input_size if isinstance(input_size, int) else tuple(input_size)
    return Victim(net, size, mean=mean, std=std, fusion=fusion, antialias=antialias)
