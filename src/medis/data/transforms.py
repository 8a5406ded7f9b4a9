"""Albumentations pipelines for training and evaluation at the network size.

The resize is the project's one resize (:mod:`medis.data.resize`: antialiased bilinear, as PIL's),
the same as the victim's in-graph front end and the real pipeline use. Images stay in [0, 1] without
ImageNet normalisation: normalisation (and, in attack mode, the resize too) is part of the model's
differentiable front end (``medis.models.frontend``), so one preprocessing serves training,
evaluation and attacks. Attack mode uses no transform at all: the attack works on the image at its
original size; its real pipeline runs :func:`eval_transform` on each 8-bit adversarial image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import albumentations as A
import cv2
import numpy as np

from medis.data.resize import resize_uint8
from medis.errors import ConfigError


@dataclass
class ColorJitterConfig:
    """Colour jitter strengths (albumentations ``ColorJitter``), applied with probability ``p``."""

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    p: float = 0.5


@dataclass
class AugmentConfig:
    """Training augmentations; every probability 0 turns the pipeline into a plain resize.

    ``rotate`` is the maximum rotation in degrees (applied with probability ``rotate_p``);
    ``scale`` the maximum relative zoom of the same affine transform.
    """

    hflip: float = 0.5
    vflip: float = 0.5
    rotate: float = 15.0
    scale: float = 0.1
    rotate_p: float = 0.5
    color_jitter: ColorJitterConfig = field(default_factory=ColorJitterConfig)

    @classmethod
    def from_dict(cls, values: dict | None) -> "AugmentConfig":
        """Build from a plain dict (a Hydra config node), naming any unknown key."""
        values = dict(values or {})
        jitter = values.pop("color_jitter", None) or {}
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown augment key(s) {sorted(unknown)}; valid: {sorted(known)}")
        unknown = set(jitter) - set(ColorJitterConfig.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown augment.color_jitter key(s) {sorted(unknown)}")
        config = cls(**values, color_jitter=ColorJitterConfig(**jitter))
        for name in ("hflip", "vflip", "rotate_p"):
            if not 0.0 <= getattr(config, name) <= 1.0:
                raise ConfigError(f"augment.{name} must be a probability in [0, 1], got {getattr(config, name)}")
        if not 0.0 <= config.color_jitter.p <= 1.0:
            raise ConfigError(f"augment.color_jitter.p must be in [0, 1], got {config.color_jitter.p}")
        return config


class Resize(A.Resize):
    """``A.Resize`` whose image resize is the project's one (:func:`medis.data.resize.resize_uint8`);
    masks stay nearest neighbour (``mask_interpolation``)."""

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return resize_uint8(img, (self.height, self.width))


def _side(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def eval_transform(size: int | Sequence[int]) -> A.Compose:
    """The resize of the image (:class:`Resize`; nearest for the mask) to ``size`` x ``size`` (or (h, w))."""
    height, width = _side(size)
    return A.Compose([Resize(height, width, mask_interpolation=cv2.INTER_NEAREST)])


def train_transform(size: int, augment: AugmentConfig | None = None, seed: int | None = None) -> A.Compose:
    """Resize to ``size`` x ``size``, then flips, rotation/zoom and colour jitter.

    The pipeline has its own random state (``seed``); data loader workers reseed it
    (:func:`medis.data.dataset.seed_worker`) so that workers do not repeat each other.
    """
    augment = augment or AugmentConfig()
    jitter = augment.color_jitter
    steps = [
        Resize(size, size, mask_interpolation=cv2.INTER_NEAREST),
        A.HorizontalFlip(p=augment.hflip),
        A.VerticalFlip(p=augment.vflip),
        A.Affine(rotate=(-augment.rotate, augment.rotate), scale=(1 - augment.scale, 1 + augment.scale),
                 border_mode=cv2.BORDER_REFLECT_101, p=augment.rotate_p),
        A.ColorJitter(brightness=jitter.brightness, contrast=jitter.contrast, saturation=jitter.saturation,
                      hue=jitter.hue, p=jitter.p),
    ]
    return A.Compose(steps, seed=seed)
