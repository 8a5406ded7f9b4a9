"""The batched multi-loss iterative attack: every (image, loss) pair is a replica of ONE batch.

MedIS (Shukla, Gupta, Gupta, Multimedia Tools and Applications 2023) attacks one image with one
surrogate loss at a time. Here B images × K losses become B·K replicas that step together:

- one forward pass per record step for all active replicas (in chunks of ``max_batch``), the
  score of each recorded, then the input gradient of each replica's own loss (losses are per
  sample, so one backward serves the whole chunk; gradients only w.r.t. the input: the model is
  in eval mode and its parameters are frozen for the duration);
- the attack's update rule moves every replica (the engine knows no rule by name: it calls the
  rule's ``init`` and ``step``, :mod:`medis.attacks.rules`);
- a replica leaves the batch the moment its stop rule holds (compaction): no forward or backward
  is spent on it afterwards; the boolean ``active`` mask is the one thing read back to the host
  per step;
- ``fusion_only``: once an image has succeeded with some loss at record s, its other losses stop,
  since they can no longer win the parallel fusion (fewest steps first); the fused table is
  unchanged, the per-loss table then shows those losses as not successful (``pruned``);
- ``stop_image``: once one replica of an image meets its stop rule (in a cascade: the image is
  broken down to the floor, :mod:`medis.attacks.ensemble`), the image's other replicas stop too:
  no loss can find a worse case than one at the floor (``pruned`` as well).

Success/stop rules and the two bookkeeping modes are in :mod:`medis.attacks.criteria`; one
:class:`~medis.records.Record` per (image, loss) is returned (:mod:`medis.attacks.recording`), the
flat table that :mod:`medis.fusion` turns into ASR and distortion.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch

from medis.attacks.attack import Attack
from medis.attacks.budget import check_number
from medis.attacks.criteria import Criteria
from medis.attacks.kinds import TargetKind, target_kind
from medis.attacks.loss_resolution import MIN_LOSS_SIZE, downscale_masks, judge_at_full_size, loss_shape
from medis.attacks.memory_budget import AUTO_BUDGET, parse_budget
from medis.attacks.max_batch import AUTO
from medis.attacks.replica_batch import replica_batch
from medis.attacks.projection import per_sample
from medis.attacks.recording import AttackResult, judged_elsewhere, records_of
from medis.attacks.replicas import LossFn, Replicas, better, replica_losses
from medis.attacks.rules import StepInfo
from medis.attacks.scoring import Scorer
from medis.errors import ConfigError
from medis.losses import LossContext, build_loss, logit_forms
from medis.models.frontend import VictimOutput, frozen, predict_mask

__all__ = ["AttackResult", "EngineOptions", "StepProgress", "run_attack"]

VictimFn = Callable[[torch.Tensor], VictimOutput]


@dataclass(frozen=True)
class StepProgress:
    """Where the step loop of one same-size batch stands (:attr:`EngineOptions.progress`).

    Attributes:
        size: the images' (H, W); images: images in the batch; replicas: (image, loss) replicas.
        step: the step about to run (``steps`` once the batch is done); steps: records at most.
        active: replicas still running (0 once done).
        per_pass: replicas per forward/backward pass (the resolved ``max_batch``).
        loss_size: the (h, w) of the losses and step scores (``size`` unless ``loss_size`` caps it).
    """

    size: tuple[int, int]
    images: int
    replicas: int
    step: int
    steps: int
    active: int
    per_pass: int = 0
    loss_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs an attack (not what the attack is).

    Attributes:
        max_batch: most replicas per forward pass (``None``: all active replicas at once;
            ``"auto"``: the most whose state and step fit in ``memory_budget``, on CUDA also in the
            device, :mod:`medis.attacks.replica_batch`).
        memory_budget: bytes (or ``"6GB"``, ``"6GiB"``, ...) the attack's tensors may take with
            ``max_batch="auto"``; ``"auto"``: half the available memory, at most 4 GiB (CUDA: what the
            device holds, probed), :mod:`medis.attacks.memory_budget`.
        loss_size: clean mode: losses and per-step scores of images whose longer side exceeds this
            many pixels at that size (:mod:`medis.attacks.loss_resolution`); the final verdicts stay
            at full size. ``None``: full size.
        compaction: finished replicas leave the batch (off only to check that it changes nothing).
        fusion_only: stop an image's other losses once one has succeeded (module docstring).
        keep_images: return the chosen adversarial image of every replica (``keep_only``: of the
            replicas of these image ids only, as copies, so that the rest of the state is freed).
        stop_image: stop an image's other losses once one has met its stop rule (module docstring).
        keep_best: return every replica's best admissible iterate and its score (a cascade's warm starts).
        progress: called with a :class:`StepProgress` before every step of each same-size batch and
            once when it ends (progress bars; not part of the attack's result).
    """

    max_batch: int | str | None = None
    memory_budget: int | str = AUTO_BUDGET
    loss_size: int | None = None
    compaction: bool = True
    fusion_only: bool = False
    keep_images: bool = False
    keep_only: tuple[str, ...] | None = None
    stop_image: bool = False
    keep_best: bool = False
    progress: Callable[[StepProgress], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_batch != AUTO:
            check_number(self.max_batch, "engine.max_batch", low=1, optional=True, integer=True)
        parse_budget(self.memory_budget)
        check_number(self.loss_size, "engine.loss_size", low=MIN_LOSS_SIZE, optional=True, integer=True)
        for key in ("compaction", "fusion_only", "keep_images", "stop_image", "keep_best"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"engine.{key} must be true or false, got {getattr(self, key)!r}")


@dataclass
class _Run:
    """What the step loop of one same-size batch reads."""

    victim: VictimFn
    attack: Attack
    target: TargetKind
    criteria: Criteria
    scorer: Scorer
    loss_fns: dict[str, LossFn]
    max_batch: int | None
    options: EngineOptions
    result: AttackResult = field(default_factory=lambda: AttackResult(records=[]))


def _resolve_losses(losses: Sequence[str] | Mapping[str, LossFn] | None, attack: Attack) -> dict[str, LossFn]:
    if losses is None:
        losses = attack.losses
    if losses is None:
        raise ConfigError(f"attack {attack.name!r} has no losses: give its losses or pass losses=...")
    resolved = dict(losses) if isinstance(losses, Mapping) else {name: build_loss(name, attack.mode) for name in losses}
    if not resolved:
        raise ConfigError("the attack needs at least one loss")
    return resolved


def _attack_same_size(run: _Run, images: torch.Tensor, references: torch.Tensor, ids: Sequence[str], dataset: str,
                      seed: int, skipped: torch.Tensor, transfer: VictimFn | None = None,
                      start: torch.Tensor | None = None, start_steps: Sequence[int] | None = None) -> AttackResult:
    criteria, names = run.criteria, list(run.loss_fns)
    state = Replicas(images, references, names, run.attack, run.target, seed, ids, criteria.records,
                     track_best=transfer is not None or run.options.keep_best, start=start, start_steps=start_steps)
    state.skipped = skipped.to(state.done.device)
    state.done |= state.skipped
    state.step_size = loss_shape(state.step_size, run.options.loss_size)
    state.step_reference = downscale_masks(state.reference, state.step_size)
    if run.scorer.needs_clean:
        _set_aside(run, state, images)
    tell = run.options.progress
    where = partial(StepProgress, (images.shape[-2], images.shape[-1]), images.shape[0], state.count,
                    steps=criteria.records, per_pass=min(run.max_batch or state.count, state.count),
                    loss_size=state.step_size)
    for position in range(criteria.records):
        remaining = (~state.done).nonzero().squeeze(1).cpu()  # the one host read per step
        if tell is not None:
            tell(where(step=position, active=remaining.numel()))
        if remaining.numel() == 0:
            break
        active = remaining if run.options.compaction else torch.arange(state.count)
        update = criteria.may_update(position)
        stage = run.attack.rule.stage(position, run.attack.budget.steps)
        context = LossContext(step=position - stage.start, total_steps=stage.length, targeted=run.target.targeted)
        for chunk in active.split(run.max_batch or active.numel()):
            _step_chunk(run, state, _as_index(chunk, state.x.device), chunk, position, update, context,
                        stage.admissible)
        if not update:
            state.done[:] = True
        if run.options.fusion_only:
            _prune_images(state, images.shape[0], state.success_at >= 0)
        if run.options.stop_image:
            _prune_images(state, images.shape[0], state.stopped)
    if tell is not None:
        tell(where(step=criteria.records, active=0))
    if state.capped:
        run.result.forward_replicas += judge_at_full_size(run.victim, state, run.scorer, run.max_batch)
    transferred = None
    if transfer is not None:
        transferred = judged_elsewhere(partial(predict_mask, transfer), state, state.best, images, run.scorer,
                                       run.max_batch)
    real = None
    if callable(getattr(run.victim, "real_pipeline", None)):
        real = judged_elsewhere(partial(predict_mask, run.victim, real=True), state, state.chosen, images, run.scorer,
                                run.max_batch)
    return records_of(state, names, run.attack, run.target.name, criteria, ids, dataset,
                      (run.options.keep_images, run.options.keep_best), transferred, real, run.result, run.max_batch,
                      run.options.keep_only)



def _prune_images(state: Replicas, batch: int, finished: torch.Tensor) -> None:
    """Stop the unfinished replicas of every image with a ``finished`` (R,) replica; those that had
    not succeeded are marked ``pruned``."""
    image_of = state.image_of.to(state.done.device)
    finished_image = torch.zeros(batch, dtype=torch.bool, device=state.done.device)
    finished_image.index_put_((image_of,), finished, accumulate=True)
    prune = finished_image[image_of] & ~state.done
    state.pruned |= prune & (state.success_at < 0)
    state.done |= prune


def _set_aside(run: _Run, state: Replicas, images: torch.Tensor) -> None:
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


def _as_index(chunk: torch.Tensor, device: torch.device) -> torch.Tensor | slice:
    """A contiguous run of replica indices becomes a slice (views, in-place writes: no gather or
    scatter copies of the image state); any other set stays an index tensor on the device."""
    first, last = int(chunk[0]), int(chunk[-1])
    if last - first + 1 == chunk.numel():
        return slice(first, last + 1)
    return chunk.to(device)


def _step_chunk(run: _Run, state: Replicas, chunk: torch.Tensor | slice, chunk_host: torch.Tensor, position: int,
                update: bool, context: LossContext, admissible: bool = True) -> None:
    """Evaluate, record and (where the rules allow) update the replicas of one chunk. An iterate
    outside the budget (a stage of a larger radius, ``admissible`` false) is scored for the rule but
    neither recorded nor judged."""
    criteria = run.criteria
    moving = ~state.done[chunk]  # all True under compaction; finished replicas keep their records otherwise
    live = moving & admissible
    x = state.x[chunk].detach().requires_grad_(update)
    with torch.set_grad_enabled(update):
        out = run.victim(x, state.step_size) if state.capped else run.victim(x)
        reference = state.step_reference[chunk]
        clean = None if state.step_clean is None else state.step_clean[state.image_of[chunk_host].to(x.device)]
        raw, score = run.scorer(out.prob.detach() > 0.5, reference, clean)
        state.trajectory[chunk, position] = torch.where(live, raw, state.trajectory[chunk, position])
        state.last_score[chunk] = torch.where(live, score, state.last_score[chunk])
        unsolved = live & (state.success_at[chunk] < 0)
        newly = unsolved & criteria.succeeds(score)
        state.success_at[chunk] = torch.where(newly, torch.full_like(state.success_at[chunk], position),
                                              state.success_at[chunk])
        state.success_score[chunk] = torch.where(newly, score, state.success_score[chunk])
        if admissible:
            state.chosen[chunk] = torch.where(unsolved.view(-1, 1, 1, 1), x.detach(), state.chosen[chunk])
        if state.best is not None:
            improved = live & better(raw, state.best_score[chunk], run.target.targeted)
            state.best_score[chunk] = torch.where(improved, raw, state.best_score[chunk])
            state.best_at[chunk] = torch.where(improved, torch.full_like(state.best_at[chunk], position),
                                               state.best_at[chunk])
            state.best[chunk] = torch.where(improved.view(-1, 1, 1, 1), x.detach(), state.best[chunk])
        stop = criteria.stops(raw) & live
        run.result.forward_replicas += chunk_host.numel()
        state.forwards[chunk] += 1
        if update:
            values = replica_losses(out, reference.to(x.dtype), state.loss_of[chunk_host], run.loss_fns, context)
            (grad,) = torch.autograd.grad(values.sum(), x)
            run.result.backward_replicas += chunk_host.numel()
            state.backwards[chunk] += 1
            tracked = None
            if run.attack.rule.tracks_cross_entropy:
                tracked = logit_forms.bce_loss(logit_forms.fused_logit(out), reference.to(out.prob.dtype)).detach()
            info = StepInfo(values.detach(), raw, position, run.attack.budget.steps, tracked)
            _move(run.attack, state, chunk, x.detach(), grad, info, moving & ~stop)
    state.done[chunk] |= stop
    state.stopped[chunk] |= stop


def _move(attack: Attack, state: Replicas, chunk: torch.Tensor | slice, x: torch.Tensor, grad: torch.Tensor,
          info: StepInfo, moving: torch.Tensor) -> None:
    """Apply the update rule to the moving replicas of a chunk (the others keep image and rule state)."""
    rule_state = {key: value[chunk] for key, value in state.rule_state.items()}
    moved, rule_state = attack.rule.step(x, grad, state.clean(chunk), state.direction[chunk], rule_state, info,
                                         attack.budget)
    state.x[chunk] = torch.where(moving.view(-1, 1, 1, 1), moved, x)
    for key, value in rule_state.items():
        state.rule_state[key][chunk] = torch.where(per_sample(moving, value), value.to(state.rule_state[key]),
                                                   state.rule_state[key][chunk])


def _as_list(tensors: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return list(tensors.unbind(0)) if isinstance(tensors, torch.Tensor) else list(tensors)


def run_attack(victim: VictimFn, images: torch.Tensor | Sequence[torch.Tensor],
               reference: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, Sequence[torch.Tensor]],
               attack: Attack | None = None, *, target: str | TargetKind = "untargeted",
               losses: Sequence[str] | Mapping[str, LossFn] | None = None, options: EngineOptions | None = None,
               seed: int = 0, ids: Sequence[str] | None = None, dataset: str = "",
               transfer_to: VictimFn | None = None, skip: Mapping[str, Sequence[bool]] | None = None,
               start: Sequence[torch.Tensor] | None = None, start_steps: Sequence[int] | None = None) -> AttackResult:
    """Attack ``images`` with every loss of ``attack`` at once.

    Args:
        victim: a :class:`~medis.models.frontend.Victim` (or any callable of (R, 3, H, W) images in
            [0, 1] returning a :class:`~medis.models.frontend.VictimOutput` at the images' size).
        images: (B, 3, H, W) in [0, 1], or a list of (3, H_i, W_i) of mixed sizes (grouped by size).
        reference: ground truths (untargeted) or targets (targeted), (B, 1, H, W) in {0, 1} or a list
            of (1, H_i, W_i); or ``{loss: references}`` when each loss has its own targets (the paper's
            random targets).
        attack: the :class:`~medis.attacks.attack.Attack` (default: clean-mode MedIS, 10 sign steps of
            1/255; its losses are those of ``losses`` then).
        target: the target kind of ``reference`` (:data:`~medis.attacks.kinds.TARGET_KINDS`): whether
            the attack is targeted, and the records' ``target``.
        losses: the losses to run instead of ``attack.losses``: registry names (built in
            ``attack.mode``) or ``{label: loss_fn}`` (an ensemble's qualified labels).
        options: :class:`EngineOptions` (batching, compaction, fusion_only, keep_images).
        seed: the random start's seed.
        ids: image ids for the records (default ``"0", "1", ...``).
        dataset: data set name for the records.
        transfer_to: another victim (black-box transfer): each replica's best adversarial image (by
            the recorded score) is judged on it too, giving ``transfer_metric`` and ``transfer_success``.
        skip: ``{loss: one flag per image}``: flagged (image, loss) pairs are not attacked and give no
            record (the paper's per-loss random targets that equal an image's ground truth).
        start: one (3, H_i, W_i) image per image to start from instead of the clean image (or a
            random start): a cascade's warm start from the best adversarial image found so far.
        start_steps: the updates spent reaching each starting image: the records' ``steps`` count on
            from there, so a warm-started success is not a success "at the first record".

    Returns:
        :class:`~medis.attacks.recording.AttackResult` with one :class:`~medis.records.Record` per
        (image, loss), in image order then loss order.
    """
    attack = attack or Attack()
    options = options or EngineOptions()
    kind = target_kind(target)
    if attack.mode == "paper" and getattr(victim, "fusion", "paper") != "paper":
        raise ConfigError(f"paper mode needs the victim's paper fusion (model.fusion=paper), got {victim.fusion!r}")
    if attack.mode == "paper" and options.loss_size is not None:
        raise ConfigError(f"engine.loss_size={options.loss_size} is a clean-mode option: paper mode computes its "
                          f"losses and scores at full size (set engine.loss_size=null)")
    loss_fns = _resolve_losses(losses, attack)
    image_list = _as_list(images)
    ids = list(ids) if ids is not None else [str(i) for i in range(len(image_list))]
    if isinstance(reference, Mapping):
        missing = [name for name in loss_fns if name not in reference]
        if missing:
            raise ConfigError(f"per-loss references lack loss(es) {missing}")
        per_loss = {name: _as_list(reference[name]) for name in loss_fns}
    else:
        shared = _as_list(reference)
        per_loss = {name: shared for name in loss_fns}
    starts = _as_list(start) if start is not None else None
    if starts is not None and len(starts) != len(image_list):
        raise ConfigError(f"{len(image_list)} images but {len(starts)} starting images")
    if len(ids) != len(image_list) or any(len(refs) != len(image_list) for refs in per_loss.values()):
        raise ConfigError(f"{len(image_list)} images but {len(ids)} ids / references of other lengths")
    model = victim.model if hasattr(victim, "model") else victim
    if isinstance(model, torch.nn.Module) and model.training:
        warnings.warn("the victim was in train mode; the attack runs it in eval mode (batch-norm running "
                      "statistics, no dropout) and restores the mode afterwards", stacklevel=2)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(image_list):
        groups.setdefault(tuple(image.shape), []).append(i)
    criteria = attack.judged(kind.targeted)
    run = _Run(victim, attack, kind, criteria, Scorer(attack.mode, kind, criteria), loss_fns, None, options)
    with contextlib.ExitStack() as stack:
        for network in (model, getattr(transfer_to, "model", transfer_to)):
            stack.enter_context(frozen(network))
        for shape, members in groups.items():
            run.max_batch = replica_batch(victim, loss_fns, attack, shape, len(members), max_batch=options.max_batch,
                                          memory_budget=options.memory_budget, loss_size=options.loss_size,
                                          track_best=transfer_to is not None or options.keep_best,
                                          device=image_list[members[0]].device, dtype=image_list[members[0]].dtype)
            batch = torch.stack([image_list[i] for i in members])
            refs = torch.stack([torch.stack([per_loss[name][i] for i in members]) for name in loss_fns])
            refs = refs.reshape(-1, *refs.shape[2:]).to(batch.device, batch.dtype)  # loss-major replicas
            skipped = torch.tensor([bool(skip[name][i]) if skip and name in skip else False
                                    for name in loss_fns for i in members])
            first = None if starts is None else torch.stack([starts[i] for i in members]).to(batch)
            offsets = None if start_steps is None else [int(start_steps[i]) for i in members]
            _attack_same_size(run, batch, refs, [ids[i] for i in members], dataset, seed, skipped, transfer_to, first,
                              offsets)
    position = {image_id: i for i, image_id in enumerate(ids)}
    names = list(loss_fns)
    run.result.records.sort(key=lambda rec: (position[rec.image_id], names.index(rec.loss)))
    return run.result
