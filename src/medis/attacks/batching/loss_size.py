"""Losses and per-step scores at a capped resolution (``engine.loss_size``, clean mode).

The victim's side outputs come from a network of fixed input size (PraNet: 352×352) and are
bilinearly upsampled to the mask size; at ISIC's sizes (up to 6688×4439) the losses and the step
scores then spend most of an attack's time and memory on maps that carry no more information than
at about 1k pixels. With ``engine.loss_size = L`` an image whose longer side exceeds L has its side
outputs upsampled only to the image size scaled down to a longer side of L (:func:`loss_shape`);
its reference masks are scaled there by area and majority (:func:`downscale_masks`). The
perturbation, the images and the final verdict (the score of the chosen adversarial image, its
success, the real-pipeline and transfer judgments) stay at full size: the engine judges every
chosen image again at full size once the steps are done
(:func:`medis.attacks.engine.verdicts.judge_at_full_size`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MIN_LOSS_SIZE", "downscale_masks", "loss_shape"]

MIN_LOSS_SIZE = 16
"""The smallest ``engine.loss_size`` accepted (pixels)."""


def loss_shape(size: tuple[int, int], loss_size: int | None) -> tuple[int, int]:
    """The (h, w) at which losses and step scores of an image of ``size`` (H, W) are computed: the
    image's own size, or, where its longer side exceeds ``loss_size``, the size scaled to a longer
    side of ``loss_size`` (aspect ratio kept, each side at least 1)."""
    height, width = int(size[0]), int(size[1])
    if loss_size is None or max(height, width) <= loss_size:
        return height, width
    scale = loss_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def downscale_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Binary masks (n, 1, H, W) at ``size`` (h, w): each output pixel is foreground where most of
    the area it covers is (area averaging, then ``>= 0.5``). Returns bool (n, 1, h, w)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.bool()
    return F.interpolate(masks.float(), size=size, mode="area") >= 0.5
