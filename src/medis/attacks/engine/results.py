"""What the engine returns: :class:`AttackResult`, one record per replica with the norms, SSIM and
PSNR of its chosen image and the judgments of :mod:`medis.attacks.engine.verdicts`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from medis.attacks.composition import Attack
from medis.attacks.criteria import Criteria
from medis.attacks.engine.replicas import Replicas
from medis.metrics.segmentation import perturbation_norms, ssim_psnr
from medis.results.records import Record

__all__ = ["AttackResult", "Elsewhere", "records_of"]


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


@dataclass(frozen=True)
class Elsewhere:
    """The verdicts of another prediction on both of a replica's images: the chosen one (MedIS's: the
    first success, else the last admissible iterate) and the worst case (the best admissible iterate).

    Attributes:
        chosen, worst: ((R,) scores, (R,) successes) of each image there.
        aside: (R,) bool: that path already fails the replica's clean image (clean mode): its
            successes there are not verdicts on the attack (set aside, as the attack's own verdict).
    """

    chosen: tuple[torch.Tensor, torch.Tensor]
    worst: tuple[torch.Tensor, torch.Tensor]
    aside: torch.Tensor


def _judgments(judged: tuple[torch.Tensor, torch.Tensor] | None, set_aside: list[bool],
               aside_there: list[bool] | None = None) -> tuple[list, list]:
    """(metrics, successes) as lists, ``None`` where there is no judgment or the replica was set aside
    (by the attack; its success also where that path set it aside, ``aside_there``)."""
    if judged is None:
        return [None] * len(set_aside), [None] * len(set_aside)
    metric, success = (t.detach().cpu().tolist() for t in judged)
    aside_there = aside_there or [False] * len(set_aside)
    return ([None if aside else m for m, aside in zip(metric, set_aside)],
            [None if aside or there else bool(ok) for ok, aside, there in zip(success, set_aside, aside_there)])


def _elsewhere(verdicts: Elsewhere | None, set_aside: list[bool]) -> dict[str, list]:
    """The record columns of another prediction's verdicts on both images (``None`` when there are none)."""
    aside = None if verdicts is None else verdicts.aside.cpu().tolist()
    chosen = _judgments(None if verdicts is None else verdicts.chosen, set_aside, aside)
    worst = _judgments(None if verdicts is None else verdicts.worst, set_aside, aside)
    return {"metric": chosen[0], "success": chosen[1], "worst_metric": worst[0], "worst_success": worst[1]}


def _distortions(state: Replicas, images: torch.Tensor, rows: int | None) -> dict[str, list]:
    """Norms, SSIM and PSNR of the replicas' ``images`` (R, 3, H, W) against their clean ones, ``rows``
    replicas at a time (SSIM's filtered maps are several full-size copies per replica), as lists."""
    parts = []
    for start in range(0, state.count, rows or state.count):
        part = slice(start, start + (rows or state.count))
        adversarial, clean = images[part], state.clean(part)
        parts.append({**perturbation_norms(adversarial, clean), **dict(zip(("ssim", "psnr"), ssim_psnr(adversarial, clean)))})
    return {key: torch.cat([p[key] for p in parts]).detach().cpu().tolist() for key in parts[0]}


def records_of(state: Replicas, names: list[str], attack: Attack, target: str, criteria: Criteria,
               ids: Sequence[str], dataset: str, keep_images: bool | tuple[bool, bool],
               transferred: Elsewhere | None, real: Elsewhere | None, result: AttackResult,
               rows: int | None = None, keep_only: Sequence[str] | None = None) -> AttackResult:
    """Append one record per replica to ``result``; returns ``result``. Each record describes two
    images, each with its own verdicts (:class:`~medis.results.records.Record`): the chosen one (the
    first success, else the last admissible iterate) and the worst case (the best admissible
    iterate). ``steps`` and ``worst_steps`` count from the clean image (a warm start's updates
    included, ``state.step_offset``). ``keep_images``: keep the chosen images, or (chosen, best) to
    keep the best iterates too. ``rows``: replicas per distortion computation (the engine's replica
    batch; ``None``: all). ``keep_only``: keep the chosen images of these image ids only, as copies
    (``None``: every one, as views of the state)."""
    keep_chosen, keep_best = keep_images if isinstance(keep_images, tuple) else (keep_images, False)
    chosen, worst = _distortions(state, state.chosen, rows), _distortions(state, state.best, rows)
    success = (state.success_at >= 0).cpu()
    columns = {name: t.detach().cpu().tolist() for name, t in
               {"success_at": state.success_at, "success_score": state.success_score, "last": state.last_score,
                "pruned": state.pruned, "forwards": state.forwards, "backwards": state.backwards,
                "set_aside": state.set_aside, "clean": state.clean_score, "offset": state.step_offset,
                "best_at": state.best_at, "best_score": state.best_score}.items()}
    there = {"transfer": _elsewhere(transferred, columns["set_aside"]), "real": _elsewhere(real, columns["set_aside"])}
    trajectory = state.trajectory.cpu()
    eps = attack.budget.eps
    clean_mode = state.clean_pred is not None
    skipped = state.skipped.cpu().tolist()
    for r in range(state.count):
        if skipped[r]:
            continue
        image, k = int(state.image_of[r]), int(state.loss_of[r])
        ok = bool(success[r])
        attacked = not columns["set_aside"][r] and columns["best_score"][r] == columns["best_score"][r]
        result.records.append(Record(
            dataset=dataset, image_id=ids[image], target=target, loss=names[k], mode=attack.mode,
            eps=None if eps is None else float(eps), success=ok,
            steps=columns["success_at"][r] + criteria.first_index + columns["offset"][r] if ok else None,
            metric=columns["success_score"][r] if ok else columns["last"][r],
            pruned=bool(columns["pruned"][r]),
            **{key: chosen[key][r] for key in ("linf", "l2", "linf_255", "l2_255", "ssim", "psnr")},
            trajectory=tuple(v for v in trajectory[r].tolist() if v == v), attack=attack.name,
            forwards=columns["forwards"][r], backwards=columns["backwards"][r],
            transfer_metric=there["transfer"]["metric"][r], transfer_success=there["transfer"]["success"][r],
            set_aside=bool(columns["set_aside"][r]), clean_metric=columns["clean"][r] if clean_mode else None,
            real_metric=there["real"]["metric"][r], real_success=there["real"]["success"][r],
            **({"worst_metric": columns["best_score"][r],
                "worst_steps": columns["best_at"][r] + criteria.first_index + columns["offset"][r],
                **{f"worst_{key}": worst[key][r] for key in ("linf", "l2", "ssim", "psnr")},
                "worst_real_metric": there["real"]["worst_metric"][r],
                "worst_real_success": there["real"]["worst_success"][r],
                "worst_transfer_metric": there["transfer"]["worst_metric"][r],
                "worst_transfer_success": there["transfer"]["worst_success"][r]} if attacked else {})))
        if keep_chosen and keep_only is None:
            result.adversarial[(ids[image], names[k])] = state.chosen[r].detach().cpu()
        elif keep_chosen and ids[image] in keep_only:
            result.adversarial[(ids[image], names[k])] = state.chosen[r].detach().cpu().clone()
        if keep_best and attacked:
            result.best[(ids[image], names[k])] = (columns["best_score"][r], state.best[r].detach().cpu(),
                                                   columns["best_at"][r] + columns["offset"][r])
    return result
