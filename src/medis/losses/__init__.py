"""Surrogate and training losses, each computed per sample (``Tensor[B]``, never a batch mean)."""

from medis.losses.structure import structure_loss, structure_weights

__all__ = ["structure_loss", "structure_weights"]
