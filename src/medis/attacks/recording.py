"""What the engine returns: the scores it records, and one record per replica.

The recorded score of a prediction is its mIoU with the replica's reference
(:func:`medis.metrics.target_score`: the paper's 3-decimal two-class mIoU in paper mode); in paper
mode the success rule reads it doubled for uniform (all-white / all-black) targets, as the paper
reports them (docs/method.md, "Metrics").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from medis.attacks.attack import Attack
from medis.attacks.criteria import Criteria
from medis.attacks.replicas import Replicas
from medis.metrics import perturbation_norms, ssim_psnr, target_score
from medis.models.frontend import VictimOutput
from medis.records import Record

__all__ = ["AttackResult", "records_of", "scores", "transfer_scores"]


@dataclass
class AttackResult:
    """What an attack returns.

    Attributes:
        records: one :class:`~medis.records.Record` per (image, loss), in image order then loss order.
        adversarial: ``{(image_id, loss): (3, H, W)}`` chosen adversarial images (``keep_images``).
        forward_replicas: replica forward passes run; ``backward_replicas``: replica backward passes.
    """

    records: list[Record]
    adversarial: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    forward_replicas: int = 0
    backward_replicas: int = 0

    def extend(self, other: "AttackResult") -> None:
        self.records.extend(other.records)
        self.adversarial.update(other.adversarial)
        self.forward_replicas += other.forward_replicas
        self.backward_replicas += other.backward_replicas


def scores(prob: torch.Tensor, reference: torch.Tensor, mode: str, double: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(recorded score, score the success rule reads) of (R, 1, H, W) probabilities, each (R,): the
    paper's ×2 correction for uniform targets (``double``) applies to the second only."""
    raw = target_score(prob.detach() > 0.5, reference, mode)
    return raw, raw * 2.0 if double else raw


def transfer_scores(victim: Callable[[torch.Tensor], VictimOutput], state: Replicas, criteria: Criteria, mode: str,
                    double: bool, max_batch: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Score of every replica's best adversarial image on another model, and its success. (R,), (R,)."""
    parts = []
    with torch.no_grad():
        for rows in torch.arange(state.count).split(max_batch or state.count):
            parts.append(scores(victim(state.best[rows]).prob, state.reference[rows], mode, double))
    raw, score = (torch.cat(values) for values in zip(*parts))
    return raw, criteria.succeeds(score)


def records_of(state: Replicas, names: list[str], attack: Attack, target: str, criteria: Criteria,
               ids: Sequence[str], dataset: str, keep_images: bool,
               transferred: tuple[torch.Tensor, torch.Tensor] | None, result: AttackResult) -> AttackResult:
    """Append one record per replica to ``result``, with norms and SSIM/PSNR of the chosen
    adversarial image (at the success record, else the last evaluated); returns ``result``."""
    norms = perturbation_norms(state.chosen, state.x0)
    ssim, psnr = ssim_psnr(state.chosen, state.x0)
    success = (state.success_at >= 0).cpu()
    columns = {name: t.detach().cpu().tolist() for name, t in
               {"success_at": state.success_at, "success_score": state.success_score, "last": state.last_score,
                "ssim": ssim, "psnr": psnr, "pruned": state.pruned, "forwards": state.forwards,
                "backwards": state.backwards, **norms}.items()}
    transfer_metric = transfer_success = [None] * state.count
    if transferred is not None:
        transfer_metric, transfer_success = (t.detach().cpu().tolist() for t in transferred)
    trajectory = state.trajectory.cpu()
    eps = attack.budget.eps
    for r in range(state.count):
        image, k = int(state.image_of[r]), int(state.loss_of[r])
        ok = bool(success[r])
        result.records.append(Record(
            dataset=dataset, image_id=ids[image], target=target, loss=names[k], mode=attack.mode,
            eps=None if eps is None else float(eps), success=ok,
            steps=columns["success_at"][r] + criteria.first_index if ok else None,
            metric=columns["success_score"][r] if ok else columns["last"][r],
            pruned=bool(columns["pruned"][r]),
            **{key: columns[key][r] for key in ("linf", "l2", "linf_255", "l2_255", "ssim", "psnr")},
            trajectory=tuple(v for v in trajectory[r].tolist() if v == v), attack=attack.name,
            forwards=columns["forwards"][r], backwards=columns["backwards"][r],
            transfer_metric=transfer_metric[r],
            transfer_success=None if transfer_success[r] is None else bool(transfer_success[r])))
        if keep_images:
            result.adversarial[(ids[image], names[k])] = state.chosen[r].detach().cpu()
    return result
