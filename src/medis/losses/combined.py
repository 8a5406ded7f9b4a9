"""MedIS's combined loss: 0.21 structure + 0.18 log-cosh Dice + 0.20 BCE + Dice + 0.15 exp-log
+ 0.26 Lovász (Shukla, Gupta, Gupta, Multimedia Tools and Applications 2023), per sample, in the
mode's forms of its parts."""

from __future__ import annotations

from collections.abc import Mapping

import torch

import medis.losses.explog  # noqa: F401  (registers the parts before they are read)
import medis.losses.lovasz  # noqa: F401
import medis.losses.overlap  # noqa: F401
import medis.losses.structure  # noqa: F401
from medis.losses.base import LOSSES, LossContext, LossFn, register
from medis.models.frontend import VictimOutput

__all__ = ["COMBINED_WEIGHTS"]

COMBINED_WEIGHTS: Mapping[str, float] = {
    "structure": 0.21, "logcosh_dice": 0.18, "bce_dice": 0.20, "exp_log": 0.15, "lovasz": 0.26}
"""Weights of the MedIS combined loss (docs/method.md)."""


def _combined(mode: str) -> LossFn:
    parts = [(weight, LOSSES[name].form(mode)) for name, weight in COMBINED_WEIGHTS.items()]

    def loss(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
        """MedIS combined loss 0.21 structure + 0.18 logcosh_dice + 0.20 bce_dice + 0.15 exp_log
        + 0.26 lovasz (Shukla, Gupta, Gupta, Multimedia Tools and Applications 2023), per sample."""
        return sum(weight * fn(outputs, reference, ctx) for weight, fn in parts)

    return loss


register("combined", _combined("clean"), _combined("paper"))
