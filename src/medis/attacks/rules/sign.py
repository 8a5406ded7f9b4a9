"""I-FGSM, MedIS's update rule: ``x + α·sign(d·g)``, projected by the budget (none in MedIS).

Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world", ICLR workshop 2017;
Shukla, Gupta, Gupta, MTAP 2023 take steps of α = 1/255 with no projection (the budget is implicit:
t·α after t steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from medis.attacks.budget import Budget
from medis.attacks.projection import per_sample
from medis.attacks.rules.base import State, StepInfo, StepSize, UpdateRule


@dataclass(frozen=True)
class SignStep(StepSize, UpdateRule):
    """Sign-gradient steps of ``step_size`` (or ``step_size_eps``·eps)."""

    name: ClassVar[str] = "sign"

    def step(self, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
             info: StepInfo, budget: Budget) -> tuple[torch.Tensor, State]:
        """See :meth:`UpdateRule.step`; every pixel with a nonzero gradient moves by exactly α."""
        d = per_sample(direction, x).to(grad.dtype)
        moved = torch.sign(grad).mul_(self.alpha(budget) * torch.sign(d)).add_(x)  # x + α·sign(d·g), one pass
        return moved, state
