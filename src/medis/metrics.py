"""Segmentation metrics, batched on the device (no per-image Python loop, no sklearn).

Per-image overlap of binary masks, the ISIC challenge conventions included: an image whose ground
truth and prediction are both empty scores IoU = Dice = 1; the thresholded Jaccard of ISIC 2018 is
the IoU where it is >= 0.65 and 0 otherwise (Codella et al., "Skin Lesion Analysis Toward Melanoma
Detection 2018", arXiv:1902.03368).
"""

from __future__ import annotations

import torch

ISIC_JACCARD_THRESHOLD = 0.65


def _flat(mask: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape[0], -1).bool()


def iou_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Foreground IoU of binary masks, one value per image.

    Args:
        pred, target: (B, ...) masks, foreground where nonzero.

    Returns:
        (B,) float32; 1 where both masks are empty.
    """
    p, t = _flat(pred), _flat(target)
    inter = (p & t).sum(1).float()
    union = (p | t).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def dice_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice (F1) of binary masks, one value per image: (B, ...) -> (B,); 1 where both are empty."""
    p, t = _flat(pred), _flat(target)
    inter = (p & t).sum(1).float()
    total = (p.sum(1) + t.sum(1)).float()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


def thresholded_jaccard(iou: torch.Tensor, threshold: float = ISIC_JACCARD_THRESHOLD) -> torch.Tensor:
    """ISIC 2018's score: IoU where IoU >= threshold, else 0. (B,) -> (B,)."""
    return torch.where(iou >= threshold, iou, torch.zeros_like(iou))
