"""Overlap (Dice-family) losses: soft Dice, log-cosh Dice, BCE + Dice, Tversky, per sample.

Two forms (docs/method.md, "Surrogate losses"):

- the paper forms (the MedIS notebooks', Shukla, Gupta, Gupta, MTAP 2023) read the fused
  probability P (B, 1, H, W) with Dice D = 2Σ(P·M)/(ΣP + ΣM), D = 1 when both sums are 0;
- the clean forms read the fused logit z (:mod:`medis.losses.logits`). An overlap loss is constant
  in P when the reference is empty (2ΣPM/(ΣP+ΣM) = 0 for every P), so toward the all-black target
  they are computed on the complement class (background), where they measure the same agreement
  and have a gradient. 1 − D is written without the subtraction, which in float32 rounds to 0 near
  a perfect prediction and takes the gradient of log-cosh Dice with it.

Every function maps (B, 1, H, W) maps and a reference M in {0, 1} to (B,).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medis.losses.base import on_logit, on_prob, register
from medis.losses.cross_entropy import bce_loss, bce_loss_on_prob
from medis.losses.logits import empty_reference, probabilities, with_floor

__all__ = ["bce_dice_loss", "bce_dice_loss_paper", "dice_distance", "dice_loss", "logcosh_dice_loss",
           "logcosh_dice_loss_paper", "safe_ratio", "soft_dice", "soft_dice_of_prob", "tversky_loss"]


def safe_ratio(num: torch.Tensor, den: torch.Tensor, empty: float) -> torch.Tensor:
    """num / den, and ``empty`` where den == 0, with no NaN in the gradient either. (B,) -> (B,)."""
    nonzero = den > 0
    return torch.where(nonzero, num / torch.where(nonzero, den, torch.ones_like(den)), torch.full_like(num, empty))


# ----------------------------------------------------------------------------- paper forms, on P


def soft_dice_of_prob(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Soft Dice D = 2 Σ(P·M) / (ΣP + ΣM), and D = 1 when both sums are 0. (B,1,H,W) x2 -> (B,).

    Dice, "Measures of the Amount of Ecologic Association Between Species", Ecology 1945; as a loss:
    Milletari, Navab, Ahmadi, "V-Net", 3DV 2016 (with first powers in the denominator).
    """
    inter = (prob * mask).flatten(1).sum(1)
    den = prob.flatten(1).sum(1) + mask.flatten(1).sum(1)
    return safe_ratio(2.0 * inter, den, 1.0)


def logcosh_dice_loss_paper(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log(cosh(1 - D)) on P (Jadon, "A survey of loss functions for semantic segmentation", IEEE
    CIBCB 2020), computed as x + softplus(-2x) - log 2 with x = |1 - D| (no overflow of cosh). (B,)."""
    x = (1.0 - soft_dice_of_prob(prob, mask)).abs()
    return x + F.softplus(-2.0 * x) - math.log(2.0)


def bce_dice_loss_paper(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE + (1 - D) on P (Jadon, IEEE CIBCB 2020, "combo"-style sum). (B,1,H,W) x2 -> (B,)."""
    return bce_loss_on_prob(prob, mask) + (1.0 - soft_dice_of_prob(prob, mask))


# ----------------------------------------------------------------------------- clean forms, on z


def _class_maps(z: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, 1 − P, M) of the foreground, or of the background where the reference is empty."""
    p, q = probabilities(z)
    empty = empty_reference(mask)
    return torch.where(empty, q, p), torch.where(empty, p, q), torch.where(empty, 1.0 - mask, mask)


def dice_distance(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − D = (Σ P·(1 − M) + Σ (1 − P)·M) / (ΣP + ΣM) of the foreground (the background for an empty
    reference), 0 when both sums are 0. (B,)."""
    prob, miss, ref = _class_maps(z, mask)
    errors = (prob * (1.0 - ref)).flatten(1).sum(1) + (miss * ref).flatten(1).sum(1)
    return safe_ratio(errors, prob.flatten(1).sum(1) + ref.flatten(1).sum(1), 0.0)


def soft_dice(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Soft Dice 2Σ(P·M)/(ΣP + ΣM) of the foreground (the background for an empty reference). (B,)."""
    return 1.0 - dice_distance(z, mask)


def dice_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − D (Milletari, Navab, Ahmadi, "V-Net", 3DV 2016), with the floor of
    :func:`~medis.losses.logits.with_floor` (without overlap between prediction and target, 1 − D is
    flat in the pixels that must leave the lesion). (B,)."""
    return with_floor(dice_distance(z, mask), z, mask)


def logcosh_dice_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log(cosh(1 − D)) (Jadon, IEEE CIBCB 2020); 1 − D is in [0, 1], so cosh cannot overflow, and
    its derivative tanh(1 − D) stays non-zero near a perfect prediction; with the floor of
    :func:`~medis.losses.logits.with_floor`, as :func:`dice_loss`. (B,)."""
    return with_floor(torch.log(torch.cosh(dice_distance(z, mask))), z, mask)


def bce_dice_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE + (1 − D) (Jadon, IEEE CIBCB 2020). (B,)."""
    return bce_loss(z, mask) + dice_distance(z, mask)


def tversky_loss(z: torch.Tensor, mask: torch.Tensor, alpha: float = 0.3, beta: float = 0.7) -> torch.Tensor:
    """1 − TP/(TP + α·FP + β·FN) = (α·FP + β·FN)/(TP + α·FP + β·FN) (Salehi et al., MLMI 2017), of the
    background for an empty reference; 0 when TP = FP = FN = 0; with the floor of
    :func:`~medis.losses.logits.with_floor`, as :func:`dice_loss`. (B,)."""
    prob, miss, ref = _class_maps(z, mask)
    tp = (prob * ref).flatten(1).sum(1)
    errors = alpha * (prob * (1.0 - ref)).flatten(1).sum(1) + beta * (miss * ref).flatten(1).sum(1)
    return with_floor(safe_ratio(errors, tp + errors, 0.0), z, mask)


register("logcosh_dice", on_logit(logcosh_dice_loss), on_prob(logcosh_dice_loss_paper))
register("bce_dice", on_logit(bce_dice_loss), on_prob(bce_dice_loss_paper))
register("dice", on_logit(dice_loss))
register("tversky", on_logit(tversky_loss))
