"""ASMA's update: an adaptive multiplier times the gradient, minus the gradient of an L2 penalty.

Ozbulak, Van Messem, De Neve, "Impact of Adversarial Examples on Deep Learning Models for Biomedical
Image Segmentation", MICCAI 2019: ``x + τ_t·(d·g − 2λ(x − x0))`` with ``τ_t = β·IoU_t + τ`` growing
with the current overlap with the target (``−2λ(x − x0)`` is the gradient of −λ‖x − x0‖²). The paper
uses τ = 1e-7, β = 1e-6, λ = 1 over thousands of steps. Unbounded unless the budget has ``eps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from medis.attacks.budget import Budget, check_number
from medis.attacks.projection import per_sample
from medis.attacks.rules.base import State, StepInfo, UpdateRule


@dataclass(frozen=True)
class ASMA(UpdateRule):
    """Adaptive segmentation mask attack steps; ``tau``, ``beta``, ``l2`` are τ, β, λ."""

    name: ClassVar[str] = "asma"
    tau: float = 1e-7
    beta: float = 1e-6
    l2: float = 1.0

    def __post_init__(self) -> None:
        for key in ("tau", "beta", "l2"):
            check_number(getattr(self, key), f"attack.rule.{key}", low=0)

    def multiplier(self, score: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        """τ_t = β·IoU_t + τ per replica (R,): IoU with the target (targeted, d < 0) or, untargeted,
        1 − mIoU with the ground truth (the overlap with the flipped mask grows as it falls)."""
        progress = torch.where(direction < 0, score, 1.0 - score).nan_to_num(0.0)
        return self.beta * progress + self.tau

    def step(self, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
             info: StepInfo, budget: Budget) -> tuple[torch.Tensor, State]:
        multiplier = per_sample(self.multiplier(info.score, direction), x).to(x.dtype)
        ascent = per_sample(direction, x).to(grad.dtype) * grad - 2.0 * self.l2 * (x - x0)
        return x + multiplier * ascent, state
