"""The batched multi-loss iterative attack: every (image, loss) pair is a replica of ONE batch.

MedIS (Shukla, Gupta, Gupta, Multimedia Tools and Applications 2023) attacks one image with one
surrogate loss at a time. Here B images × K losses become B·K replicas that step together:

- one forward pass per record step for all active replicas (in chunks of ``max_batch``), the
  score of each recorded, then the input gradient of each replica's own loss (losses are per
  sample, so one backward serves the whole chunk; gradients only w.r.t. the input: the model is
  in eval mode and its parameters are frozen for the duration);
- a replica leaves the batch the moment its stop rule holds (compaction): no forward or backward
  is spent on it afterwards; the boolean ``active`` mask is the one thing read back to the host
  per step;
- ``fusion_only``: once an image has succeeded with some loss at record s, its other losses stop,
  since they can no longer win the parallel fusion (fewest steps first); the fused table is
  unchanged, the per-loss table then shows those losses as not successful (``pruned``).

Success/stop rules and the two bookkeeping modes are in :mod:`medis.attacks.criteria`; update
rules in :mod:`medis.attacks.updates`; one record per (image, loss) is returned, the flat table that
:mod:`medis.fusion` turns into ASR and distortion.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import torch

from medis.attacks.criteria import Criteria
from medis.attacks.updates import StepInfo, UpdateConfig, advance, init_state, per_sample, random_start
from medis.errors import ConfigError
from medis.losses import LossContext, build_loss
from medis.metrics import perturbation_norms, ssim_psnr, target_score
from medis.models.frontend import VictimOutput

LossFn = Callable[[VictimOutput, torch.Tensor, LossContext], torch.Tensor]
UNIFORM_TARGETS = ("white", "black")


@dataclass(frozen=True)
class AttackConfig:
    """Everything the engine needs besides the victim, the images and the losses.

    Attributes:
        mode: ``clean`` or ``paper`` (bookkeeping, loss forms; see :mod:`medis.attacks.criteria`).
        steps: maximum number of updates T (MedIS: 10).
        update: the update rule (MedIS: sign steps of 1/255, no projection).
        targeted: descend toward a target instead of ascending away from the ground truth.
        target_kind: label of the reference in the records (``untargeted``, ``random``, ``white``...);
            in paper mode ``white``/``black`` turn on the ×2 correction of the success score.
        stop_threshold, success_threshold: ``None``: the paper's (0.2/0.95 and 0.5/0.45).
        max_batch: most replicas per forward pass (``None``: all active replicas at once).
        compaction: finished replicas leave the batch (off only to check that it changes nothing).
        fusion_only: stop an image's other losses once one has succeeded (see the module docstring).
        keep_images: return the chosen adversarial image of every replica.
        seed: random start.
        name: the attack's name in the records (``attack`` column).
    """

    mode: str = "clean"
    steps: int = 10
    update: UpdateConfig = field(default_factory=UpdateConfig)
    targeted: bool = False
    target_kind: str | None = None
    stop_threshold: float | None = None
    success_threshold: float | None = None
    max_batch: int | None = None
    compaction: bool = True
    fusion_only: bool = False
    keep_images: bool = False
    seed: int = 0
    name: str = "medis"

    def __post_init__(self) -> None:
        if self.max_batch is not None and self.max_batch < 1:
            raise ConfigError(f"attack.max_batch must be >= 1 or null, got {self.max_batch}")
        self.criteria  # validates steps, mode and thresholds now, before any work

    @property
    def criteria(self) -> Criteria:
        return Criteria(self.targeted, self.mode, self.steps, self.stop_threshold, self.success_threshold)

    @property
    def kind(self) -> str:
        return self.target_kind or ("random" if self.targeted else "untargeted")


@dataclass
class AttackResult:
    """What an attack returns.

    Attributes:
        records: one dict per (image, loss), in image order then loss order (see :func:`run_attack`).
        adversarial: ``{(image_id, loss): (3, H, W)}`` chosen adversarial images (``keep_images``).
        forward_replicas: replica forward passes run; ``backward_replicas``: replica backward passes.
    """

    records: list[dict]
    adversarial: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    forward_replicas: int = 0
    backward_replicas: int = 0

    def extend(self, other: "AttackResult") -> None:
        self.records.extend(other.records)
        self.adversarial.update(other.adversarial)
        self.forward_replicas += other.forward_replicas
        self.backward_replicas += other.backward_replicas


@contextlib.contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients inside the block; the previous state is restored."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        model.train(was_training)
        for p, flag in flags:
            p.requires_grad_(flag)


def _split(out: VictimOutput, sizes: list[int]) -> list[VictimOutput]:
    """Consecutive row blocks of ``sizes`` rows each, as views."""
    logits = list(zip(*(z.split(sizes) for z in out.side_logits))) or [()] * len(sizes)
    probs = list(zip(*(p.split(sizes) for p in out.side_probs))) or [()] * len(sizes)
    return [VictimOutput(tuple(z), prob, tuple(p)) for z, prob, p in zip(logits, out.prob.split(sizes), probs)]


def _resolve_losses(losses: Sequence[str] | Mapping[str, LossFn], mode: str) -> dict[str, LossFn]:
    if isinstance(losses, Mapping):
        resolved = dict(losses)
    else:
        resolved = {name: build_loss(name, mode) for name in losses}
    if not resolved:
        raise ConfigError("the attack needs at least one loss")
    return resolved


class _Replicas:
    """State of the B·K replicas of one same-size batch, loss-major (r = k·B + b): the replicas of
    one loss are consecutive rows, in every chunk too (compaction keeps the order), so each loss
    reads a block of rows of the victim's outputs (views, no gather or scatter)."""

    def __init__(self, images: torch.Tensor, references: torch.Tensor, n_losses: int, config: AttackConfig,
                 track_best: bool = False) -> None:
        batch = images.shape[0]
        self.count = batch * n_losses
        device = images.device
        self.image_of = torch.arange(batch).repeat(n_losses)                      # host
        self.loss_of = torch.arange(n_losses).repeat_interleave(batch)            # host
        self.reference = references  # (R, 1, H, W), loss-major
        # random starts are drawn image-major (b·K + k), as before the loss-major layout, so a seed
        # gives every (image, loss) the same start as it always did
        generator = torch.Generator().manual_seed(config.seed)
        start = random_start(images.detach().repeat_interleave(n_losses, 0), config.update, generator)
        image_major = (self.image_of * n_losses + self.loss_of).to(device)
        self.x0 = images.detach().repeat(n_losses, 1, 1, 1)
        self.x = start[image_major]
        self.rule_state = init_state(self.x0, config.update)
        self.direction = torch.full((self.count,), -1.0 if config.targeted else 1.0, device=device)
        records = config.criteria.records
        self.trajectory = torch.full((self.count, records), float("nan"), device=device)
        self.success_at = torch.full((self.count,), -1, dtype=torch.long, device=device)
        self.success_score = torch.full((self.count,), float("nan"), device=device)
        self.last_score = torch.full((self.count,), float("nan"), device=device)
        self.chosen = self.x0.clone()
        self.done = torch.zeros(self.count, dtype=torch.bool, device=device)
        self.pruned = torch.zeros(self.count, dtype=torch.bool, device=device)
        self.forwards = torch.zeros(self.count, dtype=torch.long, device=device)
        self.backwards = torch.zeros(self.count, dtype=torch.long, device=device)
        self.best_score = torch.full((self.count,), float("nan"), device=device)
        self.best = self.x0.clone() if track_best else None


def _better(score: torch.Tensor, best: torch.Tensor, targeted: bool) -> torch.Tensor:
    """(R,) bool: ``score`` beats ``best`` for the attacker (a NaN best is always beaten)."""
    return torch.isnan(best) | (score > best if targeted else score < best)


def _attack_same_size(victim: Callable[[torch.Tensor], VictimOutput], images: torch.Tensor,
                      references: torch.Tensor, loss_fns: dict[str, LossFn], config: AttackConfig,
                      ids: Sequence[str], dataset: str,
                      transfer: Callable[[torch.Tensor], VictimOutput] | None = None) -> AttackResult:
    criteria = config.criteria
    names = list(loss_fns)
    state = _Replicas(images, references, len(names), config, track_best=transfer is not None)
    double = config.mode == "paper" and config.kind in UNIFORM_TARGETS
    result = AttackResult(records=[])
    for position in range(criteria.records):
        remaining = (~state.done).nonzero().squeeze(1).cpu()  # the one host read per step
        if remaining.numel() == 0:
            break
        active = remaining if config.compaction else torch.arange(state.count)
        update = criteria.may_update(position)
        context = LossContext(step=position, total_steps=config.steps, targeted=config.targeted)
        for chunk in active.split(config.max_batch or active.numel()):
            _step_chunk(victim, state, _as_index(chunk, state.x.device), chunk, position, update, context, loss_fns,
                        config, double, result)
        if not update:
            state.done[:] = True
        if config.fusion_only:
            image_of = state.image_of.to(state.done.device)
            solved_image = torch.zeros(images.shape[0], dtype=torch.bool, device=state.done.device)
            solved_image.index_put_((image_of,), state.success_at >= 0, accumulate=True)
            prune = solved_image[image_of] & ~state.done
            state.pruned |= prune & (state.success_at < 0)
            state.done |= prune
    transferred = _transfer(transfer, state, config, double) if transfer is not None else None
    _write_records(state, names, config, ids, dataset, result, transferred)
    return result


def _transfer(victim: Callable[[torch.Tensor], VictimOutput], state: _Replicas, config: AttackConfig,
              double: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Score of every replica's best adversarial image on another model, and its success. (R,), (R,)."""
    scores = []
    with torch.no_grad():
        for rows in torch.arange(state.count).split(config.max_batch or state.count):
            scores.append(_scores(victim(state.best[rows]).prob, state.reference[rows], config.mode, double))
    raw, score = (torch.cat(parts) for parts in zip(*scores))
    return raw, config.criteria.succeeds(score)


def _scores(prob: torch.Tensor, reference: torch.Tensor, mode: str, double: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(recorded score, score the success rule reads) of (R, 1, H, W) probabilities, each (R,): the
    paper's ×2 correction for uniform targets (``double``) applies to the second only."""
    raw = target_score(prob.detach() > 0.5, reference, mode)
    return raw, raw * 2.0 if double else raw


def _as_index(chunk: torch.Tensor, device: torch.device) -> torch.Tensor | slice:
    """A contiguous run of replica indices becomes a slice (views, in-place writes: no gather or
    scatter copies of the image state); any other set stays an index tensor on the device."""
    first, last = int(chunk[0]), int(chunk[-1])
    if last - first + 1 == chunk.numel():
        return slice(first, last + 1)
    return chunk.to(device)


def _step_chunk(victim: Callable[[torch.Tensor], VictimOutput], state: _Replicas, chunk: torch.Tensor | slice,
                chunk_host: torch.Tensor, position: int, update: bool, context: LossContext,
                loss_fns: dict[str, LossFn], config: AttackConfig, double: bool,
                result: AttackResult) -> None:
    """Evaluate, record and (where the rules allow) update the replicas of one chunk."""
    criteria = config.criteria
    live = ~state.done[chunk]  # all True under compaction; finished replicas keep their records otherwise
    x = state.x[chunk].detach().requires_grad_(update)
    with torch.set_grad_enabled(update):
        out = victim(x)
        reference = state.reference[chunk]
        raw, score = _scores(out.prob, reference, config.mode, double)
        state.trajectory[chunk, position] = torch.where(live, raw, state.trajectory[chunk, position])
        state.last_score[chunk] = torch.where(live, score, state.last_score[chunk])
        unsolved = live & (state.success_at[chunk] < 0)
        newly = unsolved & criteria.succeeds(score)
        state.success_at[chunk] = torch.where(newly, torch.full_like(state.success_at[chunk], position),
                                              state.success_at[chunk])
        state.success_score[chunk] = torch.where(newly, score, state.success_score[chunk])
        state.chosen[chunk] = torch.where(unsolved.view(-1, 1, 1, 1), x.detach(), state.chosen[chunk])
        if state.best is not None:
            better = live & _better(raw, state.best_score[chunk], config.targeted)
            state.best_score[chunk] = torch.where(better, raw, state.best_score[chunk])
            state.best[chunk] = torch.where(better.view(-1, 1, 1, 1), x.detach(), state.best[chunk])
        stop = criteria.stops(raw) & live
        result.forward_replicas += chunk_host.numel()
        state.forwards[chunk] += 1
        if update:
            values = replica_losses(out, reference, state.loss_of[chunk_host], loss_fns, context)
            (grad,) = torch.autograd.grad(values.sum(), x)
            result.backward_replicas += chunk_host.numel()
            state.backwards[chunk] += 1
            _move(state, chunk, x.detach(), grad, StepInfo(values.detach(), raw, position, config.steps),
                  live & ~stop, config)
    state.done[chunk] |= stop


def replica_losses(out: VictimOutput, reference: torch.Tensor, loss_of: torch.Tensor, loss_fns: Mapping[str, LossFn],
                   context: LossContext) -> torch.Tensor:
    """Each replica's own loss (differentiable), in row order. (n,).

    Args:
        out: the victim's outputs on n replicas, (n, 1, H, W) maps.
        reference: (n, 1, H, W) each replica's reference.
        loss_of: (n,) host tensor, index of each replica's loss in ``loss_fns``, non-decreasing (the
            engine's replicas are loss-major), so that loss k reads one block of consecutive rows.
        loss_fns: ``{name: loss_fn}``.
        context: the step's :class:`~medis.losses.LossContext`.

    Raises:
        ValueError: ``loss_of`` decreases somewhere.
    """
    if loss_of.numel() > 1 and bool((loss_of[1:] < loss_of[:-1]).any()):
        raise ValueError(f"replica_losses needs loss-major rows (non-decreasing loss_of), got {loss_of.tolist()}")
    sizes = torch.bincount(loss_of, minlength=len(loss_fns)).tolist()
    blocks = zip(loss_fns.values(), sizes, _split(out, sizes), reference.split(sizes))
    return torch.cat([fn(part, ref, context).to(out.prob.dtype) for fn, size, part, ref in blocks if size])


def _move(state: _Replicas, chunk: torch.Tensor | slice, x: torch.Tensor, grad: torch.Tensor, info: StepInfo,
          moving: torch.Tensor, config: AttackConfig) -> None:
    """Apply the update rule to the moving replicas of a chunk (the others keep image and rule state)."""
    rule_state = {key: value[chunk] for key, value in state.rule_state.items()}
    moved, rule_state = advance(x, grad, state.x0[chunk], state.direction[chunk], config.update, rule_state, info)
    state.x[chunk] = torch.where(moving.view(-1, 1, 1, 1), moved, x)
    for key, value in rule_state.items():
        state.rule_state[key][chunk] = torch.where(per_sample(moving, value), value.to(state.rule_state[key]),
                                                   state.rule_state[key][chunk])


def _write_records(state: _Replicas, names: list[str], config: AttackConfig, ids: Sequence[str], dataset: str,
                   result: AttackResult, transferred: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """One record per replica, with norms and SSIM/PSNR of the chosen adversarial image."""
    criteria = config.criteria
    norms = perturbation_norms(state.chosen, state.x0)
    ssim, psnr = ssim_psnr(state.chosen, state.x0)
    success = (state.success_at >= 0).cpu()
    columns = {name: t.detach().cpu().tolist() for name, t in
               {"success_at": state.success_at, "success_score": state.success_score, "last": state.last_score,
                "ssim": ssim, "psnr": psnr, "pruned": state.pruned, "forwards": state.forwards,
                "backwards": state.backwards, **norms}.items()}
    if transferred is not None:
        columns["transfer_metric"], columns["transfer_success"] = (t.detach().cpu().tolist() for t in transferred)
    trajectory = state.trajectory.cpu()
    for r in range(state.count):
        image, k = int(state.image_of[r]), int(state.loss_of[r])
        ok = bool(success[r])
        record = {
            "dataset": dataset, "image_id": ids[image], "target": config.kind, "loss": names[k], "mode": config.mode,
            "success": ok, "steps": columns["success_at"][r] + criteria.first_index if ok else None,
            "metric": columns["success_score"][r] if ok else columns["last"][r],
            "trajectory": [v for v in trajectory[r].tolist() if v == v],
            "pruned": bool(columns["pruned"][r]), "attack": config.name,
            **{key: columns[key][r] for key in ("linf", "l2", "linf_255", "l2_255", "ssim", "psnr", "forwards",
                                                 "backwards")},
        }
        if transferred is not None:
            record["transfer_metric"] = columns["transfer_metric"][r]
            record["transfer_success"] = bool(columns["transfer_success"][r])
        if config.update.eps is not None:
            record["eps"] = config.update.eps
        result.records.append(record)
        if config.keep_images:
            result.adversarial[(ids[image], names[k])] = state.chosen[r].detach().cpu()


def _as_list(tensors: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return list(tensors.unbind(0)) if isinstance(tensors, torch.Tensor) else list(tensors)


def run_attack(victim: Callable[[torch.Tensor], VictimOutput], images: torch.Tensor | Sequence[torch.Tensor],
               reference: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, Sequence[torch.Tensor]],
               losses: Sequence[str] | Mapping[str, LossFn], config: AttackConfig | None = None,
               ids: Sequence[str] | None = None, dataset: str = "",
               transfer_to: Callable[[torch.Tensor], VictimOutput] | None = None) -> AttackResult:
    """Attack ``images`` with every loss at once.

    Args:
        victim: a :class:`~medis.models.frontend.Victim` (or any callable of (R, 3, H, W) images in
            [0, 1] returning a :class:`~medis.models.frontend.VictimOutput` at the images' size).
        images: (B, 3, H, W) in [0, 1], or a list of (3, H_i, W_i) of mixed sizes (grouped by size).
        reference: ground truths (untargeted) or targets (targeted), (B, 1, H, W) in {0, 1} or a list
            of (1, H_i, W_i); or ``{loss: references}`` when each loss has its own targets (the paper's
            random targets).
        losses: loss names (:func:`medis.losses.build_loss`, in ``config.mode``) or ``{name: loss_fn}``.
        config: :class:`AttackConfig` (default: clean-mode untargeted MedIS, 10 sign steps of 1/255).
        ids: image ids for the records (default ``"0", "1", ...``).
        dataset: data set name for the records.
        transfer_to: another victim (black-box transfer): each replica's best adversarial image (by
            the recorded score) is judged on it too, giving ``transfer_metric`` and ``transfer_success``.

    Returns:
        :class:`AttackResult`; each record holds ``dataset, image_id, target, loss, mode, success,
        steps`` (distortion; ``None`` if not successful), ``metric`` (score at the success record,
        else the last), ``trajectory`` (recorded scores), ``pruned``, ``linf, l2, linf_255, l2_255,
        ssim, psnr`` of the chosen adversarial image (at the success record, else the last evaluated),
        ``attack`` (``config.name``), ``forwards``/``backwards`` (passes spent on the replica), ``eps``
        when the update has a budget, and the transfer columns with ``transfer_to``.
    """
    config = config or AttackConfig()
    if config.mode == "paper" and getattr(victim, "fusion", "paper") != "paper":
        raise ConfigError(f"paper mode needs the victim's paper fusion (model.fusion=paper), got {victim.fusion!r}")
    loss_fns = _resolve_losses(losses, config.mode)
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
    if len(ids) != len(image_list) or any(len(refs) != len(image_list) for refs in per_loss.values()):
        raise ConfigError(f"{len(image_list)} images but {len(ids)} ids / references of other lengths")
    model = victim.model if hasattr(victim, "model") else victim
    if isinstance(model, torch.nn.Module) and model.training:
        warnings.warn("the victim was in train mode; the attack runs it in eval mode (batch-norm running "
                      "statistics, no dropout) and restores the mode afterwards", stacklevel=2)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(image_list):
        groups.setdefault(tuple(image.shape), []).append(i)
    result = AttackResult(records=[])
    with contextlib.ExitStack() as stack:
        for network in (model, getattr(transfer_to, "model", transfer_to)):
            if isinstance(network, torch.nn.Module):
                stack.enter_context(frozen(network))
        for members in groups.values():
            batch = torch.stack([image_list[i] for i in members])
            refs = torch.stack([torch.stack([per_loss[name][i] for i in members]) for name in loss_fns])
            refs = refs.reshape(-1, *refs.shape[2:]).to(batch.device, batch.dtype)  # loss-major replicas
            result.extend(_attack_same_size(victim, batch, refs, loss_fns, config, [ids[i] for i in members], dataset,
                                            transfer_to))
    position = {image_id: i for i, image_id in enumerate(ids)}
    names = list(loss_fns)
    result.records.sort(key=lambda rec: (position[rec["image_id"]], names.index(rec["loss"])))
    return result
