"""An ensemble: several attacks on the same images; the per-image worst case is its result.

SEA (Croce, Singh, Hein, "Towards Reliable Evaluation and Fast Training of Robust Semantic
Segmentation Models", ECCV 2024) and Halmosi, Mohos, Jelasity ("Evaluating the Adversarial
Robustness of Semantic Segmentation: Trying Harder Pays Off", ECCV 2024) evaluate a model by the
strongest of several attacks on each image. A member's records' ``loss`` is qualified
``<member>/<loss>``, so that parallel fusion over all the records of an image is the per-image
worst case over attacks and losses, computed by the same fusion code as MedIS's over losses
(:mod:`medis.results.fusion`).

Two orders:

- parallel (``cascade=False``): every member attacks every image, as the papers' protocols do;
- cascade (``cascade=True``): the members run in order and an image leaves as soon as it is
  broken, i.e. some record's worst case (its best admissible iterate, scored at full size:
  :func:`worst_score`) reached the ``floor`` (two-class mIoU <= floor untargeted, target attainment
  >= 1 - floor targeted; with floor 0 the score cannot get worse). Every member stops a
  replica at the floor, and an image's other losses with it (``EngineOptions.stop_image``); later
  members only get the images still standing. An image's worst case is the best any member found
  on it, so the cascade is as strong as running every member on every image, up to the floor,
  at the cost of the images that resist. With ``warm_start`` each member after the first starts
  every image from the best adversarial image found on it so far (as SEA's stages start from the
  previous stage's best), instead of its own random start: the next loss continues the work.

``conf/attack/ensemble.yaml`` builds one with :func:`build_ensemble`: shared settings (mode, budget,
criteria) laid under each member's own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medis.attacks.budget import Budget, check_number
from medis.attacks.composition import Attack
from medis.attacks.criteria import Thresholds
from medis.attacks.engine import EngineOptions, run_attack
from medis.attacks.engine.results import AttackResult
from medis.attacks.targets import TargetKind, target_kind
from medis.errors import ConfigError
from medis.losses import build_loss
from medis.models.frontend import VictimOutput
from medis.results.records import Record

__all__ = ["Cascade", "Ensemble", "broken_images", "build_ensemble", "run_ensemble", "worst_score"]

_MEMBER_KEYS = ("mode", "rule", "losses", "budget", "criteria")


@dataclass(frozen=True)
class Ensemble:
    """Member attacks, run one after the other on the same images.

    Attributes:
        members: the attacks (distinct names: each qualifies its losses' labels), in cascade order.
        name: the ensemble's name.
        cascade: run the members in order, each on the images still standing (module docstring);
            ``False``: every member on every image.
        floor: the score at which an image is broken in a cascade, as a distance from the perfect
            score (0: mIoU 0 untargeted, attainment 1 targeted).
        warm_start: in a cascade, start each member from the best image found so far.
    """

    members: tuple[Attack, ...]
    name: str = "ensemble"
    cascade: bool = False
    floor: float = 0.0
    warm_start: bool = False

    def __post_init__(self) -> None:
        members = tuple(self.members)
        if not members or not all(isinstance(m, Attack) for m in members):
            raise ConfigError("an ensemble needs at least one member attack")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ConfigError(f"ensemble members need distinct names, got {names}")
        for key in ("cascade", "warm_start"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"attack.{key} must be true or false, got {getattr(self, key)!r}")
        check_number(self.floor, "attack.floor", low=0)
        if self.floor >= 1:
            raise ConfigError(f"attack.floor must be < 1, got {self.floor!r}")
        object.__setattr__(self, "members", members)

    @staticmethod
    def label(member: Attack, loss: str) -> str:
        """The records' ``loss`` of ``member``'s ``loss``: ``<member>/<loss>``."""
        return f"{member.name}/{loss}"

    def with_losses(self, default: Sequence[str]) -> "Ensemble":
        """This ensemble with ``default`` as the losses of members that have none of their own."""
        return dataclasses.replace(self, members=tuple(m.with_losses(default) for m in self.members))

    def broken_at(self, targeted: bool) -> float:
        """The score at which an image is broken (module docstring)."""
        return 1.0 - self.floor if targeted else self.floor

    def member_for(self, member: Attack, targeted: bool) -> Attack:
        """``member`` as this ensemble runs it: in a cascade it stops at the floor."""
        if not self.cascade:
            return member
        stop = "exact" if self.floor == 0 else self.broken_at(targeted)
        return dataclasses.replace(member, criteria=dataclasses.replace(member.criteria, stop=stop))

    def options_for(self, options: EngineOptions) -> EngineOptions:
        """The engine options of a member run: in a cascade, an image stops with its first broken
        replica (and the best iterates come back for the warm starts)."""
        if not self.cascade:
            return options
        return dataclasses.replace(options, stop_image=True, keep_best=options.keep_best or self.warm_start)

    @property
    def labels(self) -> list[str]:
        """Every member's qualified loss labels, in member order."""
        return [self.label(m, loss) for m in self.members for loss in m.losses or ()]


def build_ensemble(members: Mapping[str, Mapping[str, Any] | Attack], mode: str = "clean",
                   budget: Mapping[str, Any] | None = None, criteria: Mapping[str, Any] | None = None,
                   name: str = "ensemble", cascade: bool = False, floor: float = 0.0,
                   warm_start: bool = False) -> Ensemble:
    """An :class:`Ensemble` from member settings laid over shared ones (``conf/attack/ensemble.yaml``).

    Args:
        members: ``{name: settings}``; settings hold a ``rule`` (required), and optionally ``losses``,
            ``mode``, ``budget`` and ``criteria`` fields that override the shared ones field by field.
        mode, budget, criteria: the shared settings.
        name: the ensemble's name; cascade, floor, warm_start: see :class:`Ensemble`.

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
    return Ensemble(tuple(attacks), name, cascade, floor, warm_start)


def worst_score(record: Record, targeted: bool) -> float | None:
    """A record's worst case for the model: ``worst_metric`` (the best admissible iterate, scored at
    full size), else (a record without one: set aside, or from an older file) the attacker's best of
    its trajectory."""
    if record.worst_metric is not None:
        return record.worst_metric
    scores = [value for value in record.trajectory if not math.isnan(value)]
    return (max(scores) if targeted else min(scores)) if scores else None


def broken_images(records: Iterable[Record], targeted: bool, at: float) -> set[str]:
    """The image ids of ``records`` whose worst case (:func:`worst_score`) is at or beyond ``at``: the
    images a cascade has broken."""
    broken = set()
    for record in records:
        score = worst_score(record, targeted)
        if score is not None and (score >= at if targeted else score <= at):
            broken.add(record.image_id)
    return broken


class Cascade:
    """A cascade's bookkeeping over one set of images (module docstring): the images it has broken
    and, for warm starts, the best adversarial image of each so far.

    Args:
        ensemble: the ensemble (``None``, or one that is not a cascade: a bookkeeper that does nothing).
        targeted: whether the attack is targeted (higher scores are better for the attacker).
    """

    def __init__(self, ensemble: Ensemble | None, targeted: bool) -> None:
        self.ensemble, self.targeted = ensemble, targeted
        self.active = ensemble is not None and ensemble.cascade
        self.broken: set[str] = set()
        self.best: dict[str, tuple[float, torch.Tensor, int]] = {}

    def note(self, records: Iterable[Record],
             best: Mapping[tuple[str, str], tuple[float, torch.Tensor, int]] | None = None) -> None:
        """Take in a member's records (and best iterates, :attr:`AttackResult.best`)."""
        if not self.active:
            return
        self.broken |= broken_images(records, self.targeted, self.ensemble.broken_at(self.targeted))
        for (image_id, _), (score, image, steps) in (best or {}).items():
            known = self.best.get(image_id)
            if known is None or (score > known[0] if self.targeted else score < known[0]):
                self.best[image_id] = (score, image, steps)

    def standing(self, ids: Sequence[str]) -> list[int]:
        """The positions of ``ids`` not broken yet."""
        return [i for i, image_id in enumerate(ids) if image_id not in self.broken]

    def starts(self, ids: Sequence[str], images: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]] | None:
        """Warm starts for the next member: (the best image so far, or the clean image where there
        is none yet; the updates that led there), or ``None``: random starts (no warm start, or
        nothing found yet)."""
        if not (self.active and self.ensemble.warm_start and any(image_id in self.best for image_id in ids)):
            return None
        found = [self.best.get(image_id) for image_id in ids]
        return ([entry[1] if entry else image for entry, image in zip(found, images)],
                [entry[2] if entry else 0 for entry in found])


def run_ensemble(victim: Callable[[torch.Tensor], VictimOutput], images: Sequence[torch.Tensor],
                 reference: Sequence[torch.Tensor] | Mapping[str, Sequence[torch.Tensor]], ensemble: Ensemble, *,
                 target: str | TargetKind = "untargeted", options: EngineOptions | None = None, seed: int = 0,
                 ids: Sequence[str] | None = None, dataset: str = "",
                 transfer_to: Callable[[torch.Tensor], VictimOutput] | None = None) -> AttackResult:
    """The members of ``ensemble`` on the images (:func:`~medis.attacks.engine.run_attack` each): all
    of them on every image, or in a cascade each on the images still standing. ``reference`` as for
    ``run_attack``, per-loss references keyed by qualified label. Returns all the records; with
    ``options.keep_best``, also each image's worst case over every member in ``best`` (one entry per
    image, keyed by the label of the loss that found it)."""
    kind = target_kind(target)
    ids = [str(i) for i in range(len(images))] if ids is None else list(ids)
    keep_best = options is not None and options.keep_best
    options = ensemble.options_for(options or EngineOptions())
    worst: dict[str, tuple[str, tuple[float, torch.Tensor, int]]] = {}
    result, cascade = AttackResult(records=[]), Cascade(ensemble, kind.targeted)
    for member in ensemble.members:
        standing = cascade.standing(ids)
        if not standing:
            break
        labels = {ensemble.label(member, loss): build_loss(loss, member.mode) for loss in member.losses or ()}
        pick = (lambda seq: [seq[i] for i in standing])  # noqa: E731
        refs = {label: pick(reference[label]) for label in labels} if isinstance(reference, Mapping) else pick(reference)
        starts = cascade.starts(pick(ids), pick(images)) or (None, None)
        done = run_attack(victim, pick(images), refs, ensemble.member_for(member, kind.targeted), target=kind,
                          losses=labels, options=options, seed=seed, ids=pick(ids), dataset=dataset,
                          transfer_to=transfer_to, start=starts[0], start_steps=starts[1])
        cascade.note(done.records, done.best)
        if keep_best:
            for (image_id, label), entry in done.best.items():
                known = worst.get(image_id)
                if known is None or (entry[0] > known[1][0] if kind.targeted else entry[0] < known[1][0]):
                    worst[image_id] = (label, entry)
        done.best.clear()  # one image per image is kept (by the bookkeeper, and above); the replicas' copies go
        result.extend(done)
    result.best = {(image_id, label): entry for image_id, (label, entry) in worst.items()}
    return result
