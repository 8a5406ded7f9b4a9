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

import medis.losses.logit_forms as logit_forms

BOX = 31
"""Side of PraNet's square averaging window."""


def structure_weights(mask: torch.Tensor) -> torch.Tensor:
    """Boundary weights 1 + 5|avgpool31(M) - M|. (B, 1, H, W) -> (B, 1, H, W).

    ``count_include_pad=True`` (PyTorch's default, as in PraNet): near the border the box mean
    counts the zero padding, i.e. it is the box SUM over the zero-padded mask divided by 31².
    The box sums come from running sums (a summed-area table: one cumulative sum along the rows,
    one along the columns, then differences 31 apart), in float64, so they are exact for binary
    masks and within rounding of the pooled mean for soft ones; five times faster than
    ``avg_pool2d`` on the CPU.
    """
    pad = BOX // 2
    sums = F.pad(mask.to(torch.float64), (pad + 1, pad, pad + 1, pad))  # a leading zero for the differences
    running = sums.cumsum(-1)
    sums = running[..., BOX:] - running[..., :-BOX]
    running = sums.cumsum(-2)
    sums = running[..., BOX:, :] - running[..., :-BOX, :]
    return 1.0 + 5.0 * torch.abs(sums.to(mask.dtype) / (BOX * BOX) - mask)


def structure_loss(logits: torch.Tensor, mask: torch.Tensor, paper_bce: bool = False,
                   weights: torch.Tensor | None = None, stable: bool = False) -> torch.Tensor:
    """Weighted BCE + weighted IoU, per sample.

    Args:
        logits: (B, 1, H, W) logits z (PraNet's paper-mode attack feeds probabilities here).
        mask: (B, 1, H, W) reference M in [0, 1] (soft masks allowed, e.g. after bilinear resizing).
        paper_bce: reproduce PraNet's unweighted BCE term (see the module docstring).
        weights: :func:`structure_weights` of ``mask`` when the caller already has them (they
            depend on the mask only, so several side outputs can share them).
        stable: the BCE and σ(z) in the forms of :mod:`medis.losses.logit_forms`, whose input
            gradients do not vanish where σ saturates (the clean-mode attack); the same values.

    Returns:
        (B,) loss per sample.
    """
    if weights is None:
        weights = structure_weights(mask)
    if stable:
        bce = logit_forms.bce_map(logits, mask)
    else:
        bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    if paper_bce:
        wbce = bce.mean(dim=(1, 2, 3))
    else:
        wbce = (weights * bce).sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3))
    prob = logit_forms.probabilities(logits)[0] if stable else torch.sigmoid(logits)
    inter = (prob * mask * weights).sum(dim=(1, 2, 3))
    union = ((prob + mask) * weights).sum(dim=(1, 2, 3))
    wiou = 1.0 - (inter + 1.0) / (union - inter + 1.0)
    return wbce + wiou
