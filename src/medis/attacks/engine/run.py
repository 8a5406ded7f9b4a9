"""The batched multi-loss iterative attack: every (image, loss) pair is a replica of ONE batch.

MedIS (Shukla, Gupta, Gupta, Multimedia Tools and Applications 2023) attacks one image with one
surrogate loss at a time. Here B images × K losses become B·K replicas that step together:

- each step runs the phases of :mod:`medis.attacks.engine.phases` on all active replicas, in
  blocks of ``max_batch`` (:mod:`medis.attacks.batching`): score and record the iterate, the
  rule's gradient point, the gradient of each replica's own loss (losses are per sample, so one
  backward serves the whole block; gradients only w.r.t. the input: the model is in eval mode and
  its parameters are frozen for the duration), the rule's step, the projection onto the budget
  (the engine knows no rule by name: it calls the rule's hooks, :mod:`medis.attacks.rules`);
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
:class:`~medis.results.records.Record` per (image, loss) is returned (:mod:`medis.attacks.engine.results`), the
flat table that :mod:`medis.results.fusion` turns into ASR and distortion.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch

from medis.attacks.batching.loss_size import downscale_masks, loss_shape
from medis.attacks.batching.plan import replica_batch
from medis.attacks.composition import Attack
from medis.attacks.engine.options import EngineOptions, StepProgress
from medis.attacks.engine.phases import Rows, Run, Step, step_rows
from medis.attacks.engine.replicas import LossFn, Replicas
from medis.attacks.engine.results import AttackResult, records_of
from medis.attacks.engine.verdicts import judge_at_full_size, judged_elsewhere, set_aside
from medis.attacks.scoring import Scorer
from medis.attacks.targets import TargetKind, target_kind
from medis.errors import ConfigError
from medis.losses import build_loss
from medis.models.frontend import VictimOutput, frozen, predict_mask

__all__ = ["AttackResult", "EngineOptions", "StepProgress", "run_attack"]

VictimFn = Callable[[torch.Tensor], VictimOutput]


def _resolve_losses(losses: Sequence[str] | Mapping[str, LossFn] | None, attack: Attack) -> dict[str, LossFn]:
    if losses is None:
        losses = attack.losses
    if losses is None:
        raise ConfigError(f"attack {attack.name!r} has no losses: give its losses or pass losses=...")
    resolved = dict(losses) if isinstance(losses, Mapping) else {name: build_loss(name, attack.mode) for name in losses}
    if not resolved:
        raise ConfigError("the attack needs at least one loss")
    return resolved


def _tracked_losses(attack: Attack, loss_fns: Mapping[str, LossFn]) -> dict[str, LossFn] | None:
    """``{label: loss}`` the rule tracks for each loss (its registry name: the label after an
    ensemble's ``<member>/``), the attacked loss itself where it names none; ``None`` if it names none."""
    names = {label: attack.rule.tracked_loss(label.rsplit("/", 1)[-1]) for label in loss_fns}
    if all(name is None for name in names.values()):
        return None
    return {label: loss_fns[label] if name is None else build_loss(name, attack.mode) for label, name in names.items()}


def _attack_same_size(run: Run, images: torch.Tensor, references: torch.Tensor, ids: Sequence[str], dataset: str,
                      seed: int, skipped: torch.Tensor, transfer: VictimFn | None = None,
                      start: torch.Tensor | None = None, start_steps: Sequence[int] | None = None) -> AttackResult:
    criteria, names = run.criteria, list(run.loss_fns)
    state = Replicas(images, references, names, run.attack, run.target, seed, ids, criteria.records,
                     start=start, start_steps=start_steps)
    state.skipped = skipped.to(state.done.device)
    state.done |= state.skipped
    state.step_size = loss_shape(state.step_size, run.options.loss_size)
    state.step_reference = downscale_masks(state.reference, state.step_size)
    if run.scorer.needs_clean:
        set_aside(run, state, images)
    tell = run.options.progress
    where = partial(StepProgress, (images.shape[-2], images.shape[-1]), images.shape[0], state.count,
                    steps=criteria.records, per_pass=min(run.max_batch or state.count, state.count),
                    loss_size=state.step_size)
    for position in range(criteria.records):
        remaining = (~state.done).cpu().nonzero().squeeze(1)  # the one host read per step
        if tell is not None:
            tell(where(step=position, active=remaining.numel()))
        if remaining.numel() == 0:
            break
        active = remaining if run.options.compaction else torch.arange(state.count)
        step = Step.of(run, position)
        for chunk in active.split(run.max_batch or active.numel()):
            step_rows(run, state, Rows.of(chunk, state.x.device), step)
        if not step.update:
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
        transferred = judged_elsewhere(partial(predict_mask, transfer), state, images, run.scorer, run.max_batch)
    real = None
    if callable(getattr(run.victim, "real_pipeline", None)):
        real = judged_elsewhere(partial(predict_mask, run.victim, real=True), state, images, run.scorer,
                                run.max_batch, quantize=run.attack.budget.quantize)
    return records_of(state, names, run.attack, run.target.name, criteria, ids, dataset,
                      (run.options.keep_images, run.options.keep_best), transferred, real, run.result, run.max_batch,
                      run.options.keep_only)


def _prune_images(state: Replicas, batch: int, finished: torch.Tensor) -> None:
    """Stop the unfinished replicas of every image with a ``finished`` (R,) replica; those that had
    not succeeded are marked ``pruned``."""
    image_of = state.image_on_device
    finished_image = torch.zeros(batch, dtype=torch.bool, device=state.done.device)
    finished_image.index_put_((image_of,), finished, accumulate=True)
    prune = finished_image[image_of] & ~state.done
    state.pruned |= prune & (state.success_at < 0)
    state.done |= prune


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
        attack: the :class:`~medis.attacks.composition.Attack` (default: clean-mode MedIS, 10 sign steps of
            1/255; its losses are those of ``losses`` then).
        target: the target kind of ``reference`` (:data:`~medis.attacks.targets.TARGET_KINDS`): whether
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
        :class:`~medis.attacks.engine.results.AttackResult` with one :class:`~medis.results.records.Record` per
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
    run = Run(victim, attack, kind, criteria, Scorer(attack.mode, kind, criteria), loss_fns, None, options, seed,
              _tracked_losses(attack, loss_fns))
    with contextlib.ExitStack() as stack:
        for network in (model, getattr(transfer_to, "model", transfer_to)):
            stack.enter_context(frozen(network))
        for shape, members in groups.items():
            run.max_batch = replica_batch(victim, loss_fns, attack, shape, len(members), max_batch=options.max_batch,
                                          memory_limit=options.memory_limit, loss_size=options.loss_size,
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
