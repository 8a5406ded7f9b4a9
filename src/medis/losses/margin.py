"""Margin losses: SEA's normalised logit (unmasked, and masked to the pixel set of
:func:`medis.losses.logits.pixel_set`), DAG's logit difference and ASMA's probability objective over
the pixel set. Each takes (B, 1, H, W) logits z, the reference M in {0, 1} (and whether the attack is
targeted, for those with a pixel set) and returns (B,); they are signed (the attacker ascends them),
not bounded below by 0.
"""

from __future__ import annotations

import torch

from medis.losses.base import on_logit, register, with_direction
from medis.losses.logits import pixel_set, probabilities

__all__ = ["asma_loss", "dag_loss", "masked_logit_loss", "normalized_logit_loss"]


def masked_logit_loss(z: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """SEA's masked normalised-logit loss, binary form: −Σ_set (2M − 1)·ẑ/N with ẑ = z/√(1 + z²).

    SEA normalises a pixel's logit vector to unit length; a binary map has one logit (two-class
    logits (0, z)), whose unit vector would only keep sign(z), so the vector (1, z) is normalised.
    """
    return -(pixel_set(z, mask, targeted) * _signed_normalized_logit(z, mask)).flatten(1).mean(1)


def _signed_normalized_logit(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(2M − 1)·ẑ per pixel with ẑ = z/√(1 + z²) (:func:`masked_logit_loss`). (B, 1, H, W)."""
    return (2.0 * mask - 1.0) * (z / torch.sqrt(1.0 + z * z))


def dag_loss(z: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """DAG (Xie et al., ICCV 2017): Σ_set (f_adv − f_ref) of the class logits, Σ_set (1 − 2M)·z here."""
    return (pixel_set(z, mask, targeted) * (1.0 - 2.0 * mask) * z).flatten(1).sum(1)


def asma_loss(z: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """ASMA's prediction objective (Ozbulak, Van Messem, De Neve, MICCAI 2019): the probability of the
    wanted class over the pixel set, Σ_set (1 − 2M)·P up to a constant (P from logits)."""
    p, _ = probabilities(z)
    return (pixel_set(z, mask, targeted) * (1.0 - 2.0 * mask) * p).flatten(1).sum(1)


def normalized_logit_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SEA's normalised logit loss without its mask (Croce, Singh, Hein, ECCV 2024), binary form:
    −Σ (2M − 1)·ẑ/N over every pixel, ẑ = z/√(1 + z²); what SEA's protocol tracks for the masked one."""
    return -_signed_normalized_logit(z, mask).flatten(1).mean(1)


register("masked_logit", with_direction(masked_logit_loss), non_negative=False)
register("normalized_logit", on_logit(normalized_logit_loss), non_negative=False)
register("dag", with_direction(dag_loss), non_negative=False)
register("asma", with_direction(asma_loss), non_negative=False)
