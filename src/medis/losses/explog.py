"""Exponential-logarithmic loss, per sample: the MedIS notebook form and the published one."""

from __future__ import annotations

import torch

from medis.losses.overlap import soft_dice
from medis.losses.pixelwise import bce_loss, bce_map

LOG_EPS = 1e-7
"""Smallest argument of a log in the exp-log losses."""


def exp_log_loss_paper(prob: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """MedIS notebook exp-log loss 0.5 (-log(1 - D))^γ + 0.5 (-log BCE)^γ. (B,1,H,W) x2 -> (B,).

    As written in the notebooks of Shukla, Gupta, Gupta (Multimedia Tools and Applications 2023),
    which differs from Wong et al. (MICCAI 2018); both log arguments are clamped to >= 1e-7.

    Args:
        prob: (B, 1, H, W) probabilities P.
        mask: (B, 1, H, W) reference M in {0, 1}.
        gamma: exponent γ.
    """
    dice_term = (-torch.log((1.0 - soft_dice(prob, mask)).clamp_min(LOG_EPS))) ** gamma
    bce_term = (-torch.log(bce_loss(prob, mask).clamp_min(LOG_EPS))) ** gamma
    return 0.5 * dice_term + 0.5 * bce_term


def exp_log_loss(prob: torch.Tensor, mask: torch.Tensor, w_dice: float = 0.8, w_cross: float = 0.2,
                 gamma: float = 0.3, base_eps: float = 1e-6) -> torch.Tensor:
    """Published exp-log loss w_dice (-ln D)^γ + w_cross mean((-ln p_t)^γ). (B,1,H,W) x2 -> (B,).

    Wong, Moradi, Tang, Syeda-Mahmood, "3D Segmentation with Exponential Logarithmic Loss for
    Highly Unbalanced Object Sizes", MICCAI 2018, binary case: p_t = P where M = 1 else 1 - P.
    D is clamped to >= 1e-7 before its log; -ln p_t is the per-pixel BCE (log clamped at -100);
    each base of the power is clamped to >= ``base_eps`` (x^γ has no derivative at 0 for γ < 1).

    Args:
        prob: (B, 1, H, W) probabilities P.
        mask: (B, 1, H, W) reference M in {0, 1}.
        w_dice, w_cross: weights of the Dice and cross-entropy terms.
        gamma: exponent γ of both terms.
        base_eps: smallest base of the power.
    """
    dice_term = (-torch.log(soft_dice(prob, mask).clamp_min(LOG_EPS))).clamp_min(base_eps) ** gamma
    cross_term = (bce_map(prob, mask).clamp_min(base_eps) ** gamma).flatten(1).mean(1)
    return w_dice * dice_term + w_cross * cross_term
