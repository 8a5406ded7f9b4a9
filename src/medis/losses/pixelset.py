"""Pixel-set objectives of DAG and ASMA, binary case, per sample (sums over pixels, not means).

Both sum a per-pixel score over the pixels the attack has not yet won (:func:`medis.losses.sea.pixel_set`:
untargeted, pixels still predicted as their ground truth; targeted, pixels not yet predicted as
their target), in the engine's convention (the attack ASCENDS the loss against the ground truth and
DESCENDS it toward a target). The set carries no gradient and empties as the attack succeeds, so
the objective's gradient vanishes when every pixel is won.
"""

from __future__ import annotations

import torch

from medis.losses.sea import logits_of, pixel_set


def dag_loss(prob: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """DAG's objective (Xie et al., "Adversarial Examples for Semantic Segmentation and Object
    Detection", ICCV 2017): Σ_set (f_adv − f_ref) of the class logits, which for one logit z per
    pixel is Σ_set (1 − 2M)·z. (B, 1, H, W) x 2 -> (B,).
    """
    return (pixel_set(prob, mask, targeted) * (1.0 - 2.0 * mask) * logits_of(prob)).flatten(1).sum(1)


def asma_loss(prob: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """ASMA's prediction objective (Ozbulak, Van Messem, De Neve, "Impact of Adversarial Examples on
    Deep Learning Models for Biomedical Image Segmentation", MICCAI 2019, eq. 2): the probability of
    the wanted class summed over the pixel set. Up to a constant that carries no gradient this is
    Σ_set (1 − 2M)·P both ways (targeted: −Σ_set P(target class); untargeted: Σ_set P(other class)).
    The L2 penalty and the adaptive multiplier are in the ``asma`` update rule. (B,1,H,W)x2 -> (B,).
    """
    return (pixel_set(prob, mask, targeted) * (1.0 - 2.0 * mask) * prob).flatten(1).sum(1)
