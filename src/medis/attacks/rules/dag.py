"""DAG's update: the step normalised by its L∞ norm, ``x + γ·d·g/‖g‖∞``.

Xie, Wang, Zhang, Zhou, Xie, Yuille, "Adversarial Examples for Semantic Segmentation and Object
Detection", ICCV 2017 (γ = 0.5 on the 0-255 scale). Unbounded unless the budget has ``eps``. With
the ``dag`` loss the gradient comes from the pixels not yet flipped, so the step vanishes once that
set is empty; a replica whose gradient is zero stays where it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from medis.attacks.budget import Budget
from medis.attacks.projection import per_sample
from medis.attacks.rules.base import State, StepInfo, StepSize, UpdateRule


@dataclass(frozen=True)
class DAG(StepSize, UpdateRule):
    """L∞-normalised gradient steps of length ``step_size`` (γ)."""

    name: ClassVar[str] = "dag"

    def step(self, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
             info: StepInfo, budget: Budget) -> tuple[torch.Tensor, State]:
        scale = grad.flatten(1).abs().amax(1).clamp_min(1e-12)
        moved = x + self.alpha(budget) * per_sample(direction, x) * grad / per_sample(scale, x)
        return moved, state
