"""What the engine returns: :class:`AttackResult`, one record per replica with the norms, SSIM and
PSNR of its chosen image and the judgments of :mod:`medis.attacks.engine.verdicts`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from medis.attacks.composition import Attack
from medis.attacks.criteria import Criteria
from medis.attacks.engine.replicas import Replicas
from medis.metrics.segmentation import perturbation_norms, ssim_psnr
from medis.results.records import Record

__all__ = ["AttackResult", "records_of"]


@dataclass
class AttackResult:
    """What an attack returns.

    Attributes:
        records: one :class:`~medis.results.records.Record` per (image, loss), in image order then loss order.
        adversarial: ``{(image_id, loss): (3, H, W)}`` chosen adversarial images (``keep_images``).
        best: ``{(image_id, loss): (score, (3, H, W), steps)}`` each replica's best admissible iterate
            by its recorded score, that score and the updates that led to it (``keep_best``).
        forward_replicas: replica forward passes run; ``backward_replicas``: replica backward passes.
    """

    records: list[Record]
    adversarial: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    best: dict[tuple[str, str], tuple[float, torch.Tensor, int]] = field(default_factory=dict)
    forward_replicas: int = 0
    backward_replicas: int = 0

    def extend(self, other: "AttackResult") -> None:
        self.records.extend(other.records)
        self.adversarial.update(other.adversarial)
        self.best.update(other.best)
        self.forward_replicas += other.forward_replicas
        self.backward_replicas += other.backward_replicas




def _judgments(judged: tuple[torch.Tensor, torch.Tensor] | None, set_aside: list[bool]) -> tuple[list, list]:
    """(metrics, successes) as lists, ``None`` where there is no judgment or the replica was set aside."""
    if judged is None:
        return [None] * len(set_aside), [None] * len(set_aside)
    metric, success = (t.detach().cpu().tolist() for t in judged)
    return ([None if aside else m for m, aside in zip(metric, set_aside)],
            [None if aside else bool(ok) for ok, aside in zip(success, set_aside)])


def _distortions(state: Replicas, rows: int | None) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Norms, SSIM and PSNR of every replica's chosen image against its clean one, ``rows``
    replicas at a time (SSIM's filtered maps are several full-size copies per replica)."""
    parts = []
    for start in range(0, state.count, rows or state.count):
        part = slice(start, start + (rows or state.count))
        chosen, clean = state.chosen[part], state.clean(part)
        parts.append((perturbation_norms(chosen, clean), *ssim_psnr(chosen, clean)))
    norms = {key: torch.cat([p[0][key] for p in parts]) for key in parts[0][0]}
    return norms, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


def records_of(state: Replicas, names: list[str], attack: Attack, target: str, criteria: Criteria,
               ids: Sequence[str], dataset: str, keep_images: bool | tuple[bool, bool],
               transferred: tuple[torch.Tensor, torch.Tensor] | None,
               real: tuple[torch.Tensor, torch.Tensor] | None, result: AttackResult,
               rows: int | None = None, keep_only: Sequence[str] | None = None) -> AttackResult:
    """Append one record per replica to ``result``, with norms and SSIM/PSNR of the chosen
    adversarial image (at the success record, else the last evaluated); returns ``result``. ``steps``
    counts from the clean image (a warm start's updates included, ``state.step_offset``).
    ``keep_images``: keep the chosen images, or (chosen, best) to keep the best iterates too.
    ``rows``: replicas per distortion computation (the engine's replica batch; ``None``: all).
    ``keep_only``: keep the chosen images of these image ids only, as copies (``None``: every one, as
    views of the state)."""
    keep_chosen, keep_best = keep_images if isinstance(keep_images, tuple) else (keep_images, False)
    norms, ssim, psnr = _distortions(state, rows)
    success = (state.success_at >= 0).cpu()
    columns = {name: t.detach().cpu().tolist() for name, t in
               {"success_at": state.success_at, "success_score": state.success_score, "last": state.last_score,
                "ssim": ssim, "psnr": psnr, "pruned": state.pruned, "forwards": state.forwards,
                "backwards": state.backwards, "set_aside": state.set_aside, "clean": state.clean_score,
                "offset": state.step_offset, "best_at": state.best_at,
                **norms}.items()}
    transfer_metric, transfer_success = _judgments(transferred, columns["set_aside"])
    real_metric, real_success = _judgments(real, columns["set_aside"])
    trajectory = state.trajectory.cpu()
    eps = attack.budget.eps
    clean_mode = state.clean_pred is not None
    skipped = state.skipped.cpu().tolist()
    for r in range(state.count):
        if skipped[r]:
            continue
        image, k = int(state.image_of[r]), int(state.loss_of[r])
        ok = bool(success[r])
        result.records.append(Record(
            dataset=dataset, image_id=ids[image], target=target, loss=names[k], mode=attack.mode,
            eps=None if eps is None else float(eps), success=ok,
            steps=columns["success_at"][r] + criteria.first_index + columns["offset"][r] if ok else None,
            metric=columns["success_score"][r] if ok else columns["last"][r],
            pruned=bool(columns["pruned"][r]),
            **{key: columns[key][r] for key in ("linf", "l2", "linf_255", "l2_255", "ssim", "psnr")},
            trajectory=tuple(v for v in trajectory[r].tolist() if v == v), attack=attack.name,
            forwards=columns["forwards"][r], backwards=columns["backwards"][r],
            transfer_metric=transfer_metric[r], transfer_success=transfer_success[r],
            set_aside=bool(columns["set_aside"][r]), clean_metric=columns["clean"][r] if clean_mode else None,
            real_metric=real_metric[r], real_success=real_success[r]))
        if keep_chosen and keep_only is None:
            result.adversarial[(ids[image], names[k])] = state.chosen[r].detach().cpu()
        elif keep_chosen and ids[image] in keep_only:
            result.adversarial[(ids[image], names[k])] = state.chosen[r].detach().cpu().clone()
        if keep_best and state.best is not None and not math.isnan(float(state.best_score[r])):
            result.best[(ids[image], names[k])] = (float(state.best_score[r]), state.best[r].detach().cpu(),
                                                   columns["best_at"][r] + columns["offset"][r])
    return result
