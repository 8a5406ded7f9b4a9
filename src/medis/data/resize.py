"""The one resize of images to the network size, shared by the loaders, the victim's in-graph front
end and the real pipeline: bilinear with half-pixel centres, antialiased when shrinking, as PIL's
``Image.resize(BILINEAR)`` and PraNet's official loaders resize (PyTorch's ``antialias=True`` is
written to match PIL's). A victim trained here was trained through it, is attacked through it, and
is judged through it; paper mode keeps the notebooks' in-graph resize (no antialiasing).

Masks are resized by nearest neighbour (the loaders) or by area and majority (the engine's loss
resolution, :mod:`medis.attacks.batching.loss_size`), never by this.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["RESIZE_ANTIALIAS", "resize_images", "resize_uint8"]

RESIZE_ANTIALIAS = True
"""Whether the loaders' resize antialiases. A checkpoint trained here carries it
(:mod:`medis.models.victim_spec`), so that the victim's in-graph resize is the one it was trained with."""


def resize_images(images: torch.Tensor, size: Sequence[int], antialias: bool = RESIZE_ANTIALIAS) -> torch.Tensor:
    """Float images (B, C, H, W) at ``size`` (h, w): bilinear, ``align_corners=False``, antialiased
    when shrinking unless ``antialias`` is false; the images themselves at their own size."""
    size = (int(size[0]), int(size[1]))
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=antialias)


def resize_uint8(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """An image (H, W, C) at ``size`` (h, w) as the loaders resize it: :func:`resize_images` of its
    values, rounded back to 8 bits for a uint8 image (as PIL returns one), float32 kept as float32."""
    values = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    out = resize_images(values.to(torch.float32), size)[0].permute(1, 2, 0)
    if image.dtype == np.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out.numpy().astype(image.dtype, copy=False)
