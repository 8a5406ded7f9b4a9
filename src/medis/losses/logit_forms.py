"""Clean-mode forms of the surrogate losses, computed from logits so that no gradient dies.

A probability saturates: in float32 sigmoid(z) is exactly 1 for z > ~17, and a loss written on P
(BCE on probabilities, logit(P) of a clamped P) then has exactly zero input gradient at the
confident pixels an attacker must flip. Here every loss reads the victim's fused logit z
(:attr:`~medis.models.frontend.VictimOutput.logit`; ``logit(P)`` of a clamped P where the victim has
none) and builds what it needs stably:

- P = exp(−softplus(−z)) and 1 − P = exp(−softplus(z)): the same values as sigmoid, but their
  derivatives P·σ(−z) and −(1−P)·σ(z) stay non-zero down to ~1e-38;
- the per-pixel BCE is softplus(−z) where M = 1 and softplus(z) where M = 0, whose derivative
  −σ(−z) / σ(z) is the mathematically exact one instead of σ(z) − M rounded to 0;
- overlap losses (Dice, log-cosh Dice, Tversky, the Dice part of BCE+Dice and exp-log) are
  constant in P when the reference is empty (2ΣPM/(ΣP+ΣM) = 0 for every P), so toward the all-black
  target they are computed on the complement class (background), where they measure the same
  agreement and have a gradient (the paper forms keep the original);
- the Lovász hinge uses Berman et al.'s smooth variant elu(e) + 1 of the errors (their public code),
  which, unlike relu(e), has a gradient at pixels already beyond the margin, and the complement
  class for an empty reference.

Every function maps (B, 1, H, W) logits and a (B, 1, H, W) reference in {0, 1} to (B,).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medis.losses.lovasz import lovasz_grad
from medis.losses.overlap import safe_ratio
from medis.models.frontend import VictimOutput

LOGIT_EPS = 1e-6
"""A victim without a fused logit (the paper fusion) gives ``logit(P)`` of P clamped to [eps, 1 − eps]."""


def fused_logit(outputs: VictimOutput) -> torch.Tensor:
    """The fused logit z (B, 1, H, W): the victim's own, else logit(P) of a clamped P."""
    if outputs.logit is not None:
        return outputs.logit
    return torch.logit(outputs.prob, eps=LOGIT_EPS)


def probabilities(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, 1 − P) from logits, each with a non-vanishing derivative (module docstring)."""
    return torch.exp(-F.softplus(-z)), torch.exp(-F.softplus(z))


def bce_map(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-pixel BCE from logits: M·softplus(−z) + (1 − M)·softplus(z). (B,1,H,W) x2 -> (B,1,H,W)."""
    return mask * F.softplus(-z) + (1.0 - mask) * F.softplus(z)


def _empty(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1) bool: the reference has no foreground pixel."""
    return (mask.flatten(1).sum(1) == 0).view(-1, 1, 1, 1)


def _class_maps(z: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, 1 − P, M) of the foreground, or of the background where the reference is empty."""
    p, q = probabilities(z)
    empty = _empty(mask)
    return torch.where(empty, q, p), torch.where(empty, p, q), torch.where(empty, 1.0 - mask, mask)


def dice_distance(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − D = (Σ P·(1 − M) + Σ (1 − P)·M) / (ΣP + ΣM) of the foreground (the background for an empty
    reference), 0 when both sums are 0. (B,). Written without the subtraction 1 − D, which in float32
    rounds to 0 near a perfect prediction and takes the gradient of log-cosh Dice with it."""
    prob, miss, ref = _class_maps(z, mask)
    errors = (prob * (1.0 - ref)).flatten(1).sum(1) + (miss * ref).flatten(1).sum(1)
    return safe_ratio(errors, prob.flatten(1).sum(1) + ref.flatten(1).sum(1), 0.0)


def soft_dice(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Soft Dice 2Σ(P·M)/(ΣP + ΣM) of the foreground (the background for an empty reference). (B,)."""
    return 1.0 - dice_distance(z, mask)


def dice_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − D (Milletari, Navab, Ahmadi, "V-Net", 3DV 2016)."""
    return dice_distance(z, mask)


def logcosh_dice_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log(cosh(1 − D)) (Jadon, IEEE CIBCB 2020); 1 − D is in [0, 1], so cosh cannot overflow, and
    its derivative tanh(1 − D) stays non-zero near a perfect prediction."""
    return torch.log(torch.cosh(dice_distance(z, mask)))


def bce_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel BCE (Long, Shelhamer, Darrell, CVPR 2015, binary case)."""
    return bce_map(z, mask).flatten(1).mean(1)


def bce_dice_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE + (1 − D) (Jadon, IEEE CIBCB 2020)."""
    return bce_loss(z, mask) + dice_loss(z, mask)


def tversky_loss(z: torch.Tensor, mask: torch.Tensor, alpha: float = 0.3, beta: float = 0.7) -> torch.Tensor:
    """1 − TP/(TP + α·FP + β·FN) = (α·FP + β·FN)/(TP + α·FP + β·FN) (Salehi et al., MLMI 2017), of the
    background for an empty reference; 0 when TP = FP = FN = 0."""
    prob, miss, ref = _class_maps(z, mask)
    tp = (prob * ref).flatten(1).sum(1)
    errors = alpha * (prob * (1.0 - ref)).flatten(1).sum(1) + beta * (miss * ref).flatten(1).sum(1)
    return safe_ratio(errors, tp + errors, 0.0)


def exp_log_loss(z: torch.Tensor, mask: torch.Tensor, w_dice: float = 0.8, w_cross: float = 0.2,
                 gamma: float = 0.3, base_eps: float = 1e-6) -> torch.Tensor:
    """Wong et al.'s exp-log loss (MICCAI 2018): w_dice·(−ln D)^γ + w_cross·mean((−ln p_t)^γ), with
    −ln p_t the per-pixel BCE from logits; −ln D = −log1p(−(1 − D)) with D ≥ 1e-7. x^γ has no derivative at 0 for
    γ < 1, so each base is shifted by ``base_eps`` ((x + eps)^γ): unlike a clamp, the shift keeps a
    gradient where the prediction is already perfect."""
    distance = dice_distance(z, mask)
    dice_term = (-torch.log1p(-distance.clamp_max(1.0 - 1e-7)) + base_eps) ** gamma
    cross_term = ((bce_map(z, mask) + base_eps) ** gamma).flatten(1).mean(1)
    return w_dice * dice_term + w_cross * cross_term


def focal_loss(z: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Focal loss (Lin et al., ICCV 2017), mean of −α_t(1 − p_t)^γ·log p_t with log p_t = −BCE."""
    p, q = probabilities(z)
    fg = mask > 0.5
    miss = torch.where(fg, q, p)  # 1 − p_t, computed without rounding 1 − P
    alpha_t = torch.where(fg, torch.full_like(z, alpha), torch.full_like(z, 1.0 - alpha))
    return (alpha_t * miss ** gamma * bce_map(z, mask)).flatten(1).mean(1)


def lovasz_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Lovász hinge per image (Berman, Rannen Triki, Blaschko, CVPR 2018) with the smooth elu(e) + 1
    of the errors, on the background class (labels and logits flipped) for an empty reference."""
    empty = _empty(mask)
    labels = torch.where(empty, 1.0 - mask, mask).flatten(1).to(z.dtype)
    logits = torch.where(empty, -z, z).flatten(1)
    errors = 1.0 - logits * (2.0 * labels - 1.0)
    errors_sorted, order = torch.sort(errors, dim=-1, descending=True)
    grad = lovasz_grad(torch.gather(labels, -1, order))
    return ((F.elu(errors_sorted) + 1.0) * grad).sum(-1)
