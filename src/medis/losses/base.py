"""What every surrogate loss is, and how a loss registers itself.

A loss maps the victim's outputs on n images and their references to one value per image:
``loss(outputs, reference, context) -> Tensor[n]``, never a batch mean. It is registered by name
with :func:`register`, in the module of its family (overlap, cross-entropy, pixel-weighted
cross-entropy, divergences, margins, structure, Lovász, exp-log, combined): ``losses=<name>``,
``losses=all`` and :func:`medis.losses.build_loss` find it without any other file. A loss has a
``clean`` form (on the fused logit: :mod:`medis.losses.logits`) and may have a ``paper`` form (the
MedIS notebooks', on the fused probability); without one, the clean form serves both modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from medis.errors import ConfigError
from medis.losses.logits import fused_logit
from medis.models.frontend import VictimOutput

__all__ = ["LOSSES", "LossContext", "LossFn", "LossSpec", "on_logit", "on_prob", "reference_of", "register",
           "with_direction"]

MODES = ("clean", "paper")


@dataclass(frozen=True)
class LossContext:
    """Where the attack stands when it evaluates a loss.

    Attributes:
        step: current iteration t (0-based).
        total_steps: number of iterations T.
        targeted: True when the attack DESCENDS the loss toward a target mask; False when it
            ASCENDS it away from the ground truth.
    """

    step: int = 0
    total_steps: int = 1
    targeted: bool = False


LossFn = Callable[[VictimOutput, torch.Tensor, LossContext], torch.Tensor]
"""(outputs, reference (B,1,H,W) in {0,1}, ctx) -> (B,), one value per sample."""

@dataclass(frozen=True)
class LossSpec:
    """A registered loss: its ``clean`` and ``paper`` forms, and whether its values are never negative
    (``False`` for the signed margins the attacker ascends; the property tests read it)."""

    clean: LossFn
    paper: LossFn
    non_negative: bool = True

    def form(self, mode: str) -> LossFn:
        """The form of ``mode`` (``clean`` or ``paper``)."""
        return self.paper if mode == "paper" else self.clean


LOSSES: dict[str, LossSpec] = {}
"""Every registered loss by name (:func:`register`)."""


def register(name: str, clean: LossFn, paper: LossFn | None = None, *, non_negative: bool = True) -> None:
    """Register the loss ``name`` with its clean form, its paper form (the clean one when ``None``) and
    whether it is never negative.

    Raises:
        ConfigError: ``name`` is registered already (two modules claim it).
    """
    if name in LOSSES:
        raise ConfigError(f"the loss {name!r} is registered twice")
    LOSSES[name] = LossSpec(clean, paper or clean, non_negative)


def reference_of(outputs: VictimOutput, reference: torch.Tensor) -> torch.Tensor:
    """The reference as a float mask of the prediction's dtype, after a shape check."""
    if tuple(reference.shape) != tuple(outputs.prob.shape):
        raise ValueError(f"reference shape {tuple(reference.shape)} != prediction shape {tuple(outputs.prob.shape)}")
    return reference.to(outputs.prob.dtype)


def on_prob(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> LossFn:
    """A loss of (P, M), the fused probability and the reference, as a :data:`LossFn`."""

    def loss(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
        return fn(outputs.prob, reference_of(outputs, reference))

    loss.__doc__ = fn.__doc__
    return loss


def on_logit(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> LossFn:
    """A loss of (z, M), the fused logit (:func:`~medis.losses.logits.fused_logit`) and the
    reference, as a :data:`LossFn`."""

    def loss(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
        return fn(fused_logit(outputs), reference_of(outputs, reference))

    loss.__doc__ = fn.__doc__
    return loss


def with_direction(fn: Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]) -> LossFn:
    """A loss of (z, M, targeted) as a :data:`LossFn` (its pixel set depends on the direction)."""

    def loss(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
        return fn(fused_logit(outputs), reference_of(outputs, reference), ctx.targeted)

    loss.__doc__ = fn.__doc__
    return loss
