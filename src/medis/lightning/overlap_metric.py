"""Per-image overlap scores as a torchmetrics ``Metric`` (synchronised across DDP processes)."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from medis.metrics.segmentation import dice_per_image, iou_per_image, thresholded_jaccard


class PerImageOverlap(Metric):
    """Macro averages over images of Dice, IoU and the ISIC thresholded Jaccard of binary masks.

    ``update(pred, target)`` takes (B, 1, H, W) masks (foreground where nonzero);
    ``compute()`` returns ``{"dice", "iou", "jaccard_thresholded"}`` means over all images seen.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("dice", "iou", "jaccard_thresholded", "count"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        iou = iou_per_image(pred, target)
        self.dice += dice_per_image(pred, target).double().sum()
        self.iou += iou.double().sum()
        self.jaccard_thresholded += thresholded_jaccard(iou).double().sum()
        self.count += iou.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count.clamp_min(1)
        return {"dice": (self.dice / count).float(), "iou": (self.iou / count).float(),
                "jaccard_thresholded": (self.jaccard_thresholded / count).float()}
