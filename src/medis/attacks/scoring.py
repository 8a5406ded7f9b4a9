"""How a prediction is scored against a replica's reference, and how that score is judged.

- paper mode (the MedIS notebooks): the paper's 3-decimal two-class mIoU with the reference; the
  success rule reads it doubled for uniform (all-white / all-black) targets, as the paper reports
  them (docs/method.md, "Metrics");
- clean mode, untargeted: the two-class mIoU with the ground truth (the IoU of the one class present
  where the ground truth is uniform);
- clean mode, targeted: :func:`medis.metrics.segmentation.target_attainment` against the clean
  prediction: of each side of the target (the pixels that must become lesion, those that must
  become background), the share reached net of those broken, and the least of the two. The two-class
  mIoU with a mostly-background target is dominated by the background, which the clean prediction
  already matches: that score credited "successes" to images the attack never changed, and a share
  over both sides together credited erasure alone toward targets that need new lesion.

In clean mode an image whose clean prediction already satisfies the success rule (a clean failure,
untargeted; a prediction already at its target) is *set aside*: it is not attacked, its records say
so, and the attack success rate is taken over the images the attack had to work on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medis.attacks.criteria import Criteria
from medis.attacks.targets import TargetKind
from medis.metrics.segmentation import paper_miou, target_attainment, target_score

__all__ = ["Scorer"]


@dataclass(frozen=True)
class Scorer:
    """The score of predictions against references (module docstring).

    Attributes:
        mode: ``clean`` or ``paper``.
        target: the target kind.
        criteria: the stop and success rules the scores are judged by.
    """

    mode: str
    target: TargetKind
    criteria: Criteria

    @property
    def needs_clean(self) -> bool:
        """Whether scores need the clean image's prediction (clean mode: set-aside and attainment)."""
        return self.mode == "clean"

    def __call__(self, pred: torch.Tensor, reference: torch.Tensor,
                 clean: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(recorded score, score the success rule reads), each (R,), of binary predictions.

        Args:
            pred: (R, 1, H, W) bool predictions.
            reference: (R, 1, H, W) ground truths (untargeted) or targets.
            clean: (R, 1, H, W) bool clean predictions of the same images (clean mode, targeted).
        """
        if self.mode == "paper":
            raw = paper_miou(pred, reference)
            return raw, raw * 2.0 if self.target.uniform else raw
        if not self.target.targeted:
            raw = target_score(pred, reference, "clean")
        else:
            if clean is None:
                raise ValueError("a clean-mode targeted score needs the clean predictions")
            raw = target_attainment(pred, reference, clean)
        return raw, raw
