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

As an attack's surrogate (``structure``) the loss is summed over the victim's side outputs
(:func:`side_structure_loss`, PraNet's deep supervision): on the side logits in clean mode, on the
notebooks' min-max normalised side probabilities in paper mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medis.losses.base import LossContext, reference_of, register
from medis.losses.logits import bce_map, probabilities
from medis.models.frontend import VictimOutput

__all__ = ["BOX", "side_structure_loss", "structure_loss", "structure_weights"]

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
        stable: the BCE and σ(z) in the forms of :mod:`medis.losses.logits`, whose input
            gradients do not vanish where σ saturates (the clean-mode attack); the same values.

    Returns:
        (B,) loss per sample.
    """
    if weights is None:
        weights = structure_weights(mask)
    if stable:
        bce = bce_map(logits, mask)
    else:
        bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    if paper_bce:
        wbce = bce.mean(dim=(1, 2, 3))
    else:
        wbce = (weights * bce).sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3))
    prob = probabilities(logits)[0] if stable else torch.sigmoid(logits)
    inter = (prob * mask * weights).sum(dim=(1, 2, 3))
    union = ((prob + mask) * weights).sum(dim=(1, 2, 3))
    wiou = 1.0 - (inter + 1.0) / (union - inter + 1.0)
    return wbce + wiou


def side_structure_loss(outputs: VictimOutput, mask: torch.Tensor, paper: bool = False) -> torch.Tensor:
    """Σ_k structure_loss(z_k, M) over the K side outputs. (B,1,H,W) maps, mask (B,1,H,W) -> (B,).

    Fan et al., "PraNet: Parallel Reverse Attention Network for Polyp Segmentation", MICCAI 2020
    (deep supervision of every side output with weighted BCE + weighted IoU).

    Args:
        outputs: the victim's outputs; clean mode reads ``side_logits``, paper mode ``side_probs``.
        mask: (B, 1, H, W) reference M in {0, 1}.
        paper: the MedIS notebook form: the (min-max normalised) side probabilities are fed where
            logits belong, and PraNet's unweighted BCE term is kept (``paper_bce=True``); otherwise
            the side logits, in the saturation-safe form (``structure_loss(stable=True)``).
    """
    maps = outputs.side_probs if paper else outputs.side_logits
    if not maps:
        raise ValueError("structure loss needs at least one side output")
    mask = mask.to(maps[0].dtype)
    weights = structure_weights(mask)  # shared by every side output: it depends on the mask only
    return torch.stack([structure_loss(z, mask, paper_bce=paper, weights=weights, stable=not paper)
                        for z in maps]).sum(0)


def _structure(paper: bool):
    def loss(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
        return side_structure_loss(outputs, reference_of(outputs, reference), paper=paper)

    loss.__doc__ = side_structure_loss.__doc__
    return loss


register("structure", _structure(False), _structure(True))
