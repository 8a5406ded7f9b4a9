"""Surrogate and training losses, each computed per sample (``Tensor[B]``, never a batch mean)."""

from medis.losses.registry import LOSS_NAMES, PAPER_LOSSES, LossContext, LossFn, build_loss
from medis.losses.structure import structure_loss, structure_weights

__all__ = ["LOSS_NAMES", "PAPER_LOSSES", "LossContext", "LossFn", "build_loss", "structure_loss", "structure_weights"]
