"""Surrogate and training losses, each computed per sample (``Tensor[B]``, never a batch mean)."""

from medis.losses.registry import (
           LOSS_NAMES,
           LOSS_SETS,
           PAPER_LOSSES,
           SEA_LOSSES,
           LossContext,
           LossFn,
           build_loss,
           loss_set,
)
from medis.losses.structure import structure_loss, structure_weights

__all__ = ["LOSS_NAMES", "LOSS_SETS", "PAPER_LOSSES", "SEA_LOSSES", "LossContext", "LossFn", "build_loss", "loss_set",
           "structure_loss", "structure_weights"]
