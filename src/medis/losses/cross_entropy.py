"""Binary cross-entropy losses: on logits (the clean forms ``bce`` and ``focal``) and on probabilities
(the paper-mode BCE that the notebooks' BCE + Dice and exp-log losses read).

The MedIS notebooks compute their BCE on the fused probability map P (B, 1, H, W) (paper mode has
no fused logit): PyTorch's formula, whose logs are clamped at -100 and whose backward pass divides
by ``max(P(1-P), 1e-12)`` (:func:`bce_map_on_prob`). The clean forms compute it from logits
(:func:`medis.losses.logits.bce_map`), so that no gradient vanishes where P saturates.
"""

from __future__ import annotations

import torch

from medis.losses.base import on_logit, register
from medis.losses.logits import bce_map, probabilities, with_floor

__all__ = ["bce_loss", "bce_loss_on_prob", "bce_map_on_prob", "focal_loss"]


class _BinaryCrossEntropy(torch.autograd.Function):
    """``F.binary_cross_entropy(P, M, reduction="none")`` from vectorised tensor ops.

    PyTorch's CPU kernel evaluates one scalar ``log`` per pixel (about 10x slower than a vectorised
    ``torch.log`` over the map); this is the same formula, forward
    ``(M - 1)·max(log1p(-P), -100) - M·max(log P, -100)`` and backward
    ``(P - M) / max(P(1 - P), 1e-12)`` for P (and ``-logit(P)`` for M), equal to PyTorch's up to
    the last bit of a log. Unlike PyTorch it does not check that P is
    in [0, 1]: the callers pass probabilities.
    """

    @staticmethod
    def forward(ctx, prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # noqa: D102
        log_p = torch.log(prob).clamp_min_(-100.0)
        log_q = torch.log1p(-prob).clamp_min_(-100.0)
        ctx.save_for_backward(prob, mask)
        return (mask - 1.0) * log_q - mask * log_p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        prob, mask = ctx.saved_tensors
        grad_prob = grad_mask = None
        if ctx.needs_input_grad[0]:
            grad_prob = grad * (prob - mask) / ((1.0 - prob) * prob).clamp_min(1e-12)
        if ctx.needs_input_grad[1]:
            grad_mask = -grad * torch.logit(prob)
        return grad_prob, grad_mask


def bce_map_on_prob(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-pixel binary cross-entropy -[M log P + (1-M) log(1-P)], logs clamped at -100.

    For a binary M this is -log p_t with p_t = P where M = 1 else 1 - P. Computed in at least
    float32 and outside autocast, as PyTorch's ``binary_cross_entropy`` (same values and gradient,
    see :class:`_BinaryCrossEntropy`).

    Args:
        prob: (B, 1, H, W) probabilities P in [0, 1].
        mask: (B, 1, H, W) reference M.

    Returns:
        (B, 1, H, W) per-pixel loss.
    """
    dtype = torch.promote_types(prob.dtype, torch.float32)
    with torch.autocast(device_type=prob.device.type, enabled=False):
        return _BinaryCrossEntropy.apply(prob.to(dtype), mask.to(dtype))


def bce_loss_on_prob(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy, mean over each sample's pixels. (B,1,H,W), (B,1,H,W) -> (B,).

    The standard pixel-wise cross-entropy (e.g. Long, Shelhamer, Darrell, "Fully Convolutional
    Networks for Semantic Segmentation", CVPR 2015), binary case.
    """
    return bce_map_on_prob(prob, mask).flatten(1).mean(1)


def bce_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel BCE from logits (Long, Shelhamer, Darrell, CVPR 2015, binary case). (B,1,H,W) x2 -> (B,)."""
    return bce_map(z, mask).flatten(1).mean(1)


def focal_loss(z: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Focal loss (Lin et al., ICCV 2017), mean of −α_t(1 − p_t)^γ·log p_t with log p_t = −BCE, with
    the floor of :func:`~medis.losses.logits.with_floor` (at a confident pixel the focal term and its
    derivative underflow to exactly 0 in float32: about 1e-53 at z = 40). (B,)."""
    p, q = probabilities(z)
    fg = mask > 0.5
    miss = torch.where(fg, q, p)  # 1 − p_t, computed without rounding 1 − P
    alpha_t = torch.where(fg, torch.full_like(z, alpha), torch.full_like(z, 1.0 - alpha))
    return with_floor((alpha_t * miss ** gamma * bce_map(z, mask)).flatten(1).mean(1), z, mask)


register("bce", on_logit(bce_loss))
register("focal", on_logit(focal_loss))
