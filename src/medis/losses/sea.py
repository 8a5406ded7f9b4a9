"""The segmentation losses of SEA for APGD, binary case, per sample.

Croce, Singh, Hein, "Towards Reliable Evaluation and Fast Training of Robust Semantic Segmentation
Models", ECCV 2024 (SEA) attack with APGD under several losses that stay informative once most
pixels are already wrong; their ensemble, not any single one, gives a reliable worst case. Each
function takes the probability map P (B, 1, H, W), the reference M (B, 1, H, W) in {0, 1} and
whether the attack is targeted, and returns (B,), averaged over each image's N pixels.

The *pixel set* is the set of pixels the attack still has to win: untargeted, those still predicted
as their ground truth, ``(P > 0.5) == M``; targeted, those not yet predicted as their target. It is
computed without gradient at every step, so it shrinks as the attack progresses.
"""

from __future__ import annotations

import torch

from medis.losses.pixelwise import bce_map

LOGIT_EPS = 1e-6
"""Probabilities are clamped to [eps, 1 - eps] before taking logits (finite at P = 0 or 1)."""


def pixel_set(prob: torch.Tensor, mask: torch.Tensor, targeted: bool) -> torch.Tensor:
    """(B, 1, H, W) float, 1 where the attack has not yet won the pixel (see the module docstring)."""
    with torch.no_grad():
        agree = (prob > 0.5) == (mask > 0.5)
        return (~agree if targeted else agree).to(prob.dtype)


def logits_of(prob: torch.Tensor) -> torch.Tensor:
    """The logit log(P / (1 - P)) of the fused probability, P clamped to [1e-6, 1 - 1e-6]. Same shape."""
    return torch.logit(prob, eps=LOGIT_EPS)


def masked_bce_loss(prob: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """SEA's masked cross-entropy: BCE summed over the pixel set only, divided by N. (B,)x2 -> (B,).

    Pixels already won stop contributing, so the gradient is not spent pushing them further.
    """
    return (pixel_set(prob, mask, targeted) * bce_map(prob, mask)).flatten(1).mean(1)


def js_divergence_loss(prob: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """SEA's Jensen-Shannon divergence between the prediction (P, 1 - P) and the one-hot reference
    (M, 1 - M), mean over pixels; bounded by log 2, so saturated pixels cannot dominate. (B,)x2 -> (B,).

    JS(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q) / 2, with 0 log 0 = 0; P is clamped to
    [1e-6, 1 - 1e-6] so that the gradient of p log p stays finite at P = 0 or 1.
    """
    dtype = torch.promote_types(prob.dtype, torch.float32)
    prob = prob.to(dtype).clamp(LOGIT_EPS, 1.0 - LOGIT_EPS)
    p = torch.cat([prob, 1.0 - prob], dim=1)
    q = torch.cat([mask, 1.0 - mask], dim=1).to(dtype)
    m = 0.5 * (p + q)
    kl_p = torch.special.xlogy(p, p) - torch.special.xlogy(p, m)
    kl_q = torch.special.xlogy(q, q) - torch.special.xlogy(q, m)
    return (0.5 * (kl_p + kl_q)).sum(1).flatten(1).mean(1)


def masked_logit_loss(prob: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """SEA's masked normalised-logit (spherical) loss, binary form. (B,)x2 -> (B,).

    SEA scores each pixel set pixel by the reference class's logit after normalising the logit
    vector to unit length. A binary map has one logit z (two-class logits (0, z)), whose unit vector
    would only keep sign(z); we normalise the vector (1, z) instead, ẑ = z / sqrt(1 + z²) in (−1, 1),
    which keeps each pixel's share bounded as SEA intends. The loss is the negative margin toward
    the reference, −Σ_set (2M − 1)·ẑ / N: ascending it (untargeted) pushes still-correct pixels
    toward the other class; descending it (targeted) pulls the pixels not yet at the target.
    """
    z = logits_of(prob)
    normalised = z / torch.sqrt(1.0 + z * z)
    return -(pixel_set(prob, mask, targeted) * (2.0 * mask - 1.0) * normalised).flatten(1).mean(1)
