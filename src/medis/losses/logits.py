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
  not yet predicted as their target), which several attacks' losses weigh.

Every function maps (B, 1, H, W) logits (and a reference in {0, 1}) to (B, 1, H, W) maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medis.models.frontend import VictimOutput

__all__ = ["LOGIT_EPS", "bce_map", "empty_reference", "fused_logit", "pixel_set", "probabilities"]

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


def empty_reference(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1) bool: the reference has no foreground pixel."""
    return (mask.flatten(1).sum(1) == 0).view(-1, 1, 1, 1)


def pixel_set(z: torch.Tensor, mask: torch.Tensor, targeted: bool) -> torch.Tensor:
    """(B, 1, H, W) float, 1 where the attack has not yet won the pixel (module docstring)."""
    with torch.no_grad():
        agree = (z > 0) == (mask > 0.5)
        return (~agree if targeted else agree).to(z.dtype)
