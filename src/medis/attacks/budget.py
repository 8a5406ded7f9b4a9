"""An attack's budget: how many updates, how far from the clean image, and where it starts.

``steps`` is the number of updates T (MedIS: 10); ``eps`` and ``norm`` define the perturbation set
(:mod:`medis.attacks.projection`; no ``eps``: unbounded, as MedIS's sign steps); ``random_start``
starts every replica at a uniform random point of that set instead of the clean image (PGD, Madry
et al., ICLR 2018).
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from medis.attacks.projection import Ball, L2Ball, LinfBall, Unbounded
from medis.errors import ConfigError

__all__ = ["Budget", "NORMS", "check_number"]

NORMS = {"linf": LinfBall, "l2": L2Ball}
"""``budget.norm`` -> the ball of radius ``eps``."""


def check_number(value: Any, key: str, *, low: float | None = None, strict: bool = False,
                 optional: bool = False, integer: bool = False) -> None:
    """A one-line :class:`ConfigError` naming ``key`` unless ``value`` is a number in range.

    Args:
        value: the configured value.
        key: its config path (``attack.budget.eps``).
        low: the smallest allowed value (``strict``: excluded).
        optional: ``None`` (null) is allowed.
        integer: the value must be a whole number.
    """
    if value is None and optional:
        return
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (integer and not float(value).is_integer()):
        raise ConfigError(f"{key} must be {kind}{' or null' if optional else ''}, got {value!r}")
    if low is not None and (value <= low if strict else value < low):
        raise ConfigError(f"{key} must be {'>' if strict else '>='} {low:g}{' or null' if optional else ''}, "
                          f"got {value!r}")


@dataclass(frozen=True)
class Budget:
    """Attributes: ``steps`` (updates, >= 1), ``eps`` (radius, >= 0, or ``None``: unbounded),
    ``norm`` (``linf`` or ``l2``), ``random_start``."""

    steps: int = 10
    eps: float | None = None
    norm: str = "linf"
    random_start: bool = False

    def __post_init__(self) -> None:
        check_number(self.steps, "attack.budget.steps", low=1, integer=True)
        check_number(self.eps, "attack.budget.eps", low=0, optional=True)
        if self.norm not in NORMS:
            raise ConfigError(f"attack.budget.norm={self.norm!r} must be one of {', '.join(NORMS)}")
        if not isinstance(self.random_start, bool):
            raise ConfigError(f"attack.budget.random_start must be true or false, got {self.random_start!r}")
        object.__setattr__(self, "steps", int(self.steps))

    @property
    def ball(self) -> Ball:
        """The perturbation set: a ball of radius ``eps`` in ``norm``, or :class:`Unbounded`."""
        return Unbounded() if self.eps is None else NORMS[self.norm](float(self.eps))

    def project(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """``x`` projected onto the budget around ``x0`` and clamped to [0, 1]. (R, C, H, W) -> same."""
        return self.ball.project(x, x0)

    def quantize(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The 8-bit image of ``x`` within the budget around ``x0`` (:meth:`Ball.quantize`): what a
        file of the adversarial image holds. (R, C, H, W) -> same."""
        return self.ball.quantize(x, x0)

    def scaled(self, factor: float) -> Budget:
        """This budget with its radius times ``factor`` (a stage of a progressive schedule); itself when
        ``factor`` is 1 or the budget is unbounded."""
        if factor == 1.0 or self.eps is None:
            return self
        return dataclasses.replace(self, eps=float(self.eps) * factor)

    def start(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The starting points: ``x0``, or uniform random points of the ball (``random_start``)."""
        return self.ball.sample(x0, generator) if self.random_start else x0.clone()
