"""Pixel-wise surrogate losses, each per sample: BCE, focal, SegPGD and CosPGD.

Every function takes the fused probability map ``prob`` P (B, 1, H, W) in [0, 1] and the
reference mask ``mask`` M (B, 1, H, W) in {0, 1}, and returns a (B,) tensor. The per-pixel
binary cross-entropy is PyTorch's formula, whose logs are clamped at -100 and whose backward pass
divides by ``max(P(1-P), 1e-12)``: finite values and gradients even for P exactly 0 or 1.
"""

from __future__ import annotations

import torch


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


def bce_map(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
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


def bce_loss(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy, mean over each sample's pixels. (B,1,H,W), (B,1,H,W) -> (B,).

    The standard pixel-wise cross-entropy (e.g. Long, Shelhamer, Darrell, "Fully Convolutional
    Networks for Semantic Segmentation", CVPR 2015), binary case.
    """
    return bce_map(prob, mask).flatten(1).mean(1)


def focal_loss(prob: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Focal loss, mean over pixels of -α_t (1 - p_t)^γ log p_t. (B,1,H,W), (B,1,H,W) -> (B,).

    Lin, Goyal, Girshick, He, Dollár, "Focal Loss for Dense Object Detection", ICCV 2017:
    p_t = P and α_t = α where M = 1, p_t = 1 - P and α_t = 1 - α where M = 0.

    Args:
        prob: (B, 1, H, W) probabilities P.
        mask: (B, 1, H, W) reference M in {0, 1}.
        gamma: focusing parameter γ.
        alpha: weight α of the foreground class.
    """
    fg = mask > 0.5
    p_t = torch.where(fg, prob, 1.0 - prob)
    alpha_t = torch.where(fg, torch.full_like(prob, alpha), torch.full_like(prob, 1.0 - alpha))
    return (alpha_t * (1.0 - p_t) ** gamma * bce_map(prob, mask)).flatten(1).mean(1)


def segpgd_loss(prob: torch.Tensor, mask: torch.Tensor, step: int, total_steps: int) -> torch.Tensor:
    """SegPGD loss for binary segmentation. (B,1,H,W), (B,1,H,W) -> (B,).

    Gu, Zhao, Tresp, Torr, "SegPGD: An Effective and Efficient Adversarial Attack for Evaluating
    and Boosting Segmentation Robustness", ECCV 2022: the per-pixel BCE is split into pixels that
    are currently right, ``(P > 0.5) == M``, and wrong; with λ = t / (2T),

        loss = ((1 - λ) Σ_right BCE + λ Σ_wrong BCE) / N        (N = pixels per image).

    The right/wrong split carries no gradient.

    Args:
        prob: (B, 1, H, W) probabilities P.
        mask: (B, 1, H, W) reference M in {0, 1}.
        step: current iteration t (0-based).
        total_steps: number of iterations T (values below 1 count as 1).
    """
    lam = float(step) / (2.0 * max(int(total_steps), 1))
    with torch.no_grad():
        right = ((prob > 0.5) == (mask > 0.5)).to(prob.dtype)
    weight = (1.0 - lam) * right + lam * (1.0 - right)
    return (weight * bce_map(prob, mask)).flatten(1).mean(1)


def cospgd_loss(prob: torch.Tensor, mask: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """CosPGD loss for binary segmentation. (B,1,H,W), (B,1,H,W) -> (B,).

    Agnihotri, Jung, Keuper, "CosPGD: an efficient white-box adversarial attack for pixel-wise
    prediction tasks", ICML 2024: the per-pixel BCE scaled by the cosine similarity between the
    prediction (P, 1 - P) and the reference (M, 1 - M), computed without gradient; the weight is
    cos for an untargeted attack and 1 - cos for a targeted one; mean over pixels.

    Args:
        prob: (B, 1, H, W) probabilities P.
        mask: (B, 1, H, W) reference M in {0, 1}.
        targeted: weight 1 - cos instead of cos.
    """
    with torch.no_grad():
        dot = prob * mask + (1.0 - prob) * (1.0 - mask)
        norm_p = torch.sqrt(prob ** 2 + (1.0 - prob) ** 2)  # >= 1/sqrt(2): never 0
        norm_m = torch.sqrt(mask ** 2 + (1.0 - mask) ** 2)
        cos = dot / (norm_p * norm_m)
        weight = 1.0 - cos if targeted else cos
    return (weight * bce_map(prob, mask)).flatten(1).mean(1)
