"""The MedIS notebooks' exponential-logarithmic loss, per sample (paper mode; the published loss of
Wong et al. is the clean form, :func:`medis.losses.logit_forms.exp_log_loss`)."""

from __future__ import annotations

import torch

from medis.losses.overlap import soft_dice
from medis.losses.pixelwise import bce_loss

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
