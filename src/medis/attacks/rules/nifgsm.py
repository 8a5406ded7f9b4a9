"""NI-FGSM: momentum sign steps whose gradient is taken at a Nesterov look-ahead point.

Lin, Song, He, Wang, Hopcroft, "Nesterov Accelerated Gradient and Scale Invariance for Adversarial
Attacks", ICLR 2020 (public code: JHL-HUST/SI-NI-FGSM). With f the objective the attacker ascends
(``d · loss``: the loss untargeted, its negative targeted), μ the momentum, α the step and g the
accumulated gradient (zero at the start):

- look-ahead point: ``x_nes = x + α·μ·g`` (the gradient point; not projected, as in the paper);
- ``g ← μ·g + ∇f(x_nes) / mean|∇f(x_nes)|``;
- ``x ← x + α·sign(g)``, projected onto the budget.

The normalisation is the authors' code's (the mean absolute value per image, where the paper writes
the L1 norm): it makes the look-ahead a step of about α·μ per pixel, as the method intends; under
the L1 norm it would vanish on images of many pixels. The score recorded at each step is the
iterate's, not the look-ahead point's, so each step costs one forward pass more than MI-FGSM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from medis.attacks.budget import Budget
from medis.attacks.projection import per_sample
from medis.attacks.rules.base import State, StepInfo
from medis.attacks.rules.mifgsm import MIFGSM

__all__ = ["NIFGSM"]


@dataclass(frozen=True)
class NIFGSM(MIFGSM):
    """Nesterov momentum sign steps (module docstring); ``momentum`` is μ (1.0 in the paper). MI-FGSM's
    parameters and state, the gradient taken at the look-ahead point."""

    name: ClassVar[str] = "nifgsm"

    def gradient_point(self, x: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
                       budget: Budget) -> torch.Tensor:
        """The look-ahead point ``x + α·μ·g`` (R, C, H, W)."""
        return x + (self.alpha(budget) * self.momentum) * state["momentum"].to(x.dtype)

    def step(self, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
             info: StepInfo, budget: Budget) -> tuple[torch.Tensor, State]:
        """``g ← μ·g + ∇f/mean|∇f|`` with ``grad`` taken at the look-ahead point, then ``x + α·sign(g)``."""
        ascent = per_sample(direction, grad).to(grad.dtype) * grad
        scale = per_sample(ascent.flatten(1).abs().mean(1).clamp_min(1e-12), ascent)
        momentum = self.momentum * state["momentum"] + ascent / scale
        return x + self.alpha(budget) * torch.sign(momentum), {"momentum": momentum}
