"""The verdicts the engine gives besides the steps' own: before the steps, which replicas are set
aside (clean mode); after them, the full-size verdict of a capped attack's chosen images, and the
judgments of adversarial images by another prediction (a transfer model, or the real pipeline of
the attacked one: 8-bit image, the loaders' resize). Scores are those of :mod:`medis.attacks.scoring`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from medis.attacks.engine.phases import Run
from medis.attacks.engine.replicas import Replicas
from medis.attacks.scoring import Scorer
from medis.models.frontend import VictimOutput, predict_mask

__all__ = ["judge_at_full_size", "judged_elsewhere", "set_aside"]


def set_aside(run: Run, state: Replicas, images: torch.Tensor) -> None:
    """Clean mode: predict the clean images once, and set aside the replicas whose clean prediction
    already satisfies the success rule (a clean failure; a prediction already at its target). The
    clean pass is counted on each image's first replica. With a loss resolution the clean images are
    also predicted at that size (the steps' targeted scores); the verdict is the full-size one."""
    parts = images.split(run.max_batch or images.shape[0])
    state.clean_pred = torch.cat([predict_mask(run.victim, part) for part in parts])
    state.step_clean = state.clean_pred
    if state.capped:  # the steps' scores compare with the clean prediction at their own size
        state.step_clean = torch.cat([predict_mask(run.victim, part, state.step_size) for part in parts])
    run.result.forward_replicas += images.shape[0]
    state.forwards[: images.shape[0]] += 1  # loss-major: rows 0..B-1 are the first loss's replicas
    clean = state.clean_pred[state.image_of.to(state.clean_pred.device)]
    raw, judged = run.scorer(clean, state.reference, clean)
    state.clean_score = raw
    state.set_aside = run.criteria.succeeds(judged)
    state.done |= state.set_aside
    state.trajectory[:, 0] = torch.where(state.set_aside, raw, state.trajectory[:, 0])
    state.last_score = torch.where(state.set_aside, raw, state.last_score)


def judged_elsewhere(predict: Callable[[torch.Tensor], torch.Tensor], state: Replicas, adversarial: torch.Tensor,
                     images: torch.Tensor, scorer: Scorer, max_batch: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The score of every replica's ``adversarial`` image (R, 3, H, W) by another prediction
    (``predict``: images -> (n, 1, H, W) bool; a transfer model's, or the real pipeline of the
    attacked one) and its success there; clean-mode scores are taken against that prediction of the
    clean ``images`` (B, 3, H, W). (R,), (R,)."""
    rows = max_batch or state.count
    with torch.no_grad():
        clean = None
        if scorer.needs_clean:
            clean_pred = torch.cat([predict(part) for part in images.split(rows)])
            clean = clean_pred[state.image_of.to(clean_pred.device)]
        parts = [scorer(predict(adversarial[idx]), state.reference[idx], None if clean is None else clean[idx])
                 for idx in torch.arange(state.count).split(rows)]
    raw, judged = (torch.cat(values) for values in zip(*parts))
    return raw, scorer.criteria.succeeds(judged)


def judge_at_full_size(victim: Callable[..., VictimOutput], state: Replicas, scorer: Scorer, rows: int | None) -> int:
    """The final verdicts of a capped attack: every attacked replica's chosen image (R, 3, H, W) is
    predicted at full size and scored against its full-size reference (and clean prediction); that
    score becomes its recorded metric, and its success the full-size one (a success at the loss
    resolution that does not hold at full size is no success; a chosen image that succeeds at full
    size is one, at the step it was chosen). Returns the forward passes spent (``rows`` at a time)."""
    attacked = (~(state.set_aside | state.skipped)).nonzero().squeeze(1).cpu()
    if attacked.numel() == 0:
        return 0
    raws, judgments = [], []
    with torch.no_grad():
        for part in attacked.split(rows or attacked.numel()):
            index = part.to(state.x.device)
            clean = None if state.clean_pred is None else state.clean_pred[state.image_of[part].to(state.x.device)]
            raw, judged = scorer(predict_mask(victim, state.chosen[index]), state.reference[index], clean)
            raws.append(raw)
            judgments.append(judged)
    index = attacked.to(state.x.device)
    raw, ok = torch.cat(raws), scorer.criteria.succeeds(torch.cat(judgments))
    evaluated = ~torch.isnan(state.trajectory[index])
    positions = torch.arange(evaluated.shape[1], device=evaluated.device)
    last_at = torch.where(evaluated, positions, torch.full_like(positions, -1)).amax(1)
    earlier = state.success_at[index]
    state.success_at[index] = torch.where(ok, torch.where(earlier >= 0, earlier, last_at), torch.full_like(earlier, -1))
    state.success_score[index] = torch.where(ok, raw, torch.full_like(raw, float("nan")))
    state.last_score[index] = raw
    state.forwards[index] += 1
    return attacked.numel()
