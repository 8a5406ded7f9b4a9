"""PraNet's "structure loss": weighted BCE + weighted IoU with boundary-emphasis weights
(Fan et al., "PraNet: Parallel Reverse Attention Network for Polyp Segmentation", MICCAI 2020;
the weighting follows Wei, Wang, Huang, "F3Net: Fusion, Feedback and Focus for Salient Object
Detection", AAAI 2020).

    w    = 1 + 5 |avgpool31(M) - M|                       (31x31 box, stride 1, padding 15)
    wBCE = Σ w·BCE_with_logits(z, M) / Σ w
    wIoU = 1 - (Σ w·σ(z)·M + 1) / (Σ w·(σ(z) + M) - Σ w·σ(z)·M + 1)

PraNet's own code passes ``reduce='none'`` to ``binary_cross_entropy_with_logits``, a legacy
argument that PyTorch reads as "reduce", so its BCE term is the plain mean and the weights cancel
out of it (``paper_bce=True`` reproduces that); by default the weights are really applied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def structure_weights(mask: torch.Tensor) -> torch.Tensor:
    """Boundary weights 1 + 5|avgpool31(M) - M|. (B, 1, H, W) -> (B, 1, H, W).

    ``count_include_pad=True`` (PyTorch's default, as in PraNet): near the border the box mean
    counts the zero padding. The 31x31 box is applied as a 1x31 then a 31x1 box (the same mean,
    with zero padding counted, up to float rounding), 15 times fewer operations.
    """
    rows = F.avg_pool2d(mask, kernel_size=(1, 31), stride=1, padding=(0, 15))
    box = F.avg_pool2d(rows, kernel_size=(31, 1), stride=1, padding=(15, 0))
    return 1.0 + 5.0 * torch.abs(box - mask)


def structure_loss(logits: torch.Tensor, mask: torch.Tensor, paper_bce: bool = False,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted BCE + weighted IoU, per sample.

    Args:
        logits: (B, 1, H, W) logits z (PraNet's paper-mode attack feeds probabilities here).
        mask: (B, 1, H, W) reference M in [0, 1] (soft masks allowed, e.g. after bilinear resizing).
        paper_bce: reproduce PraNet's unweighted BCE term (see the module docstring).
        weights: :func:`structure_weights` of ``mask`` when the caller already has them (they
            depend on the mask only, so several side outputs can share them).

    Returns:
        (B,) loss per sample.
    """
    if weights is None:
        weights = structure_weights(mask)
    bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    if paper_bce:
        wbce = bce.mean(dim=(1, 2, 3))
    else:
        wbce = (weights * bce).sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3))
    prob = torch.sigmoid(logits)
    inter = (prob * mask * weights).sum(dim=(1, 2, 3))
    union = ((prob + mask) * weights).sum(dim=(1, 2, 3))
    wiou = 1.0 - (inter + 1.0) / (union - inter + 1.0)
    return wbce + wiou
