"""MI-FGSM: sign steps along an accumulated, L1-normalised gradient.

Dong, Liao, Pang, Su, Zhu, Hu, Li, "Boosting Adversarial Attacks with Momentum", CVPR 2018:
``m ← μ·m + g/‖g‖₁``, ``x ← x + α·sign(d·m)``, projected by the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from medis.attacks.budget import Budget, check_number
from medis.attacks.projection import per_sample, per_sample_norm
from medis.attacks.rules.base import State, StepInfo, StepSize, UpdateRule


@dataclass(frozen=True)
class MIFGSM(StepSize, UpdateRule):
    """Momentum sign steps; ``momentum`` is μ (1.0 in the paper)."""

    name: ClassVar[str] = "mifgsm"
    momentum: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.momentum, "attack.rule.momentum", low=0)

    def init(self, x0: torch.Tensor, budget: Budget) -> State:
        return {"momentum": torch.zeros_like(x0)}

    def step(self, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
             info: StepInfo, budget: Budget) -> tuple[torch.Tensor, State]:
        d = per_sample(direction, x).to(grad.dtype)
        momentum = self.momentum * state["momentum"] + grad / per_sample_norm(grad, 1)
        moved = x + self.alpha(budget) * torch.sign(d * momentum)
        return moved, {"momentum": momentum}
