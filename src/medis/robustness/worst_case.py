"""Each image's worst case under an attack: the lowest two-class mIoU any of its records reached, and
the Dice (foreground) of the prediction on that adversarial image.

An image's worst case is the best admissible iterate over every member and loss of the attack
(:func:`medis.attacks.ensemble.worst_score` of its records), scored at full size through the
victim's differentiable front end; ``real_miou`` is the same image's verdict once written as an
8-bit file and read by the loaders (``worst_real_metric``, issue "whole verdicts"); ``transfer_miou``
the verdict of another model on it (``transfer_to``). An image whose clean prediction already fails
is set aside by the engine and keeps its clean score (the attack did nothing to it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from medis.attacks.composition import Attack
from medis.attacks.engine import EngineOptions, run_attack
from medis.attacks.ensemble import Ensemble, run_ensemble, worst_score
from medis.metrics.segmentation import dice_per_image, two_class_miou
from medis.models.frontend import VictimOutput, predict_mask
from medis.results.records import Record

__all__ = ["WorstCases", "at_radius", "clean_scores", "mean", "with_steps", "worst_cases"]

AnyAttack = Attack | Ensemble
VictimFn = Callable[[torch.Tensor], VictimOutput]


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not ``None`` (``None`` when there are none)."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


@dataclass
class WorstCases:
    """Per-image worst cases of one attack run, in the images' order.

    Attributes:
        ids: image ids; miou, dice: the worst case's two-class mIoU and Dice with the ground truth.
        real_miou: that image's mIoU through the real pipeline (8-bit, the loaders' resize), or ``None``.
        transfer_miou: its mIoU on the ``transfer_to`` model, or ``None``.
        passes: forward + backward passes spent per image; records: every record of the run.
    """

    ids: list[str]
    miou: list[float]
    dice: list[float]
    real_miou: list[float | None]
    transfer_miou: list[float | None]
    passes: list[int]
    records: list[Record] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, float | None]:
        """Means over the images: ``miou``, ``dice``, ``real_miou``, ``transfer_miou``, ``passes``."""
        return {"miou": mean(self.miou), "dice": mean(self.dice), "real_miou": mean(self.real_miou),
                "transfer_miou": mean(self.transfer_miou), "passes": mean(self.passes)}


def at_radius(attack: AnyAttack, eps: float | None) -> AnyAttack:
    """``attack`` with every member's radius set to ``eps`` (``None``: unbounded)."""
    if isinstance(attack, Ensemble):
        return dataclasses.replace(attack, members=tuple(at_radius(m, eps) for m in attack.members))
    return dataclasses.replace(attack, budget=dataclasses.replace(attack.budget, eps=eps))


def with_steps(attack: AnyAttack, factor: int) -> AnyAttack:
    """``attack`` with every member's steps times ``factor``."""
    if isinstance(attack, Ensemble):
        return dataclasses.replace(attack, members=tuple(with_steps(m, factor) for m in attack.members))
    return dataclasses.replace(attack, budget=dataclasses.replace(attack.budget, steps=attack.budget.steps * factor))


def _per_image_min(records: Sequence[Record], key: Callable[[Record], float | None]) -> dict[str, float]:
    found: dict[str, float] = {}
    for record in records:
        value = key(record)
        if value is not None and not math.isnan(value):
            found[record.image_id] = min(found.get(record.image_id, math.inf), value)
    return found


def clean_scores(victim: VictimFn, images: Sequence[torch.Tensor],
                 masks: Sequence[torch.Tensor]) -> tuple[list[float], list[float]]:
    """The clean prediction's (two-class mIoU, Dice) of every image."""
    miou, dice = [], []
    for image, mask in zip(images, masks):
        predicted = predict_mask(victim, image[None])
        truth = mask[None] > 0.5
        miou.append(float(two_class_miou(predicted, truth)))
        dice.append(float(dice_per_image(predicted, truth)[0]))
    return miou, dice


def worst_cases(victim: VictimFn, images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], ids: Sequence[str],
                attack: AnyAttack, *, seed: int = 0, options: EngineOptions | None = None,
                transfer_to: VictimFn | None = None, dataset: str = "") -> WorstCases:
    """Attack every image (untargeted) and keep its worst case (module docstring).

    Args:
        victim: the model; images: (3, H_i, W_i) in [0, 1]; masks: (1, H_i, W_i) ground truths; ids: ids.
        attack: an attack or an ensemble (the cascade); seed: its random starts' seed.
        options: engine options (``keep_best`` is set here); transfer_to: a second model judging the images.
    """
    ids = [str(i) for i in ids]
    options = dataclasses.replace(options or EngineOptions(), keep_best=True)
    references = [(m > 0.5).to(m.dtype) for m in masks]
    run = run_ensemble if isinstance(attack, Ensemble) else run_attack
    result = run(victim, list(images), references, attack, options=options, seed=seed, ids=ids, dataset=dataset,
                 transfer_to=transfer_to)
    targeted = False
    scores = _per_image_min(result.records, lambda r: worst_score(r, targeted))
    real = _per_image_min(result.records, lambda r: r.worst_real_metric)
    transfer = _per_image_min(result.records, lambda r: r.worst_transfer_metric)
    best: dict[str, torch.Tensor] = {}
    for (image_id, _), (score, image, _) in result.best.items():
        if image_id not in best or score <= scores.get(image_id, math.inf):
            best[image_id] = image
    spent: dict[str, int] = {}
    for record in result.records:
        spent[record.image_id] = spent.get(record.image_id, 0) + (record.forwards or 0) + (record.backwards or 0)
    clean_miou, clean_dice = clean_scores(victim, images, masks)
    miou, dice = [], []
    for i, (image_id, image, mask) in enumerate(zip(ids, images, masks)):
        if image_id in best:
            predicted = predict_mask(victim, best[image_id].to(image)[None])
            dice.append(float(dice_per_image(predicted, mask[None] > 0.5)[0]))
        else:  # set aside or never attacked: its clean prediction is its worst case
            dice.append(clean_dice[i])
        miou.append(min(scores.get(image_id, clean_miou[i]), clean_miou[i]))
    return WorstCases(ids=ids, miou=miou, dice=dice, real_miou=[real.get(i) for i in ids],
                      transfer_miou=[transfer.get(i) for i in ids], passes=[spent.get(i, 0) for i in ids],
                      records=list(result.records))
