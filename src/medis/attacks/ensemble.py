"""An ensemble: several attacks on the same images; the per-image worst case is its result.

SEA (Croce, Singh, Hein, "Towards Reliable Evaluation and Fast Training of Robust Semantic
Segmentation Models", ECCV 2024) evaluates a model by the strongest of several attacks on each
image. Every member attacks every image; its records' ``loss`` is qualified ``<member>/<loss>``, so
that parallel fusion over all the records of an image is the per-image worst case over attacks and
losses, computed by the same fusion code as MedIS's over losses (:mod:`medis.fusion`).

``conf/attack/ensemble.yaml`` builds one with :func:`build_ensemble`: shared settings (mode, budget,
criteria) laid under each member's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medis.attacks.attack import Attack
from medis.attacks.budget import Budget
from medis.attacks.criteria import Thresholds
from medis.attacks.engine import EngineOptions, run_attack
from medis.attacks.kinds import TargetKind
from medis.attacks.recording import AttackResult
from medis.errors import ConfigError
from medis.losses import build_loss
from medis.models.frontend import VictimOutput

__all__ = ["Ensemble", "build_ensemble", "run_ensemble"]

_MEMBER_KEYS = ("mode", "rule", "losses", "budget", "criteria")


@dataclass(frozen=True)
class Ensemble:
    """Member attacks, run one after the other on the same images.

    Attributes:
        members: the attacks (distinct names: each qualifies its losses' labels).
        name: the ensemble's name.
    """

    members: tuple[Attack, ...]
    name: str = "ensemble"

    def __post_init__(self) -> None:
        members = tuple(self.members)
        if not members or not all(isinstance(m, Attack) for m in members):
            raise ConfigError("an ensemble needs at least one member attack")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ConfigError(f"ensemble members need distinct names, got {names}")
        object.__setattr__(self, "members", members)

    @staticmethod
    def label(member: Attack, loss: str) -> str:
        """The records' ``loss`` of ``member``'s ``loss``: ``<member>/<loss>``."""
        return f"{member.name}/{loss}"

    def with_losses(self, default: Sequence[str]) -> "Ensemble":
        """This ensemble with ``default`` as the losses of members that have none of their own."""
        return Ensemble(tuple(m.with_losses(default) for m in self.members), self.name)

    @property
    def labels(self) -> list[str]:
        """Every member's qualified loss labels, in member order."""
        return [self.label(m, loss) for m in self.members for loss in m.losses or ()]


def build_ensemble(members: Mapping[str, Mapping[str, Any] | Attack], mode: str = "clean",
                   budget: Mapping[str, Any] | None = None, criteria: Mapping[str, Any] | None = None,
                   name: str = "ensemble") -> Ensemble:
    """An :class:`Ensemble` from member settings laid over shared ones (``conf/attack/ensemble.yaml``).

    Args:
        members: ``{name: settings}``; settings hold a ``rule`` (required), and optionally ``losses``,
            ``mode``, ``budget`` and ``criteria`` fields that override the shared ones field by field.
        mode, budget, criteria: the shared settings.
        name: the ensemble's name.

    Raises:
        ConfigError: no member, a member without a rule, an unknown key.
    """
    if not isinstance(members, Mapping) or not members:
        raise ConfigError("attack.members must be a non-empty mapping {name: settings}")
    shared_budget, shared_criteria = dict(budget or {}), dict(criteria or {})
    attacks = []
    for member, own in members.items():
        if isinstance(own, Attack):
            attacks.append(own)
            continue
        own = dict(own or {})
        unknown = sorted(set(own) - set(_MEMBER_KEYS))
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown} in attack.members.{member}; valid: {', '.join(_MEMBER_KEYS)}")
        if "rule" not in own:
            raise ConfigError(f"attack.members.{member} needs a rule")
        attacks.append(Attack(name=str(member), mode=own.get("mode", mode), rule=own["rule"],
                              losses=own.get("losses"), budget=Budget(**{**shared_budget, **own.get("budget", {})}),
                              criteria=Thresholds(**{**shared_criteria, **own.get("criteria", {})})))
    return Ensemble(tuple(attacks), name)


def run_ensemble(victim: Callable[[torch.Tensor], VictimOutput], images: Sequence[torch.Tensor],
                 reference: Sequence[torch.Tensor] | Mapping[str, Sequence[torch.Tensor]], ensemble: Ensemble, *,
                 target: str | TargetKind = "untargeted", options: EngineOptions | None = None, seed: int = 0,
                 ids: Sequence[str] | None = None, dataset: str = "",
                 transfer_to: Callable[[torch.Tensor], VictimOutput] | None = None) -> AttackResult:
    """Every member of ``ensemble`` on the same images (:func:`~medis.attacks.engine.run_attack` each);
    ``reference`` as for it, per-loss references keyed by qualified label. Returns all the records."""
    result = AttackResult(records=[])
    for member in ensemble.members:
        labels = {ensemble.label(member, loss): build_loss(loss, member.mode) for loss in member.losses or ()}
        refs = {label: reference[label] for label in labels} if isinstance(reference, Mapping) else reference
        result.extend(run_attack(victim, images, refs, member, target=target, losses=labels, options=options,
                                 seed=seed, ids=ids, dataset=dataset, transfer_to=transfer_to))
    return result
