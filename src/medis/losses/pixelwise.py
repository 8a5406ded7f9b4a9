"""Binary cross-entropy on probabilities, per pixel and per sample: the paper-mode forms.

The MedIS notebooks compute their BCE on the fused probability map P (B, 1, H, W) (paper mode has
no fused logit): PyTorch's formula, whose logs are clamped at -100 and whose backward pass divides
by ``max(P(1-P), 1e-12)``. Clean mode computes BCE from logits (:mod:`medis.losses.logit_forms`).
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
