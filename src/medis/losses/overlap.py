"""Overlap (Dice-family) surrogate losses on probabilities, each per sample: the paper-mode forms
(the clean forms read logits: :mod:`medis.losses.logit_forms`).

Every function takes the fused probability map ``prob`` P (B, 1, H, W) and the reference mask
``mask`` M (B, 1, H, W) in {0, 1}, and returns a (B,) tensor. Sums run over each sample's pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medis.losses.pixelwise import bce_loss


def safe_ratio(num: torch.Tensor, den: torch.Tensor, empty: float) -> torch.Tensor:
    """num / den, and ``empty`` where den == 0, with no NaN in the gradient either. (B,) -> (B,)."""
    nonzero = den > 0
    return torch.where(nonzero, num / torch.where(nonzero, den, torch.ones_like(den)), torch.full_like(num, empty))


def soft_dice(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Soft Dice D = 2 Σ(P·M) / (ΣP + ΣM), and D = 1 when both sums are 0. (B,1,H,W) x2 -> (B,).

    Dice, "Measures of the Amount of Ecologic Association Between Species", Ecology 1945; as a loss:
    Milletari, Navab, Ahmadi, "V-Net", 3DV 2016 (with first powers in the denominator).
    """
    inter = (prob * mask).flatten(1).sum(1)
    den = prob.flatten(1).sum(1) + mask.flatten(1).sum(1)
    return safe_ratio(2.0 * inter, den, 1.0)


def dice_loss(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Soft Dice loss 1 - D (Milletari, Navab, Ahmadi, "V-Net", 3DV 2016). (B,1,H,W) x2 -> (B,)."""
    return 1.0 - soft_dice(prob, mask)


def logcosh_dice_loss(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log(cosh(1 - D)). (B,1,H,W) x2 -> (B,).

    Jadon, "A survey of loss functions for semantic segmentation", IEEE CIBCB 2020. Computed as
    x + softplus(-2x) - log 2 with x = |1 - D| (no overflow of cosh).
    """
    x = (1.0 - soft_dice(prob, mask)).abs()
    return x + F.softplus(-2.0 * x) - math.log(2.0)


def bce_dice_loss(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE + (1 - D) (Jadon, "A survey of loss functions for semantic segmentation", IEEE CIBCB
    2020, "combo"-style sum). (B,1,H,W) x2 -> (B,)."""
    return bce_loss(prob, mask) + dice_loss(prob, mask)
