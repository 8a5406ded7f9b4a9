"""Normalised L2 steps: ``x + α·d·g/‖g‖₂``, projected onto the budget (an L2 ball: ``attack.budget.norm: l2``).

The L2 version of PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from medis.attacks.budget import Budget
from medis.attacks.projection import per_sample, per_sample_norm
from medis.attacks.rules.base import State, StepInfo, StepSize, UpdateRule


@dataclass(frozen=True)
class L2Step(StepSize, UpdateRule):
    """Steps of L2 length α along the gradient (needs ``attack.budget.eps``)."""

    name: ClassVar[str] = "l2"
    needs_budget: ClassVar[bool] = True

    def step(self, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
             info: StepInfo, budget: Budget) -> tuple[torch.Tensor, State]:
        d = per_sample(direction, x).to(grad.dtype)
        moved = x + self.alpha(budget) * d * grad / per_sample_norm(grad, 2)
        return moved, state
