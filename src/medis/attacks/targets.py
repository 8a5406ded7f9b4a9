"""Target masks of targeted attacks: ONE builder, :class:`TargetPool`, with one seeding scheme.

MedIS (Shukla, Gupta, Gupta, "Exploring the feasibility of adversarial attacks on medical image
segmentation", Multimedia Tools and Applications, 2023) steers the victim's prediction toward a
target mask; the kinds and their builders are the registry :data:`medis.attacks.kinds.TARGET_KINDS`
(docs/method.md, "Targets"). A :class:`TargetPool` holds the evaluation set's masks (downsampled so
that their longest side is at most ``pool_size``) and draws from them:

- a random target of the image at position p of the set comes from a ``torch.Generator`` seeded
  with ``seed·7919 + p`` (clean mode), the one of loss k from ``seed·7919 + 10⁹ + k`` (paper mode:
  one mask per loss for the whole set, as the notebooks draw), so a draw never depends on batching;
- the most similar target of the image at position p is the other mask of the set with the highest
  two-class mIoU to its ground truth (:func:`medis.attacks.similarity.similarity_table`, computed
  once, at 128x128).

``attack.py`` (the attack module) and library callers (:func:`make_targets`,
:func:`paper_random_targets`) use the same pool, so they get the same targets for the same set.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import Tensor

from medis.attacks.kinds import TARGET_KINDS, TargetKind, target_kind
from medis.attacks.similarity import as_chw, binary, most_similar_index, resize_mask, similarity_table
from medis.errors import ConfigError, DataError

__all__ = ["TARGET_KINDS", "TargetPool", "make_targets", "paper_random_targets", "same_as_ground_truth"]

STREAM_FACTOR = 7919
"""A seed's streams are ``seed·7919 + stream``."""
LOSS_STREAM = 10**9
"""Loss k of the paper's random targets draws from stream ``10⁹ + k`` (images use their position)."""


def _downsampled(mask: Tensor, pool_size: int | None) -> Tensor:
    """(1, h, w) float {0, 1}, nearest-resized so that its longest side is at most ``pool_size``."""
    mask = as_chw(mask, "pool mask")
    mask = binary(mask).float() if not mask.is_floating_point() else mask
    if pool_size is None:
        return mask
    scale = pool_size / max(mask.shape[-2:])
    if scale >= 1:
        return mask
    size = (max(1, round(mask.shape[-2] * scale)), max(1, round(mask.shape[-1] * scale)))
    return resize_mask(mask, size)


class TargetPool:
    """The evaluation set's masks, to draw random and most-similar targets from (module docstring).

    Args:
        masks: the set's n ground truths, each (1, H_i, W_i) or (H_i, W_i), sizes may differ.
        keys: one hashable key per mask (``attack.py``: (dataset, image id)); default: positions.
        seed: the seed of the random draws.
        pool_size: longest side of the masks kept (``None``: full size).

    Raises:
        DataError: an empty set, a malformed mask, or keys of another length.
    """

    def __init__(self, masks: Sequence[Tensor], keys: Sequence[Hashable] | None = None, *, seed: int = 0,
                 pool_size: int | None = 256) -> None:
        if len(masks) == 0:
            raise DataError("a target pool needs at least one mask")
        self.masks = [_downsampled(mask, pool_size) for mask in masks]
        keys = list(range(len(masks))) if keys is None else list(keys)
        if len(keys) != len(masks):
            raise DataError(f"{len(keys)} keys for {len(masks)} pool masks")
        self._position = {key: position for position, key in enumerate(keys)}
        self.seed = int(seed)
        self._similar: Tensor | None = None

    def __len__(self) -> int:
        return len(self.masks)

    def positions(self, keys: Sequence[Hashable]) -> list[int]:
        """The positions in the set of the images with these keys."""
        return [self._position[key] for key in keys]

    def _draw(self, stream: int) -> int:
        generator = torch.Generator().manual_seed(self.seed * STREAM_FACTOR + stream)
        return int(torch.randint(len(self.masks), (1,), generator=generator))

    def draw_for_image(self, position: int) -> int:
        """Index of the random target of the image at ``position`` (clean mode)."""
        return self._draw(position)

    def draw_for_loss(self, k: int) -> int:
        """Index of the random target of loss ``k`` for every image (paper mode)."""
        return self._draw(LOSS_STREAM + k)

    def most_similar(self, position: int) -> int:
        """Index of the other mask of the set with the highest mIoU to the one at ``position``."""
        if self._similar is None:
            self._similar = most_similar_index(similarity_table(self.masks))
        return int(self._similar[position])

    def mask(self, index: int, like: Tensor) -> Tensor:
        """Pool mask ``index`` resized (nearest) to ``like``'s size, with its dtype, device and shape."""
        out = resize_mask(self.masks[index].to(like.device), tuple(like.shape[-2:]))
        return out.to(like.dtype).reshape(like.shape)

    def references(self, kind: str | TargetKind, masks: Sequence[Tensor], positions: Sequence[int],
                   losses: Sequence[str] = (), mode: str = "clean") -> list[Tensor] | dict[str, list[Tensor]]:
        """The references of the images with ground truths ``masks`` at ``positions`` of the set.

        Returns:
            One reference per image, each like its mask; ``{loss: references}`` for paper-mode random
            targets (one mask per loss).
        """
        return target_kind(kind).build(self, masks, positions, losses, mode)


def make_targets(kind: str, masks: Sequence[Tensor], *, seed: int = 0, positions: Sequence[int] | None = None,
                 pool: Sequence[Tensor] | None = None, pool_size: int | None = 256) -> list[Tensor]:
    """One target per image (clean mode), as ``attack.py`` builds them.

    Args:
        kind: a kind of :data:`~medis.attacks.kinds.TARGET_KINDS` (``untargeted``: the masks).
        masks: n ground truths, each (1, H_i, W_i) or (H_i, W_i) float {0, 1}.
        seed: the seed of the random draws.
        positions: the images' positions in the evaluation set ``pool`` (default 0..n-1).
        pool: the evaluation set's masks (default: ``masks``).
        pool_size: see :class:`TargetPool`.

    Returns:
        n targets, target i with the shape, device and dtype of ``masks[i]``.

    Raises:
        ConfigError: unknown ``kind``. DataError: malformed masks, or fewer than 2 for ``most_similar``.
    """
    spec = target_kind(kind)
    masks = [as_chw(mask, f"mask {i}") for i, mask in enumerate(masks)]
    if not spec.pooled:
        return spec.build(None, masks, [], (), "clean")
    positions = list(range(len(masks))) if positions is None else list(positions)
    return TargetPool(masks if pool is None else pool, seed=seed, pool_size=pool_size).references(
        spec, masks, positions)


def paper_random_targets(masks: Sequence[Tensor], losses: Sequence[str], seed: int = 0,
                         pool: Sequence[Tensor] | None = None, pool_size: int | None = 256) -> dict[str, list[Tensor]]:
    """The notebooks' random targets (paper mode): ONE mask of the set per loss, for every image.

    Returns:
        ``{loss: n targets}``, target i like ``masks[i]``; different losses may face different
        targets (the quirk paper mode keeps).

    Raises:
        ConfigError: duplicate loss names.
    """
    if len(set(losses)) != len(losses):
        raise ConfigError(f"paper_random_targets: duplicate loss names in {list(losses)}")
    masks = [as_chw(mask, f"mask {i}") for i, mask in enumerate(masks)]
    if not losses:
        return {}
    pool_masks = masks if pool is None else pool
    return TargetPool(pool_masks, seed=seed, pool_size=pool_size).references("random", masks, [], losses, "paper")


def same_as_ground_truth(targets: Sequence[Tensor], masks: Sequence[Tensor]) -> Tensor:
    """Which images have a target equal to their ground truth (skipped by the attack, and counted).

    Args:
        targets: n targets, target i with the spatial size of ``masks[i]``.
        masks: n ground truths, each (1, H_i, W_i) or (H_i, W_i).

    Returns:
        (n,) bool on the CPU: True where every pixel of the binarised target (> 0.5) equals the
        binarised ground truth.
    """
    if len(targets) != len(masks):
        raise DataError(f"same_as_ground_truth: {len(targets)} targets for {len(masks)} masks")
    out = torch.zeros(len(masks), dtype=torch.bool)
    for i, (target, mask) in enumerate(zip(targets, masks)):
        t = as_chw(target, f"target {i}")
        m = as_chw(mask, f"mask {i}")
        if t.shape != m.shape:
            raise DataError(f"target {i} of size {tuple(t.shape[-2:])} does not match its mask {tuple(m.shape[-2:])}")
        out[i] = torch.equal(binary(t), binary(m.to(t.device)))
    return out
