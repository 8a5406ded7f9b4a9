"""The registry of target kinds: what each reference mask is, and how it is built.

One entry per kind, in the order the tables show them. Each :class:`TargetKind` says whether the
attack is targeted (descend a loss toward the reference) or not (ascend it away from the ground
truth), whether the reference is one class everywhere (``uniform``: the paper doubles such targets'
mIoU, docs/method.md "Metrics"), whether it is drawn from the evaluation set's masks (``pooled``:
needs a :class:`~medis.attacks.targets.TargetPool`), whether the MedIS paper uses it, and its
builder. The engine, the attack module, the summaries and the config resolvers all read this one
registry; a new kind is one entry here (its builder may call the pool) plus one ``conf/target`` file.

Kinds (Shukla, Gupta, Gupta, MTAP 2023, §"targets"; ``inverted`` is ours): ``untargeted`` (the
ground truth itself), ``random`` (a mask of the set), ``most_similar`` (the other mask of the set
closest to the ground truth), ``white`` (all foreground), ``black`` (all background), ``inverted``
(1 − ground truth).

Torch-free on import (builders use tensor methods only), so that the reports can read the registry
without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medis.errors import ConfigError

__all__ = ["TARGET_KINDS", "TargetKind", "UNTARGETED", "kinds_named", "target_kind"]

UNTARGETED = "untargeted"
Builder = Callable[..., Any]
"""``build(pool, masks, positions, losses, mode)`` -> one reference per mask (``(1, H, W)`` like the
mask), or ``{loss: references}`` when each loss gets its own (the paper's random targets). ``pool``
is a :class:`medis.attacks.targets.TargetPool` (``None`` for kinds that need none), ``masks`` the
images' ground truths (1, H, W), ``positions`` their positions in the evaluation set, ``losses`` the
run's loss labels, ``mode`` ``clean`` or ``paper``."""


@dataclass(frozen=True)
class TargetKind:
    """One kind of reference (see the module docstring).

    Attributes:
        name: the kind's name (records' ``target`` column, ``conf/target``).
        targeted: the attack descends a loss toward the reference.
        uniform: the reference is one class everywhere (the paper's ×2 correction applies).
        pooled: built from the evaluation set's masks (needs a pool).
        paper: one of the MedIS paper's kinds (``target=all`` runs these).
        build: the builder (:data:`Builder`).
    """

    name: str
    targeted: bool
    build: Builder
    uniform: bool = False
    pooled: bool = False
    paper: bool = True


def _ground_truth(pool, masks, positions, losses, mode):
    return list(masks)


def _white(pool, masks, positions, losses, mode):
    return [mask.new_ones(mask.shape) for mask in masks]


def _black(pool, masks, positions, losses, mode):
    return [mask.new_zeros(mask.shape) for mask in masks]


def _inverted(pool, masks, positions, losses, mode):
    return [(mask <= 0.5).to(mask.dtype) for mask in masks]


def _random(pool, masks, positions, losses, mode):
    """Clean mode: one mask per image, from the image's own seeded stream; paper mode: one mask per
    loss for the whole set, as the MedIS notebooks draw (the losses then face different targets)."""
    if mode == "paper":
        return {loss: [pool.mask(pool.draw_for_loss(k), mask) for mask in masks] for k, loss in enumerate(losses)}
    return [pool.mask(pool.draw_for_image(position), mask) for position, mask in zip(positions, masks)]


def _most_similar(pool, masks, positions, losses, mode):
    return [pool.mask(pool.most_similar(position), mask) for position, mask in zip(positions, masks)]


TARGET_KINDS: dict[str, TargetKind] = {kind.name: kind for kind in (
    TargetKind(UNTARGETED, targeted=False, build=_ground_truth),
    TargetKind("random", targeted=True, build=_random, pooled=True),
    TargetKind("most_similar", targeted=True, build=_most_similar, pooled=True),
    TargetKind("white", targeted=True, build=_white, uniform=True),
    TargetKind("black", targeted=True, build=_black, uniform=True),
    TargetKind("inverted", targeted=True, build=_inverted, paper=False),
)}
"""Every target kind by name, in table order."""


def target_kind(name: str | TargetKind) -> TargetKind:
    """The registered kind ``name`` (a :class:`TargetKind` is returned as it is).

    Raises:
        ConfigError: an unknown name (one line listing the kinds).
    """
    if isinstance(name, TargetKind):
        return name
    if name not in TARGET_KINDS:
        raise ConfigError(f"unknown target kind {name!r}; valid kinds: {', '.join(TARGET_KINDS)}")
    return TARGET_KINDS[name]


def kinds_named(selection: str) -> list[str]:
    """A named selection of kinds (the ``conf/target`` resolver): ``all`` every kind, ``paper`` the
    paper's kinds (untargeted included), ``paper_targeted`` the paper's targeted kinds, ``targeted``
    every targeted kind.

    Raises:
        ConfigError: an unknown selection.
    """
    selections = {
        "all": list(TARGET_KINDS),
        "paper": [name for name, kind in TARGET_KINDS.items() if kind.paper],
        "paper_targeted": [name for name, kind in TARGET_KINDS.items() if kind.paper and kind.targeted],
        "targeted": [name for name, kind in TARGET_KINDS.items() if kind.targeted],
    }
    if selection not in selections:
        raise ConfigError(f"unknown target selection {selection!r}; valid: {', '.join(selections)}")
    return selections[selection]


def table_order(name: str) -> tuple:
    """Sort key of a target name in tables: registry order, unknown names after, alphabetically."""
    names = list(TARGET_KINDS)
    return (0, names.index(name), "") if name in names else (1, 0, name)
