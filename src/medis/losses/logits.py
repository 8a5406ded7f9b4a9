"""The stable primitives every clean-form loss is written with: losses read logits, so no gradient dies.

A probability saturates: in float32 sigmoid(z) is exactly 1 for z > ~17, and a loss written on P
(BCE on probabilities, logit(P) of a clamped P) then has exactly zero input gradient at the
confident pixels an attacker must flip. Every clean-form loss reads the victim's fused logit z
(:attr:`~medis.models.frontend.VictimOutput.logit`; ``logit(P)`` of a clamped P where the victim has
none) and builds what it needs from these:

- P = exp(−softplus(−z)) and 1 − P = exp(−softplus(z)) (:func:`probabilities`): the same values as
  sigmoid, but their derivatives P·σ(−z) and −(1−P)·σ(z) stay non-zero down to ~1e-38;
- the per-pixel BCE (:func:`bce_map`) is softplus(−z) where M = 1 and softplus(z) where M = 0, whose
  derivative −σ(−z) / σ(z) is the mathematically exact one instead of σ(z) − M rounded to 0;
- the pixel set (:func:`pixel_set`): the pixels the attack still has to win, computed without
  gradient at every step (untargeted: those still predicted as their ground truth; targeted: those
  not yet predicted as their target), which several attacks' losses weigh;
- a floor (:func:`with_floor`): where a loss's own derivative in a pixel's logit is exactly 0 (the
  Dice family for a pixel that must leave a class the target lacks while the prediction and the target
  do not overlap, Lovász at zero increments of the Jaccard extension) or underflows in float32 (the
  focal term at a confident pixel), :data:`GRADIENT_FLOOR` times the BCE keeps one of the right sign.

Every function maps (B, 1, H, W) logits (and a reference in {0, 1}) to (B, 1, H, W) maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medis.models.frontend import VictimOutput

__all__ = ["GRADIENT_FLOOR", "LOGIT_EPS", "bce_map", "empty_reference", "fused_logit", "pixel_set", "probabilities",
           "with_floor"]

LOGIT_EPS = 1e-6
"""A victim without a fused logit (the paper fusion) gives ``logit(P)`` of P clamped to [eps, 1 − eps]."""


def fused_logit(outputs: VictimOutput) -> torch.Tensor:
    """The fused logit z (B, 1, H, W): the victim's own, else logit(P) of a clamped P."""
    if outputs.logit is not None:
        return outputs.logit
    return torch.logit(outputs.prob, eps=LOGIT_EPS)


def probabilities(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, 1 − P) from logits, each with a non-vanishing derivative (module docstring)."""
    return torch.exp(-F.softplus(-z)), torch.exp(-F.softplus(z))


def bce_map(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-pixel BCE from logits: M·softplus(−z) + (1 − M)·softplus(z). (B,1,H,W) x2 -> (B,1,H,W)."""
    return mask * F.softplus(-z) + (1.0 - mask) * F.softplus(z)


GRADIENT_FLOOR = 1e-6
"""Weight of the mean BCE that :func:`with_floor` adds to a loss: it changes the loss by at most that
share of the BCE, and gives every pixel a derivative of the right sign (about 4e-24 at |z| = 40)."""


def with_floor(values: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``values`` (B,) plus :data:`GRADIENT_FLOOR` times the mean per-pixel BCE of ``z`` against
    ``mask`` (module docstring): no pixel's gradient is exactly 0."""
    return values + GRADIENT_FLOOR * bce_map(z, mask).flatten(1).mean(1)


def empty_reference(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1) bool: the reference has no foreground pixel."""
    return (mask.flatten(1).sum(1) == 0).view(-1, 1, 1, 1)


def pixel_set(z: torch.Tensor, mask: torch.Tensor, targeted: bool) -> torch.Tensor:
    """(B, 1, H, W) float, 1 where the attack has not yet won the pixel (module docstring)."""
    with torch.no_grad():
        agree = (z > 0) == (mask > 0.5)
        return (~agree if targeted else agree).to(z.dtype)
