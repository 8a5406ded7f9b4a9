"""The verdicts the engine gives besides the steps' own: before the steps, which replicas are set
aside (clean mode); after them, the full-size verdicts of a capped attack's images, and the
judgments of both images of every replica (the chosen one and the worst case) by another prediction
(a transfer model, or the real pipeline of the attacked one: the 8-bit image within the budget, the
loaders' resize), with the replicas that path already fails set aside. Scores are those of
:mod:`medis.attacks.scoring`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from medis.attacks.engine.phases import Run
from medis.attacks.engine.replicas import Replicas
from medis.attacks.engine.results import Elsewhere
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
    clean = state.clean_pred[state.image_on_device]
    raw, judged = run.scorer(clean, state.reference, clean)
    state.clean_score = raw
    state.set_aside = run.criteria.succeeds(judged)
    state.done |= state.set_aside
    state.trajectory[:, 0] = torch.where(state.set_aside, raw, state.trajectory[:, 0])
    state.last_score = torch.where(state.set_aside, raw, state.last_score)


def judged_elsewhere(predict: Callable[[torch.Tensor], torch.Tensor], state: Replicas, images: torch.Tensor,
                     scorer: Scorer, max_batch: int | None,
                     quantize: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> Elsewhere:
    """Both images of every replica (:class:`Elsewhere`) judged by another prediction (``predict``:
    images -> (n, 1, H, W) bool; a transfer model's, or the real pipeline of the attacked one), each
    first made the image that path reads (``quantize(adversarial, clean)``: the 8-bit file within the
    budget, for the real pipeline). Clean-mode scores are taken against that path's prediction of
    the clean ``images`` (B, 3, H, W), and the replicas whose clean image that path already fails are
    set aside there."""
    rows = max_batch or state.count
    criteria = scorer.criteria
    with torch.no_grad():
        clean = None
        aside = torch.zeros(state.count, dtype=torch.bool, device=state.done.device)
        if scorer.needs_clean:
            clean_pred = torch.cat([predict(part) for part in images.split(rows)])
            clean = clean_pred[state.image_on_device]
            aside = torch.cat([criteria.succeeds(scorer(clean[idx], state.reference[idx], clean[idx])[1])
                               for idx in _blocks(state.count, rows)]).to(aside.device)
        verdicts = []
        for adversarial in (state.chosen, state.best):
            parts = []
            for idx in _blocks(state.count, rows):
                seen = adversarial[idx] if quantize is None else quantize(adversarial[idx], state.clean(idx))
                parts.append(scorer(predict(seen), state.reference[idx], None if clean is None else clean[idx]))
            raw, judged = (torch.cat(values) for values in zip(*parts))
            verdicts.append((raw, criteria.succeeds(judged)))
    return Elsewhere(verdicts[0], verdicts[1], aside)


def _blocks(count: int, rows: int) -> list[slice]:
    """``count`` rows in consecutive blocks of ``rows`` (slices: views of the state, no index upload)."""
    return [slice(start, min(start + rows, count)) for start in range(0, count, rows)]


def judge_at_full_size(victim: Callable[..., VictimOutput], state: Replicas, scorer: Scorer, rows: int | None) -> int:
    """The final verdicts of a capped attack: every attacked replica's chosen image and best iterate
    (R, 3, H, W) are predicted at full size and scored against the full-size reference (and clean
    prediction). The chosen image's score becomes the recorded metric, its success the full-size one
    (a success at the loss resolution that does not hold at full size is no success; a chosen image
    that succeeds at full size is one, at the step it was chosen); the best iterate's becomes the
    worst case. Returns the forward passes spent (``rows`` at a time, two per replica)."""
    attacked = (~(state.set_aside | state.skipped)).nonzero().squeeze(1).cpu()
    if attacked.numel() == 0:
        return 0
    scores: dict[str, list] = {"chosen": [], "judged": [], "best": []}
    with torch.no_grad():
        for part in attacked.split(rows or attacked.numel()):
            index = part.to(state.x.device)
            clean = None if state.clean_pred is None else state.clean_pred[state.image_of[part].to(state.x.device)]
            raw, judged = scorer(predict_mask(victim, state.chosen[index]), state.reference[index], clean)
            scores["chosen"].append(raw)
            scores["judged"].append(judged)
            scores["best"].append(scorer(predict_mask(victim, state.best[index]), state.reference[index], clean)[0])
    index = attacked.to(state.x.device)
    raw, ok = torch.cat(scores["chosen"]), scorer.criteria.succeeds(torch.cat(scores["judged"]))
    evaluated = ~torch.isnan(state.trajectory[index])
    positions = torch.arange(evaluated.shape[1], device=evaluated.device)
    last_at = torch.where(evaluated, positions, torch.full_like(positions, -1)).amax(1)
    earlier = state.success_at[index]
    state.success_at[index] = torch.where(ok, torch.where(earlier >= 0, earlier, last_at), torch.full_like(earlier, -1))
    state.success_score[index] = torch.where(ok, raw, torch.full_like(raw, float("nan")))
    state.last_score[index] = raw
    best = torch.cat(scores["best"])
    state.best_score[index] = torch.where(torch.isnan(state.best_score[index]), state.best_score[index], best)
    state.forwards[index] += 2
    return 2 * attacked.numel()
