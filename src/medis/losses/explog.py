"""The exponential-logarithmic loss, per sample: the MedIS notebooks' form (paper mode) and Wong et
al.'s published one (clean mode).

Wong, Moradi, Tang, Syeda-Mahmood, "3D Segmentation with Exponential Logarithmic Loss for Highly
Unbalanced Object Sizes", MICCAI 2018. The notebooks of Shukla, Gupta, Gupta (MTAP 2023) write
0.5·(−log(1 − D))^γ + 0.5·(−log BCE)^γ with γ = 2, which differs from it; paper mode keeps that.
"""

from __future__ import annotations

import torch

from medis.losses.base import on_logit, on_prob, register
from medis.losses.cross_entropy import bce_loss_on_prob
from medis.losses.logits import bce_map
from medis.losses.overlap import dice_distance, soft_dice_of_prob

__all__ = ["LOG_EPS", "exp_log_loss", "exp_log_loss_paper"]

LOG_EPS = 1e-7
"""Smallest argument of a log in the notebooks' exp-log loss."""


def exp_log_loss_paper(prob: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """MedIS notebook exp-log loss 0.5 (-log(1 - D))^γ + 0.5 (-log BCE)^γ on P. (B,1,H,W) x2 -> (B,).

    As written in the notebooks (module docstring); both log arguments are clamped to >= 1e-7.

    Args:
        prob: (B, 1, H, W) probabilities P.
        mask: (B, 1, H, W) reference M in {0, 1}.
        gamma: exponent γ.
    """
    dice_term = (-torch.log((1.0 - soft_dice_of_prob(prob, mask)).clamp_min(LOG_EPS))) ** gamma
    bce_term = (-torch.log(bce_loss_on_prob(prob, mask).clamp_min(LOG_EPS))) ** gamma
    return 0.5 * dice_term + 0.5 * bce_term


def exp_log_loss(z: torch.Tensor, mask: torch.Tensor, w_dice: float = 0.8, w_cross: float = 0.2,
                 gamma: float = 0.3, base_eps: float = 1e-6) -> torch.Tensor:
    """Wong et al.'s exp-log loss: w_dice·(−ln D)^γ + w_cross·mean((−ln p_t)^γ), with −ln p_t the
    per-pixel BCE from logits; −ln D = −log1p(−(1 − D)) with D ≥ 1e-7. x^γ has no derivative at 0 for
    γ < 1, so each base is shifted by ``base_eps`` ((x + eps)^γ): unlike a clamp, the shift keeps a
    gradient where the prediction is already perfect. (B,1,H,W) x2 -> (B,)."""
    distance = dice_distance(z, mask)
    dice_term = (-torch.log1p(-distance.clamp_max(1.0 - 1e-7)) + base_eps) ** gamma
    cross_term = ((bce_map(z, mask) + base_eps) ** gamma).flatten(1).mean(1)
    return w_dice * dice_term + w_cross * cross_term


register("exp_log", on_logit(exp_log_loss), on_prob(exp_log_loss_paper))
