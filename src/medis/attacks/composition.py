"""An attack as a composition of parts: an update rule, surrogate losses, a budget and criteria.

MedIS (Shukla, Gupta, Gupta, MTAP 2023) is ``Attack(rule=SignStep(1/255), losses=<the paper's six>,
budget=Budget(steps=10), criteria=Thresholds())``; PGD, SegPGD, CosPGD, APGD, DAG and ASMA are other
compositions of the same parts (``conf/attack/*.yaml``). How the engine runs it (batch size,
compaction, ...) is not part of the attack: see :class:`medis.attacks.engine.EngineOptions`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medis.attacks.budget import Budget
from medis.attacks.criteria import MODES, Criteria, Thresholds
from medis.attacks.rules import UpdateRule, as_rule
from medis.attacks.rules.sign import SignStep
from medis.errors import ConfigError
from medis.losses import LOSS_NAMES

__all__ = ["Attack", "as_part", "check_losses"]


def as_part(value: Any, cls: type, key: str) -> Any:
    """``value`` as a ``cls`` dataclass: itself, or built from a mapping of its fields (a Hydra node).

    Raises:
        ConfigError: an unknown field (one line naming ``key`` and the valid fields) or a value of
            the wrong kind.
    """
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}, "
                          f"got {value!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {key}; valid: {', '.join(sorted(names))}")
    return cls(**value)


def check_losses(names: Sequence[str], where: str = "losses") -> tuple[str, ...]:
    """``names`` as a tuple after checking each against the loss registry (ConfigError otherwise)."""
    if isinstance(names, str):
        names = [names]
    names = tuple(names)
    unknown = [name for name in names if name not in LOSS_NAMES]
    if unknown or not names:
        raise ConfigError(f"{where}: unknown loss(es) {unknown or '[]'}; valid: {', '.join(LOSS_NAMES)}")
    return names


@dataclass(frozen=True)
class Attack:
    """One attack (module docstring).

    Attributes:
        name: the records' ``attack`` column.
        mode: ``clean`` or ``paper`` (the notebooks' bookkeeping and loss forms; needs a victim with
            the paper fusion).
        rule: the update rule (an :class:`~medis.attacks.rules.base.UpdateRule`; a rule name or a
            ``{"name": ..., **parameters}`` mapping is accepted too).
        losses: registry names of the surrogate losses; ``None``: the caller's (``conf/losses``).
        budget: a :class:`~medis.attacks.budget.Budget` (or a mapping of its fields).
        criteria: :class:`~medis.attacks.criteria.Thresholds` (or a mapping of its fields).

    Raises:
        ConfigError: an invalid part (one line naming the key), or a rule the budget cannot serve.
    """

    name: str = "medis"
    mode: str = "clean"
    rule: UpdateRule = field(default_factory=SignStep)
    losses: tuple[str, ...] | None = None
    budget: Budget = field(default_factory=Budget)
    criteria: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"attack.mode={self.mode!r} must be one of {', '.join(MODES)}")
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "rule", as_rule(self.rule))
        object.__setattr__(self, "budget", as_part(self.budget, Budget, "attack.budget"))
        object.__setattr__(self, "criteria", as_part(self.criteria, Thresholds, "attack.criteria"))
        if self.losses is not None:
            object.__setattr__(self, "losses", check_losses(self.losses, f"attack {self.name!r}"))
        self.rule.check(self.budget)

    def judged(self, targeted: bool) -> Criteria:
        """The stop and success rules of this attack toward a target (``targeted``) or away from the
        ground truth."""
        return Criteria(targeted, self.mode, self.budget.steps, self.criteria.stop, self.criteria.success)

    def with_losses(self, default: Sequence[str]) -> "Attack":
        """This attack, with ``default`` as its losses when it has none of its own."""
        if self.losses is not None:
            return self
        return dataclasses.replace(self, losses=check_losses(default, "losses.names"))
