"""What every update rule is: parameters (dataclass fields), per-replica state (``init``), where
its gradient is taken (``gradient_point``), how it is taken (``gradient``) and the ``step``.

A rule moves the replicas' images ``x`` (R, C, H, W) along the input gradient ``grad`` of their
surrogate losses, in ``direction`` (+1: ascend the loss away from the ground truth, untargeted;
−1: descend it toward a target). The engine knows no rule by name; each step it runs the phases of
:mod:`medis.attacks.engine.phases`, calling the rule's hooks:

1. score and record the iterate (the engine alone);
2. ``gradient_point``: where the gradient is taken (default: the iterate; NI-FGSM looks ahead);
3. ``gradient``: the gradient there (default: one forward and backward pass; EOT averages several
   randomly transformed ones), through the :class:`GradientAt` the engine hands it;
4. ``step``: the proposed next iterate and the rule's new state;
5. projection onto the budget (the engine alone: a rule never has to remember it).

The engine calls ``init`` once per batch and keeps the state's rows of the replicas that move. A new
rule is one module in this package (a subclass of :class:`UpdateRule`) plus one
``conf/attack/rule/<name>.yaml`` (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

from medis.attacks.budget import Budget, check_number
from medis.errors import ConfigError

__all__ = ["Gradient", "GradientAt", "Stage", "State", "StepInfo", "StepSize", "Transform", "UpdateRule"]

State = dict[str, torch.Tensor]
"""A rule's per-replica state: every tensor has the replicas as its first dimension."""


@dataclass(frozen=True)
class StepInfo:
    """What a rule may read besides images and gradients.

    Attributes:
        loss: (R,) the surrogate loss of each replica at ``x`` (detached).
        score: (R,) the recorded score of ``x`` against the reference (mIoU).
        position: index of this record in the attack loop (0 = the first evaluated image).
        total: number of updates T.
        tracked: (R,) the loss the rule tracks for each replica's loss (:meth:`UpdateRule.tracked_loss`)
            at the gradient point (detached); ``None`` when the rule tracks none.
    """

    loss: torch.Tensor
    score: torch.Tensor
    position: int
    total: int
    tracked: torch.Tensor | None = None


@dataclass(frozen=True)
class Gradient:
    """The gradient a step moves along, and what was measured at its point.

    Attributes:
        grad: (R, C, H, W) the input gradient of each replica's surrogate loss at the gradient point.
        loss: (R,) the surrogate losses there (detached).
        tracked: (R,) the losses the rule tracks there (:meth:`UpdateRule.tracked_loss`, detached);
            else ``None``.
    """

    grad: torch.Tensor
    loss: torch.Tensor
    tracked: torch.Tensor | None = None


Transform = Callable[[torch.Tensor], torch.Tensor]
"""A differentiable map of a (R, C, H, W) batch to a batch of the same shape (EOT's random draws)."""


class GradientAt(Protocol):
    """What the engine hands :meth:`UpdateRule.gradient`: ``at(point, transform)`` runs the victim on
    ``transform(point)`` (``point`` itself when ``None``) and returns the :class:`Gradient` with
    respect to ``point`` (R, C, H, W). ``seeds``: one integer per replica row, a function of the
    run's seed, the replica (image id, loss) and the step alone, for draws that do not depend on
    which replicas share the batch."""

    seeds: Sequence[int]

    def __call__(self, point: torch.Tensor, transform: Transform | None = None) -> Gradient: ...


@dataclass(frozen=True)
class Stage:
    """The stage of a rule's schedule that an update belongs to.

    Attributes:
        index: 0 for the first stage.
        start: the first update (record position) of the stage; ``length``: its number of updates.
        radius: the stage's radius in units of the budget's eps (SEA's progressive radius: 2, 1.5,
            then 1). Iterates of a stage with ``radius > 1`` lie outside the budget: the engine does
            not judge them (no score in the records, no success, no stop).
    """

    index: int = 0
    start: int = 0
    length: int = 1
    radius: float = 1.0

    @property
    def admissible(self) -> bool:
        """Whether this stage's iterates lie within the attack's budget."""
        return self.radius <= 1.0


class UpdateRule:
    """Base class of the update rules (module docstring). Subclasses are frozen dataclasses.

    Attributes:
        name: the rule's name (its ``conf/attack/rule`` file).
        needs_budget: the rule is only defined inside a ball (``attack.budget.eps`` must be set).
    """

    name: ClassVar[str] = ""
    needs_budget: ClassVar[bool] = False

    def check(self, budget: Budget) -> None:
        """A one-line :class:`ConfigError` when the rule cannot run under ``budget``."""
        if self.needs_budget and budget.eps is None:
            raise ConfigError(f"the {self.name} rule needs a budget: set attack.budget.eps")

    def tracked_loss(self, loss: str) -> str | None:
        """The registered loss whose value :meth:`step` reads as :attr:`StepInfo.tracked` for replicas
        attacked with the loss ``loss`` (APGD: its best point and step schedule follow it), or ``None``:
        none (the engine computes the tracked losses only for rules that name some)."""
        return None

    def stage(self, position: int, total: int) -> Stage:
        """The stage of the iterate at record ``position`` of ``total`` updates (default: one stage
        of every update, at the budget's radius). Losses with a schedule (SegPGD's λ) follow the
        stage's own clock; the random start is drawn in the first stage's radius."""
        return Stage(0, 0, total, 1.0)

    def init(self, x0: torch.Tensor, budget: Budget) -> State:
        """The per-replica state before the first update (default: none). x0 (R, C, H, W)."""
        return {}

    def gradient_point(self, x: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
                       budget: Budget) -> torch.Tensor:
        """Where this step's gradient is taken, (R, C, H, W) (default: the iterate ``x`` itself, and
        the engine then reuses the pass that scored it). Same arguments as :meth:`step`."""
        return x

    def gradient(self, point: torch.Tensor, at: GradientAt) -> Gradient:
        """The gradient this step moves along (default: ``at(point)``, one forward and backward pass).

        Args:
            point: (R, C, H, W) the gradient point (:meth:`gradient_point`).
            at: computes the gradient at a point, optionally through a transform.
        """
        return at(point)

    def step(self, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
             info: StepInfo, budget: Budget) -> tuple[torch.Tensor, State]:
        """One update of the replicas.

        Args:
            x, grad, x0: (R, C, H, W) current images, loss gradients at the gradient point, clean images.
            direction: (R,) +1 ascend (untargeted), −1 descend (targeted).
            state: these replicas' rows of the state (same keys as :meth:`init`'s).
            info: losses, scores and position of this step.
            budget: the attack's budget (step sizes in units of eps; a rule may project its own
                intermediate points).

        Returns:
            (proposed images (R, C, H, W), new state with the same keys). The engine projects the
            proposal onto the budget (at the radius of the next iterate's stage) and into [0, 1].
        """
        raise NotImplementedError


@dataclass(frozen=True)
class StepSize:
    """A step size α in [0, 1] image units, or ``step_size_eps``·eps when that is set (APGD starts at
    2·eps; PGD-style attacks often step eps/4)."""

    step_size: float = 1.0 / 255.0
    step_size_eps: float | None = None

    def __post_init__(self) -> None:
        check_number(self.step_size, "attack.rule.step_size", low=0, strict=True)
        check_number(self.step_size_eps, "attack.rule.step_size_eps", low=0, strict=True, optional=True)

    def check(self, budget: Budget) -> None:
        super().check(budget)  # type: ignore[misc]
        if self.step_size_eps is not None and budget.eps is None:
            raise ConfigError(f"attack.rule.step_size_eps={self.step_size_eps} needs attack.budget.eps")

    def alpha(self, budget: Budget) -> float:
        """The step size in [0, 1] image units."""
        if self.step_size_eps is not None and budget.eps is not None:
            return self.step_size_eps * budget.eps
        return self.step_size
