"""The losses of the attacks beyond MedIS, from logits (see :mod:`medis.losses.logit_forms` for why):
SegPGD, CosPGD, SEA's, PAdam's cosine loss, DAG and ASMA. Each takes (B, 1, H, W) logits z, the reference M in
{0, 1} and whether the attack is targeted, and returns (B,).

Several weigh the *pixel set*, the pixels the attack still has to win, computed without gradient at
every step: untargeted, the pixels still predicted as their ground truth, (z > 0) == M; targeted,
the pixels not yet predicted as their target.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medis.losses.logit_forms import bce_map, probabilities


def pixel_set(z: torch.Tensor, mask: torch.Tensor, targeted: bool) -> torch.Tensor:
    """(B, 1, H, W) float, 1 where the attack has not yet won the pixel (module docstring)."""
    with torch.no_grad():
        agree = (z > 0) == (mask > 0.5)
        return (~agree if targeted else agree).to(z.dtype)


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


def masked_logit_loss(z: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """SEA's masked normalised-logit loss, binary form: −Σ_set (2M − 1)·ẑ/N with ẑ = z/√(1 + z²).

    SEA normalises a pixel's logit vector to unit length; a binary map has one logit (two-class
    logits (0, z)), whose unit vector would only keep sign(z), so the vector (1, z) is normalised.
    """
    normalised = z / torch.sqrt(1.0 + z * z)
    return -(pixel_set(z, mask, targeted) * (2.0 * mask - 1.0) * normalised).flatten(1).mean(1)


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


def dag_loss(z: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """DAG (Xie et al., ICCV 2017): Σ_set (f_adv − f_ref) of the class logits, Σ_set (1 − 2M)·z here."""
    return (pixel_set(z, mask, targeted) * (1.0 - 2.0 * mask) * z).flatten(1).sum(1)


def asma_loss(z: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """ASMA's prediction objective (Ozbulak, Van Messem, De Neve, MICCAI 2019): the probability of the
    wanted class over the pixel set, Σ_set (1 − 2M)·P up to a constant (P from logits)."""
    p, _ = probabilities(z)
    return (pixel_set(z, mask, targeted) * (1.0 - 2.0 * mask) * p).flatten(1).sum(1)
