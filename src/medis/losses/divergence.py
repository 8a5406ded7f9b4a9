"""Divergence losses between the predicted class distribution (P, 1 − P) of each pixel and the
reference's one-hot (M, 1 − M): SEA's Jensen–Shannon divergence and PAdam's cosine loss. Each takes
(B, 1, H, W) logits z and the reference M in {0, 1} (and whether the attack is targeted, which the
divergence ignores) and returns the pixel mean, (B,).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medis.losses.base import on_logit, register, with_direction
from medis.losses.logits import probabilities

__all__ = ["cosine_loss", "js_divergence_loss"]


def js_divergence_loss(z: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """SEA's Jensen–Shannon divergence between (P, 1 − P) and the one-hot (M, 1 − M), mean over pixels.

    With u the probability of the reference's class and v = 1 − u (both from logits), the divergence
    of a binary pixel is ½[u·log(2u/(1 + u)) + v·log 2] + ½·log(2/(1 + u)) (0·log 0 = 0), bounded by
    log 2.
    """
    p, q = probabilities(z)
    fg = mask > 0.5
    u = torch.where(fg, p, q)
    v = torch.where(fg, q, p)
    log_u = torch.where(fg, -F.softplus(-z), -F.softplus(z))
    log_one_plus_u = torch.log1p(u)
    js = 0.5 * (u * (math.log(2.0) + log_u - log_one_plus_u) + v * math.log(2.0)) \
        + 0.5 * (math.log(2.0) - log_one_plus_u)
    return js.flatten(1).mean(1)


def cosine_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The cosine loss of Halmosi, Mohos, Jelasity (ECCV 2024), binary form: the pixel mean of
    1 − cos(s, e_M), e_M the one-hot reference and s = (log(1 − P), log P) the two-class scores.

    The authors take s as the class logits; a binary map has one logit, and any two-class logits
    made from it ((0, z), (−z/2, z/2)) give a cosine that depends on sign(z) alone, hence no
    gradient. Log-probabilities are not shift-invariant: 1 − cos = 1 − log P_M / ‖s‖ runs from 1
    (the pixel confidently right) to 2 (confidently wrong), and its gradient is that of a pixel's
    own confidence, like the cross-entropy's. ‖s‖ >= √2·log 2, so the division is safe.
    """
    log_p, log_q = -F.softplus(-z), -F.softplus(z)
    own = torch.where(mask > 0.5, log_p, log_q)
    cos = own / torch.sqrt(log_p * log_p + log_q * log_q)
    return (1.0 - cos).flatten(1).mean(1)


register("js", with_direction(js_divergence_loss))
register("cosine", on_logit(cosine_loss))
