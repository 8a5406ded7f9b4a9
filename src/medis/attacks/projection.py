"""The perturbation sets of an attack: the L∞ ball, the L2 ball, or none, each clamped to [0, 1].

Each ball projects an iterate back onto the set around the clean image and draws a uniform random
start in it (PGD's random start: Madry et al., "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018). Images are (R, C, H, W); every replica has its own clean image x0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LEVELS", "Ball", "L2Ball", "LinfBall", "Unbounded", "per_sample", "per_sample_norm", "to_8bit"]

LEVELS = 255
"""An 8-bit image has the values k/255."""
_SLACK = 1e-6
"""How far past the ball (in 8-bit levels) float rounding of (x0 ± eps)·255 may put a level."""


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """One value per replica, broadcastable against ``like``: (R,) -> (R, 1, ..., 1) with ``like.dim()`` dims."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def per_sample_norm(t: torch.Tensor, p: float) -> torch.Tensor:
    """The Lp norm of every replica of ``t`` (floored at 1e-12), shaped to broadcast against it."""
    return per_sample(t.flatten(1).norm(p=p, dim=1).clamp_min(1e-12), t)


def _uniform_noise(x0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U(-1, 1) noise of ``x0``'s shape, drawn in float32 on the CPU (the same draws on every device)."""
    return torch.rand(x0.shape, generator=generator, device="cpu").to(x0.device, x0.dtype) * 2 - 1


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """``x`` in [0, 1] rounded to the nearest 8-bit level k/255 (same shape and dtype)."""
    return (x.clamp(0.0, 1.0) * LEVELS).round() / LEVELS


class Ball:
    """Base of the perturbation sets: [0, 1] only."""

    eps: float | None = None

    def project(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """``x`` projected onto the set around ``x0``, clamped to [0, 1]. (R, C, H, W) -> same."""
        return x.clamp(0.0, 1.0)

    def quantize(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The 8-bit image of ``x`` (its values k/255) that lies in the set around ``x0``: the image
        saved to a file, as the real pipeline reads it. Here: ``x`` rounded. (R, C, H, W) -> same."""
        return to_8bit(x)

    def sample(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random point of the set around every ``x0`` (here: ``x0`` itself). (R, C, H, W)."""
        return x0.clone()


@dataclass(frozen=True)
class Unbounded(Ball):
    """No budget: iterates are only clamped to [0, 1] (MedIS: the budget is t·α after t sign steps)."""


@dataclass(frozen=True)
class LinfBall(Ball):
    """‖x − x0‖∞ ≤ eps."""

    eps: float

    def project(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return (x0 + (x - x0).clamp(-self.eps, self.eps)).clamp(0.0, 1.0)

    def quantize(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """``x`` rounded to 8 bits, each value then kept to the levels within eps of ``x0`` (rounding
        alone can leave the ball: at eps = 2.6/255, 2.6 levels round to 3). Where no level lies
        within eps of ``x0`` (an ``x0`` off the 8-bit grid and eps < 1/255), the level nearest ``x0``."""
        scaled = x0.double() * LEVELS
        low = torch.ceil(scaled - self.eps * LEVELS - _SLACK).clamp_min(0)
        high = torch.floor(scaled + self.eps * LEVELS + _SLACK).clamp_max(LEVELS)
        level = torch.minimum(torch.maximum((x.double().clamp(0, 1) * LEVELS).round(), low), high)
        level = torch.where(low <= high, level, scaled.round())
        return (level / LEVELS).to(x.dtype)

    def sample(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform in the cube: ``x0 + eps·U(-1, 1)``, projected."""
        if not self.eps:
            return x0.clone()
        return self.project(x0 + _uniform_noise(x0, generator) * self.eps, x0)


@dataclass(frozen=True)
class L2Ball(Ball):
    """‖x − x0‖₂ ≤ eps (per replica, over all its pixels and channels)."""

    eps: float

    def project(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        delta = x - x0
        delta = delta * torch.clamp(self.eps / per_sample_norm(delta, 2), max=1.0)
        return (x0 + delta).clamp(0.0, 1.0)

    def quantize(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """``x`` rounded to 8 bits; a replica whose rounded image leaves the ball is truncated instead,
        toward the 8-bit image of ``x0`` (no value moves away from it, so for an ``x0`` on the 8-bit
        grid the norm does not grow)."""
        rounded = to_8bit(x)
        anchor = to_8bit(x0).double() * LEVELS
        truncated = ((anchor + torch.trunc(x.double().clamp(0, 1) * LEVELS - anchor)) / LEVELS).to(x.dtype)
        outside = per_sample_norm(rounded - x0, 2) > self.eps * (1 + _SLACK)
        return torch.where(outside, truncated, rounded)

    def sample(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random direction at a radius drawn uniformly in [0, eps] (the usual PGD-L2 practice), projected."""
        if not self.eps:
            return x0.clone()
        noise = _uniform_noise(x0, generator)
        radius = torch.rand((x0.shape[0],) + (1,) * (x0.dim() - 1), generator=generator).to(x0.device, x0.dtype)
        return self.project(x0 + noise / per_sample_norm(noise, 2) * self.eps * radius, x0)
