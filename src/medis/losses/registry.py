"""Surrogate losses by name: ``build_loss(name, mode)`` -> ``fn(outputs, reference, ctx) -> (B,)``.

``mode`` is ``"paper"`` (the forms of the MedIS notebooks, Shukla, Gupta, Gupta, Multimedia Tools
and Applications 2023, quirks included) or ``"clean"`` (the published forms) (docs/method.md,
"Surrogate losses"). Every module of this package registers its family's losses
(:func:`medis.losses.base.register`); importing this module imports them all, so a new loss needs
no list to be edited. :data:`LOSS_NAMES` is the paper's six, in the paper's order, then every other
loss alphabetically.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from pathlib import Path

from medis.errors import ConfigError
from medis.losses.base import LOSSES, MODES, LossContext, LossFn

__all__ = ["LOSS_NAMES", "LOSS_SETS", "PADAM_LOSSES", "PAPER_LOSSES", "SEA_LOSSES", "LossContext", "LossFn",
           "build_loss", "loss_set"]

_PACKAGE = __name__.rpartition(".")[0]
for _module in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if _module.name not in ("base", "registry"):
        importlib.import_module(f"{_PACKAGE}.{_module.name}")

PAPER_LOSSES: tuple[str, ...] = ("logcosh_dice", "bce_dice", "exp_log", "structure", "lovasz", "combined")
"""The MedIS paper's six losses, in its order."""
LOSS_NAMES: tuple[str, ...] = PAPER_LOSSES + tuple(sorted(name for name in LOSSES if name not in PAPER_LOSSES))
"""Every registered loss."""
SEA_LOSSES: tuple[str, ...] = ("masked_bce", "js", "masked_logit", "segpgd")
"""The four APGD losses of SEA's protocol (Croce, Singh, Hein, ECCV 2024, as its first public code
and Halmosi et al.'s evaluation run it): masked cross-entropy, Jensen-Shannon divergence, masked
normalised logit and the SegPGD loss."""
PADAM_LOSSES: tuple[str, ...] = ("bce", "cosine")
"""PAdam's two losses (Halmosi, Mohos, Jelasity, ECCV 2024): cross-entropy and the cosine loss."""
LOSS_SETS: Mapping[str, tuple[str, ...]] = {"all": LOSS_NAMES, "paper": PAPER_LOSSES, "sea": SEA_LOSSES,
                                            "padam": PADAM_LOSSES}
"""Named selections of the registry (``conf/losses`` reads them through the ``medis.losses`` resolver)."""


def loss_set(name: str) -> list[str]:
    """The names of a selection of :data:`LOSS_SETS` (``all``, ``paper``, ``sea``, ``padam``); ConfigError otherwise."""
    if name not in LOSS_SETS:
        raise ConfigError(f"unknown loss selection {name!r}; valid: {', '.join(LOSS_SETS)}")
    return list(LOSS_SETS[name])


def build_loss(name: str, mode: str = "clean") -> LossFn:
    """The surrogate loss ``name`` in ``mode`` (``"clean"`` or ``"paper"``).

    Returns:
        ``fn(outputs, reference, ctx)``: outputs a :class:`~medis.models.frontend.VictimOutput`
        with (B, 1, H, W) maps, reference (B, 1, H, W) in {0, 1}, ctx a :class:`LossContext`
        (optional) -> (B,) loss per sample.

    Raises:
        ConfigError: unknown name or mode (one line naming it and listing the valid ones).
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; valid losses: {', '.join(LOSS_NAMES)}")
    if mode not in MODES:
        raise ConfigError(f"unknown loss mode {mode!r}; valid modes: {', '.join(MODES)}")
    return LOSSES[name].form(mode)
