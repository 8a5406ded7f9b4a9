"""Pixel-weighted cross-entropy losses of the segmentation attacks: SegPGD, CosPGD, SEA's masked BCE.

Each weighs the per-pixel BCE from logits (:func:`medis.losses.logits.bce_map`) by a weight computed
without gradient, most of them by the *pixel set*, the pixels the attack still has to win
(:func:`medis.losses.logits.pixel_set`). Each takes (B, 1, H, W) logits z, the reference M in
{0, 1} and whether the attack is targeted, and returns (B,).
"""

from __future__ import annotations

import torch

from medis.losses.base import LossContext, reference_of, register, with_direction
from medis.losses.logits import bce_map, fused_logit, pixel_set, probabilities
from medis.models.frontend import VictimOutput

__all__ = ["cospgd_loss", "masked_bce_loss", "segpgd_loss"]


def segpgd_loss(z: torch.Tensor, mask: torch.Tensor, step: int, total_steps: int,
                targeted: bool = False) -> torch.Tensor:
    """SegPGD (Gu, Zhao, Tresp, Torr, ECCV 2022): ((1 − λ)·Σ_set BCE + λ·Σ_rest BCE)/N, λ = t/(2T).

    Early steps weigh the pixels still to be won (untargeted: those still right; targeted: those
    not yet at the target), later steps shift weight to the rest, as the paper's schedule does for
    an untargeted attack's correctly and wrongly classified pixels.
    """
    lam = float(step) / (2.0 * max(int(total_steps), 1))
    todo = pixel_set(z, mask, targeted)
    weight = (1.0 - lam) * todo + lam * (1.0 - todo)
    return (weight * bce_map(z, mask)).flatten(1).mean(1)


def cospgd_loss(z: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """CosPGD (Agnihotri, Jung, Keuper, ICML 2024): the per-pixel BCE times the cosine between
    (P, 1 − P) and (M, 1 − M) (1 − cos when targeted), the weight without gradient; mean over pixels."""
    with torch.no_grad():
        p, q = probabilities(z)
        cos = (p * mask + q * (1.0 - mask)) / (torch.sqrt(p * p + q * q) * torch.sqrt(mask ** 2 + (1.0 - mask) ** 2))
        weight = 1.0 - cos if targeted else cos
    return (weight * bce_map(z, mask)).flatten(1).mean(1)


def masked_bce_loss(z: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """SEA's masked cross-entropy (Croce, Singh, Hein, ECCV 2024): BCE summed over the pixel set, / N."""
    return (pixel_set(z, mask, targeted) * bce_map(z, mask)).flatten(1).mean(1)


def _segpgd(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
    return segpgd_loss(fused_logit(outputs), reference_of(outputs, reference), ctx.step, ctx.total_steps,
                       ctx.targeted)


_segpgd.__doc__ = segpgd_loss.__doc__
register("segpgd", _segpgd)
register("cospgd", with_direction(cospgd_loss))
register("masked_bce", with_direction(masked_bce_loss))
