"""Surrogate losses by name: ``build_loss(name, mode)`` -> ``fn(outputs, reference, ctx) -> (B,)``.

``mode`` is ``"paper"`` (the forms of the MedIS notebooks, Shukla, Gupta, Gupta, Multimedia Tools
and Applications 2023, quirks included) or ``"clean"`` (the published forms) (docs/method.md,
"Surrogate losses"). The paper's six losses have both forms: the paper form reads the fused
probability as the notebooks did, the clean form the fused logit (:mod:`medis.losses.logit_forms`:
no input gradient vanishes where the prediction saturates, none is constant for an empty reference).
Every other loss has its clean form only, used in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from medis.errors import ConfigError
import medis.losses.logit_attacks as logit_attacks
import medis.losses.logit_forms as logit_forms
from medis.losses.explog import exp_log_loss_paper
from medis.losses.lovasz import lovasz_loss_paper
from medis.losses.overlap import bce_dice_loss, logcosh_dice_loss
from medis.losses.sides import side_structure_loss
from medis.models.frontend import VictimOutput


@dataclass(frozen=True)
class LossContext:
    """Where the attack stands when it evaluates a loss.

    Attributes:
        step: current iteration t (0-based).
        total_steps: number of iterations T.
        targeted: True when the attack DESCENDS the loss toward a target mask; False when it
            ASCENDS it away from the ground truth.
    """

    step: int = 0
    total_steps: int = 1
    targeted: bool = False


LossFn = Callable[[VictimOutput, torch.Tensor, LossContext], torch.Tensor]
"""(outputs, reference (B,1,H,W) in {0,1}, ctx) -> (B,), one value per sample."""

MODES = ("clean", "paper")
PAPER_LOSSES = ("logcosh_dice", "bce_dice", "exp_log", "structure", "lovasz", "combined")
COMBINED_WEIGHTS: Mapping[str, float] = {
    "structure": 0.21, "logcosh_dice": 0.18, "bce_dice": 0.20, "exp_log": 0.15, "lovasz": 0.26}
"""Weights of the MedIS combined loss (docs/method.md)."""

ProbLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _reference(outputs: VictimOutput, reference: torch.Tensor) -> torch.Tensor:
    """The reference as a float mask of the prediction's dtype, after a shape check."""
    if tuple(reference.shape) != tuple(outputs.prob.shape):
        raise ValueError(f"reference shape {tuple(reference.shape)} != prediction shape {tuple(outputs.prob.shape)}")
    return reference.to(outputs.prob.dtype)


def _on_prob(fn: ProbLoss) -> LossFn:
    """A loss of (P, M) as a :data:`LossFn`."""

    def loss(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
        return fn(outputs.prob, _reference(outputs, reference))

    loss.__doc__ = fn.__doc__
    return loss


def _structure(paper: bool) -> LossFn:
    def loss(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
        return side_structure_loss(outputs, _reference(outputs, reference), paper=paper)

    loss.__doc__ = side_structure_loss.__doc__
    return loss


def _on_logit(fn: Callable[..., torch.Tensor]) -> LossFn:
    """A loss of (z, M) as a :data:`LossFn` (z: :func:`~medis.losses.logit_forms.fused_logit`)."""

    def loss(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
        return fn(logit_forms.fused_logit(outputs), _reference(outputs, reference))

    loss.__doc__ = fn.__doc__
    return loss


def _with_direction(fn: Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]) -> LossFn:
    """A loss of (z, M, targeted) as a :data:`LossFn` (its pixel set depends on the direction)."""

    def loss(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
        return fn(logit_forms.fused_logit(outputs), _reference(outputs, reference), ctx.targeted)

    loss.__doc__ = fn.__doc__
    return loss


def _segpgd(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
    return logit_attacks.segpgd_loss(logit_forms.fused_logit(outputs), _reference(outputs, reference), ctx.step,
                                     ctx.total_steps, ctx.targeted)


_segpgd.__doc__ = logit_attacks.segpgd_loss.__doc__


def _both(fn: LossFn) -> dict[str, LossFn]:
    return {"clean": fn, "paper": fn}


_LOSSES: dict[str, dict[str, LossFn]] = {
    "logcosh_dice": {"clean": _on_logit(logit_forms.logcosh_dice_loss), "paper": _on_prob(logcosh_dice_loss)},
    "bce_dice": {"clean": _on_logit(logit_forms.bce_dice_loss), "paper": _on_prob(bce_dice_loss)},
    "exp_log": {"clean": _on_logit(logit_forms.exp_log_loss), "paper": _on_prob(exp_log_loss_paper)},
    "structure": {"clean": _structure(False), "paper": _structure(True)},
    "lovasz": {"clean": _on_logit(logit_forms.lovasz_loss), "paper": _on_prob(lovasz_loss_paper)},
    "bce": _both(_on_logit(logit_forms.bce_loss)),
    "dice": _both(_on_logit(logit_forms.dice_loss)),
    "tversky": _both(_on_logit(logit_forms.tversky_loss)),
    "focal": _both(_on_logit(logit_forms.focal_loss)),
    "segpgd": _both(_segpgd),
    "cospgd": _both(_with_direction(logit_attacks.cospgd_loss)),
    "cosine": _both(_on_logit(logit_attacks.cosine_loss)),
    **{name: _both(_with_direction(fn)) for name, fn in (
        ("masked_bce", logit_attacks.masked_bce_loss), ("js", logit_attacks.js_divergence_loss),
        ("masked_logit", logit_attacks.masked_logit_loss), ("dag", logit_attacks.dag_loss),
        ("asma", logit_attacks.asma_loss))},
}


def _combined(mode: str) -> LossFn:
    parts = [(weight, _LOSSES[name][mode]) for name, weight in COMBINED_WEIGHTS.items()]

    def loss(outputs: VictimOutput, reference: torch.Tensor, ctx: LossContext = LossContext()) -> torch.Tensor:
        """MedIS combined loss 0.21 structure + 0.18 logcosh_dice + 0.20 bce_dice + 0.15 exp_log
        + 0.26 lovasz (Shukla, Gupta, Gupta, Multimedia Tools and Applications 2023), per sample."""
        return sum(weight * fn(outputs, reference, ctx) for weight, fn in parts)

    return loss


for _mode in MODES:
    _LOSSES.setdefault("combined", {})[_mode] = _combined(_mode)

LOSS_NAMES: tuple[str, ...] = PAPER_LOSSES + tuple(name for name in _LOSSES if name not in PAPER_LOSSES)
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
    if name not in _LOSSES:
        raise ConfigError(f"unknown loss {name!r}; valid losses: {', '.join(LOSS_NAMES)}")
    if mode not in MODES:
        raise ConfigError(f"unknown loss mode {mode!r}; valid modes: {', '.join(MODES)}")
    return _LOSSES[name][mode]
