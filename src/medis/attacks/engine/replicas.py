"""The state of the engine's replicas, and each replica's own loss.

B images attacked with K losses are B·K replicas of one batch, loss-major (r = k·B + b): the
replicas of one loss are consecutive rows, in every chunk too (compaction keeps the order), so each
loss reads a block of rows of the victim's outputs (views, no gather or scatter).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence

import torch

from medis.attacks.composition import Attack
from medis.attacks.targets import TargetKind
from medis.losses import LossContext
from medis.models.frontend import VictimOutput

__all__ = ["LossFn", "Replicas", "better", "replica_losses", "split_outputs"]

LossFn = Callable[[VictimOutput, torch.Tensor, LossContext], torch.Tensor]


def split_outputs(out: VictimOutput, sizes: list[int]) -> list[VictimOutput]:
    """Consecutive row blocks of ``sizes`` rows each, as views."""
    logits = list(zip(*(z.split(sizes) for z in out.side_logits))) or [()] * len(sizes)
    probs = list(zip(*(p.split(sizes) for p in out.side_probs))) or [()] * len(sizes)
    fused = out.logit.split(sizes) if out.logit is not None else [None] * len(sizes)
    return [VictimOutput(tuple(z), prob, tuple(p), logit)
            for z, prob, p, logit in zip(logits, out.prob.split(sizes), probs, fused)]


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
    blocks = zip(loss_fns.values(), sizes, split_outputs(out, sizes), reference.split(sizes))
    return torch.cat([fn(part, ref, context).to(out.prob.dtype) for fn, size, part, ref in blocks if size])


def start_seed(seed: int, image_id: str, loss: str) -> int:
    """The random start's seed of one (image, loss) replica: a function of the seed, the image id and
    the loss label only, so the start does not depend on which other images share the batch."""
    return (int(seed) * 1_000_003 + zlib.crc32(f"{image_id}\x1f{loss}".encode())) % (2**63)


def random_starts(images: torch.Tensor, attack: Attack, seed: int, ids: Sequence[str], losses: Sequence[str],
                  image_of: torch.Tensor, loss_of: torch.Tensor, image_on_device: torch.Tensor) -> torch.Tensor:
    """Every replica's starting point (R, C, H, W) (``images``: the (B, C, H, W) clean images;
    ``image_of``/``loss_of``: each replica's image and loss on the host, ``image_on_device``: its
    image on the images' device): its clean image, or a uniform random point of the budget (at the radius of the rule's first stage)
    drawn from the replica's own generator (:func:`start_seed`)."""
    if not attack.budget.random_start:
        return images[image_on_device]
    budget = attack.budget.scaled(attack.rule.stage(0, attack.budget.steps).radius)
    starts = images.new_empty((image_of.numel(), *images.shape[1:]))
    for r in range(starts.shape[0]):
        b = int(image_of[r])
        generator = torch.Generator().manual_seed(start_seed(seed, ids[b], losses[int(loss_of[r])]))
        starts[r] = budget.start(images[b:b + 1], generator)[0]
    return starts


def _initial_state(attack: Attack, images: torch.Tensor, n_losses: int) -> dict[str, torch.Tensor]:
    """The rule's state of every replica, loss-major: its ``init`` of the B clean images once per loss
    block, concatenated (no (R, C, H, W) copy of the clean images is made for it)."""
    blocks = [attack.rule.init(images, attack.budget) for _ in range(n_losses)]
    return {key: torch.cat([block[key] for block in blocks]) for key in blocks[0]}


def better(score: torch.Tensor, best: torch.Tensor, targeted: bool) -> torch.Tensor:
    """(R,) bool: ``score`` beats ``best`` for the attacker (a NaN best is always beaten)."""
    return torch.isnan(best) | (score > best if targeted else score < best)


class Replicas:
    """State of the B·K replicas of one same-size batch, loss-major (module docstring).

    The clean images are held once per image (:meth:`clean`), the references as booleans: at
    ISIC's sizes (several megapixels) every full-size copy per replica counts.

    Args:
        images: (B, 3, H, W) the clean images.
        references: (B·K, 1, H, W) each replica's reference in {0, 1}, loss-major.
        losses: the K loss labels.
        attack: the attack (its budget gives the random start, its rule the initial state).
        target: the target kind (the direction of the updates).
        seed: the random start's seed.
        ids: the B image ids (the random starts are drawn per (seed, image id, loss)).
        records: the number of records per replica.
        start: (B, 3, H, W) images to start from instead of the clean ones (a cascade's warm start:
            every loss of an image starts there, projected onto the budget; no random start).
        start_steps: (B,) the updates that led to each starting image: the records' ``steps`` (and
            the best iterates' positions) count from the clean image, not from the warm start.
    """

    def __init__(self, images: torch.Tensor, references: torch.Tensor, losses: Sequence[str], attack: Attack,
                 target: TargetKind, seed: int, ids: Sequence[str], records: int,
                 start: torch.Tensor | None = None, start_steps: Sequence[int] | None = None) -> None:
        batch, n_losses = images.shape[0], len(losses)
        self.count = batch * n_losses
        self.ids, self.losses = list(ids), list(losses)  # the replicas' image ids and loss labels
        device = images.device
        self.image_of = torch.arange(batch).repeat(n_losses)                      # host
        self.image_on_device = self.image_of.to(device)  # the same on the images' device (gathers without a host read)
        self.loss_of = torch.arange(n_losses).repeat_interleave(batch)            # host
        self.reference = references.bool()  # (R, 1, H, W), loss-major; :meth:`references` as floats
        self.images = images.detach()  # (B, 3, H, W); :meth:`clean` per replica
        if start is None:
            self.x = random_starts(self.images, attack, seed, ids, losses, self.image_of, self.loss_of,
                                   self.image_on_device)
        else:
            self.x = attack.budget.project(start.detach().to(images).repeat(n_losses, 1, 1, 1), self.clean())
        self.clean_pred: torch.Tensor | None = None  # (B, 1, H, W) bool, clean mode
        # what the steps score and the losses read: at full size, or at the loss resolution
        self.step_size: tuple[int, int] = (int(images.shape[-2]), int(images.shape[-1]))
        self.step_reference = self.reference  # (R, 1, h, w) bool
        self.step_clean: torch.Tensor | None = None  # (B, 1, h, w) bool, clean mode
        self.set_aside = torch.zeros(self.count, dtype=torch.bool, device=device)
        self.skipped = torch.zeros(self.count, dtype=torch.bool, device=device)
        self.clean_score = torch.full((self.count,), float("nan"), device=device)
        self.rule_state = _initial_state(attack, self.images, n_losses)
        self.direction = torch.full((self.count,), -1.0 if target.targeted else 1.0, device=device)
        self.trajectory = torch.full((self.count, records), float("nan"), device=device)
        self.success_at = torch.full((self.count,), -1, dtype=torch.long, device=device)
        self.success_score = torch.full((self.count,), float("nan"), device=device)
        self.last_score = torch.full((self.count,), float("nan"), device=device)
        self.chosen = self.images[self.image_on_device]  # a copy (advanced indexing)
        self.done = torch.zeros(self.count, dtype=torch.bool, device=device)
        self.stopped = torch.zeros(self.count, dtype=torch.bool, device=device)  # met the stop rule
        self.pruned = torch.zeros(self.count, dtype=torch.bool, device=device)
        self.forwards = torch.zeros(self.count, dtype=torch.long, device=device)
        self.backwards = torch.zeros(self.count, dtype=torch.long, device=device)
        self.best_score = torch.full((self.count,), float("nan"), device=device)
        self.best_at = torch.full((self.count,), -1, dtype=torch.long, device=device)  # record of the best
        offsets = torch.as_tensor(list(start_steps) if start_steps is not None else [0] * batch, dtype=torch.long)
        self.step_offset = offsets.repeat(n_losses).to(device)
        self.best = self.images[self.image_on_device]  # the best admissible iterate (the worst case)

    def clean(self, rows: torch.Tensor | slice | None = None) -> torch.Tensor:
        """The clean image of each replica of ``rows`` (all by default), (n, 3, H, W), read only.

        ``rows``: a slice (a view where the rows lie within one loss block, their images being
        consecutive), an index tensor on the images' device (a gather there, no host read), or a
        host index tensor (the images of a batch on another device: the image numbers are uploaded)."""
        if rows is None:
            rows = slice(0, self.count)
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.count)
            batch = self.images.shape[0]
            if stop <= start:
                return self.images[:0]
            if step == 1 and stop - start <= batch and start // batch == (stop - 1) // batch:
                return self.images[start % batch:start % batch + stop - start]
            return self.images[self.image_on_device[rows]]
        if rows.device == self.images.device:
            return self.images[self.image_on_device[rows]]
        return self.images[self.image_of[rows].to(self.images.device)]

    @property
    def capped(self) -> bool:
        """Whether the steps score (and the losses read) at a smaller size than the images'."""
        return self.step_size != tuple(self.images.shape[-2:])
