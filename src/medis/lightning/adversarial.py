"""Adversarial training: the examples a segmentation model trains on, made by an attack of the core.

Madry et al. (ICLR 2018) train on the worst case of a ball around each training image, found by PGD.
For segmentation, PIR-AT (Croce, Singh, Hein, "Towards Reliable Evaluation and Fast Training of
Robust Semantic Segmentation Models", ECCV 2024) trains on 100% adversarial examples from 2-5 PGD
steps on the pixel-wise cross-entropy at eps = 4/255, step 0.01, with the model in EVAL mode while the
attack runs (batch-norm running statistics, as at test time), then in train mode for the update.

Here any :class:`~medis.attacks.composition.Attack` (or :class:`~medis.attacks.ensemble.Ensemble`) of
the core makes the examples, through :func:`medis.attacks.engine.run_attack` (the same rules, losses,
budget and projection as ``attack.py``), on the victim the module trains: its in-graph normalisation
and its validation fusion, at the network size of the batch. Of its iterates the training example of
an image is the WORST CASE the attack found (its best admissible iterate by the recorded two-class
mIoU; the lowest over the attack's losses), which for PGD on the cross-entropy is almost always its
last iterate; an image the attack cannot hurt trains as the attack's start.

:class:`AdversarialTraining` holds the settings (``module.adversarial``, ``conf/experiment/adv_train.yaml``):
the attack, the share of each batch that is adversarial, an eps warm-up, and the cheap attack of the
robust validation Dice.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medis.attacks.budget import check_number
from medis.attacks.composition import Attack
from medis.attacks.engine import EngineOptions, run_attack
from medis.attacks.ensemble import Ensemble, run_ensemble
from medis.errors import ConfigError
from medis.models.frontend import Victim

__all__ = ["AdversarialTraining", "adversarial_count", "describe", "worst_case_examples"]

AnyAttack = Attack | Ensemble


def _scaled(attack: AnyAttack, factor: float) -> AnyAttack:
    """``attack`` with its radius (every member's) times ``factor``."""
    if isinstance(attack, Ensemble):
        return dataclasses.replace(attack, members=tuple(_scaled(m, factor) for m in attack.members))
    return dataclasses.replace(attack, budget=attack.budget.scaled(factor))


def _check_attack(attack: Any, key: str) -> AnyAttack:
    if not isinstance(attack, (Attack, Ensemble)):
        raise ConfigError(f"{key} must be an attack (an attack node with _target_, as in conf/attack), got {attack!r}")
    members = attack.members if isinstance(attack, Ensemble) else (attack,)
    for member in members:
        if not member.losses:
            raise ConfigError(f"{key}: attack {member.name!r} needs its own losses (e.g. losses: [bce])")
        if member.mode != "clean":
            raise ConfigError(f"{key}: attack {member.name!r} must run in clean mode, got mode={member.mode!r}")
    return attack


@dataclass(frozen=True)
class AdversarialTraining:
    """How a :class:`~medis.lightning.segmentation_module.SegmentationModule` trains adversarially.

    Attributes:
        attack: makes the training examples (default in ``experiment=adv_train``: PGD on the
            cross-entropy, 2 steps of 0.01 in the L-inf ball of 4/255 from a random start, every step
            run: ``criteria.stop: never``).
        share: the fraction of each batch replaced by its adversarial examples (the first
            ``round(share·B)`` images of the shuffled batch; PIR-AT: 1.0, DDC-AT/SegPGD-AT: 0.5).
        warmup_epochs: the radius grows linearly from 0 to the attack's over this many epochs (per
            batch; 0: the full radius from the first batch).
        validation: the cheap attack of the robust validation Dice (``val/robust_dice``, each
            epoch); ``None``: the training attack at its full radius.
        seed: the attacks' random starts are seeded by (seed, epoch, batch, image), so a run repeats.
    """

    attack: AnyAttack
    share: float = 1.0
    warmup_epochs: float = 0.0
    validation: AnyAttack | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check_attack(self.attack, "module.adversarial.attack")
        if self.validation is not None:
            _check_attack(self.validation, "module.adversarial.validation")
        check_number(self.share, "module.adversarial.share", low=0)
        if self.share > 1:
            raise ConfigError(f"module.adversarial.share must be in [0, 1], got {self.share!r}")
        check_number(self.warmup_epochs, "module.adversarial.warmup_epochs", low=0)
        check_number(self.seed, "module.adversarial.seed", integer=True)

    @property
    def validation_attack(self) -> AnyAttack:
        return self.validation if self.validation is not None else self.attack

    def radius_factor(self, epoch: int, batch: int, batches: int) -> float:
        """The share of the radius at batch ``batch`` (0-based) of ``batches`` in epoch ``epoch``:
        ``min(1, (epoch + (batch + 1) / batches) / warmup_epochs)``, 1 without a warm-up."""
        if not self.warmup_epochs:
            return 1.0
        progress = epoch + (batch + 1) / max(1, batches)
        return min(1.0, progress / float(self.warmup_epochs))

    def attack_at(self, factor: float) -> AnyAttack:
        """The training attack with its radius times ``factor``."""
        return _scaled(self.attack, factor)

    def batch_seed(self, epoch: int, batch: int) -> int:
        """The random starts' seed of one training batch."""
        return zlib.crc32(f"{self.seed}/{epoch}/{batch}".encode())


def attacking_every_image(attack: AnyAttack) -> AnyAttack:
    """``attack`` with its success threshold at mIoU 0 (every member's): clean mode sets aside the
    images whose clean prediction already "succeeds" (mIoU <= 0.5), which is right for an attack's
    verdicts but would leave the images the model gets wrong out of adversarial training; at 0 only
    an image already predicted entirely wrong is left as it is."""
    if isinstance(attack, Ensemble):
        return dataclasses.replace(attack, members=tuple(attacking_every_image(m) for m in attack.members))
    return dataclasses.replace(attack, criteria=dataclasses.replace(attack.criteria, success=0.0))


def adversarial_count(share: float, batch: int) -> int:
    """How many of a batch of ``batch`` images are adversarial: ``round(share·batch)``, at least one
    for a positive share (a batch of one still trains adversarially at share 0.5)."""
    count = int(math.floor(share * batch + 0.5))
    return max(count, 1) if share > 0 and batch > 0 else 0


def worst_case_examples(victim: Victim, images: torch.Tensor, masks: torch.Tensor, ids: Sequence[str],
                        attack: AnyAttack, seed: int) -> torch.Tensor:
    """The attack's worst case of each image: (B, 3, H, W) in the attack's ball around ``images``.

    Args:
        victim: the model as a function of [0, 1] images (its network must be in eval mode and is
            left as it was: the engine freezes its weights for the call).
        images: (B, 3, H, W) in [0, 1]; ``masks``: (B, 1, H, W) ground truths (foreground > 0.5).
        ids: B distinct ids (the random starts are drawn per (seed, id, loss)).
        attack: the attack (untargeted); seed: its random starts' seed.

    Returns:
        per image, the best admissible iterate over every loss (lowest two-class mIoU), detached, on
        ``images``' device and dtype. Every image is attacked, the ones the model already gets wrong
        too (:func:`attacking_every_image`).
    """
    reference = (masks > 0.5).to(images.dtype)
    attack = attacking_every_image(attack)
    options = EngineOptions(keep_best=True)
    ids = [str(i) for i in ids]
    if isinstance(attack, Ensemble):
        result = run_ensemble(victim, list(images.unbind(0)), list(reference.unbind(0)), attack, options=options,
                              seed=seed, ids=ids)
    else:
        result = run_attack(victim, images, reference, attack, options=options, seed=seed, ids=ids)
    chosen: dict[str, tuple[float, torch.Tensor]] = {}
    for (image_id, _), (score, image, _) in result.best.items():
        if image_id not in chosen or score < chosen[image_id][0]:
            chosen[image_id] = (score, image)
    out = images.detach().clone()
    for i, image_id in enumerate(ids):
        if image_id in chosen:
            out[i] = chosen[image_id][1].to(out.device, out.dtype)
    return out


def describe(settings: AdversarialTraining) -> dict[str, Any]:
    """What a checkpoint carries of its adversarial training, as plain data (weights-only loading)."""
    def one(attack: AnyAttack) -> dict[str, Any]:
        if isinstance(attack, Ensemble):
            return {"name": attack.name, "members": [one(m) for m in attack.members]}
        return {"name": attack.name, "rule": type(attack.rule).__name__, "losses": list(attack.losses or ()),
                "steps": attack.budget.steps, "eps": attack.budget.eps, "norm": attack.budget.norm,
                "random_start": attack.budget.random_start}
    return {"attack": one(settings.attack), "share": float(settings.share),
            "warmup_epochs": float(settings.warmup_epochs), "validation": one(settings.validation_attack),
            "seed": int(settings.seed)}


def training_victim(model: nn.Module, size: tuple[int, int], mean: Sequence[float], std: Sequence[float],
                    fusion: str) -> Victim:
    """The trained network as the attack sees it: normalisation in the graph, the module's validation
    fusion, at the batch's own size (no resize)."""
    return Victim(model, size=size, mean=mean, std=std, fusion=fusion, antialias=False)
