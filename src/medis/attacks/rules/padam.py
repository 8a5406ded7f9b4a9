"""PAdam: projected Adam with AMSGrad on the input, the attack of Halmosi, Mohos and Jelasity.

Halmosi, Mohos, Jelasity, "Evaluating the Adversarial Robustness of Semantic Segmentation: Trying
Harder Pays Off", ECCV 2024 (public code: szegedai/Robust-Segmentation-Evaluation). The perturbation
is a parameter optimised by Adam with the AMSGrad correction toward a higher attack objective, and
projected onto the ε-ball and the image range after every step. With f the objective the attacker
ascends (``d · loss``), g = ∇f at the current image and t the update's number (1, 2, ...):

- m ← β₁·m + (1 − β₁)·g, v ← β₂·v + (1 − β₂)·g², v̂ ← max(v̂, v) (AMSGrad);
- x ← P(x + η · (m / (1 − β₁ᵗ)) / (√v̂ / √(1 − β₂ᵗ) + ε_Adam)),

the bias-corrected step of PyTorch's ``Adam(amsgrad=True)``, with the raw gradient (no sign), a
constant step η = 2/255 (``step_size``), β = (0.9, 0.999), ε_Adam = 1e-8, 200 steps from a uniform
random start in the ball (``conf/attack/padam.yaml``). The authors' objective is the batch mean of
the pixel losses; here every replica's loss is its own image's pixel mean, so each replica runs the
authors' attack on a batch of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from medis.attacks.budget import Budget, check_number
from medis.attacks.projection import per_sample
from medis.attacks.rules.base import State, StepInfo, StepSize, UpdateRule
from medis.errors import ConfigError

__all__ = ["PAdam"]


@dataclass(frozen=True)
class PAdam(StepSize, UpdateRule):
    """Projected Adam with AMSGrad (module docstring): step ``step_size`` (or ``step_size_eps``·eps),
    ``beta1``, ``beta2``, ``adam_eps``; ``amsgrad: false`` gives plain projected Adam."""

    name: ClassVar[str] = "padam"
    needs_budget: ClassVar[bool] = True
    step_size: float = 2.0 / 255.0
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    amsgrad: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("beta1", "beta2"):
            value = getattr(self, key)
            check_number(value, f"attack.rule.{key}", low=0)
            if value >= 1:
                raise ConfigError(f"attack.rule.{key} must be in [0, 1), got {value!r}")
        check_number(self.adam_eps, "attack.rule.adam_eps", low=0, strict=True)
        if not isinstance(self.amsgrad, bool):
            raise ConfigError(f"attack.rule.amsgrad must be true or false, got {self.amsgrad!r}")

    def init(self, x0: torch.Tensor, budget: Budget) -> State:
        """Adam's first and second moments, AMSGrad's running maximum (each like x0) and the step count t."""
        return {"m": torch.zeros_like(x0), "v": torch.zeros_like(x0), "v_max": torch.zeros_like(x0),
                "t": x0.new_zeros(x0.shape[0])}

    def step(self, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
             info: StepInfo, budget: Budget) -> tuple[torch.Tensor, State]:
        """One projected Adam step toward a higher attack objective (module docstring)."""
        g = per_sample(direction, grad).to(grad.dtype) * grad
        t = state["t"] + 1
        m = self.beta1 * state["m"] + (1.0 - self.beta1) * g
        v = self.beta2 * state["v"] + (1.0 - self.beta2) * g * g
        v_max = torch.maximum(state["v_max"], v) if self.amsgrad else v
        first = per_sample(1.0 - self.beta1 ** t, x).to(x.dtype)
        second = per_sample(torch.sqrt(1.0 - self.beta2 ** t), x).to(x.dtype)
        step = self.alpha(budget) * (m / first) / (torch.sqrt(v_max) / second + self.adam_eps)
        return x + step, {"m": m, "v": v, "v_max": v_max, "t": t}
