"""Target kinds and the one builder of their masks.

MedIS (Shukla, Gupta, Gupta, "Exploring the feasibility of adversarial attacks on medical image
segmentation", Multimedia Tools and Applications, 2023) steers the victim's prediction toward a
target mask. Two parts, one concept:

- the registry :data:`TARGET_KINDS`, one :class:`TargetKind` per kind, in the order the tables show
  them: whether the attack is targeted (descend a loss toward the reference) or not (ascend it away
  from the ground truth), whether the reference is one class everywhere (``uniform``: the paper
  doubles such targets' mIoU, docs/method.md "Metrics"), whether it is drawn from the evaluation
  set's masks (``pooled``), whether the paper uses it, and its builder. The engine, the attack
  module, the summaries and the config resolvers all read it; a new kind is ONE entry here: its
  builder, ``target=<name>`` and ``target.kinds=[<name>]`` need no config file
  (``conf/target`` holds only named selections of kinds);
- :class:`TargetPool`, the evaluation set's masks that pooled kinds draw from (downsampled so that
  their longest side is at most ``pool_size``):

  - a random target of the image at position p of the set comes from a ``torch.Generator`` seeded
    with ``seed·7919 + p`` (clean mode), the one of loss k from ``seed·7919 + 10⁹ + k`` (paper mode:
    one mask per loss for the whole set, as the notebooks draw), so a draw never depends on batching;
  - the most similar target of the image at position p is the other mask of the set with the
    highest two-class mIoU to its ground truth (:func:`medis.attacks.similarity.similarity_table`,
    computed once, at 128x128).

Kinds (the paper's §"targets"; ``inverted`` is ours): ``untargeted`` (the ground truth itself),
``random`` (a mask of the set), ``most_similar`` (the other mask of the set closest to the ground
truth), ``white`` (all foreground), ``black`` (all background), ``inverted`` (1 − ground truth).

``attack.py`` (the attack module) and library callers (:func:`make_targets`,
:func:`paper_random_targets`) use the same pool, so they get the same targets for the same set.
torch is imported where a tensor is made, not when this module is: the reports read the registry
(names and their order) without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medis.errors import ConfigError, DataError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["TARGET_KINDS", "TargetKind", "TargetPool", "UNTARGETED", "kinds_named", "make_targets",
           "paper_random_targets", "same_as_ground_truth", "table_order", "target_kind"]

UNTARGETED = "untargeted"
Builder = Callable[..., Any]
"""``build(pool, masks, positions, losses, mode)`` -> one reference per mask (``(1, H, W)`` like the
mask), or ``{loss: references}`` when each loss gets its own (the paper's random targets). ``pool``
is a :class:`medis.attacks.targets.TargetPool` (``None`` for kinds that need none), ``masks`` the
images' ground truths (1, H, W), ``positions`` their positions in the evaluation set, ``losses`` the
run's loss labels, ``mode`` ``clean`` or ``paper``."""


@dataclass(frozen=True)
class TargetKind:
    """One kind of reference (see the module docstring).

    Attributes:
        name: the kind's name (records' ``target`` column, ``conf/target``).
        targeted: the attack descends a loss toward the reference.
        uniform: the reference is one class everywhere (the paper's ×2 correction applies).
        pooled: built from the evaluation set's masks (needs a pool).
        paper: one of the MedIS paper's kinds (``target=all`` runs these).
        build: the builder (:data:`Builder`).
    """

    name: str
    targeted: bool
    build: Builder
    uniform: bool = False
    pooled: bool = False
    paper: bool = True


def _ground_truth(pool, masks, positions, losses, mode):
    return list(masks)


def _white(pool, masks, positions, losses, mode):
    return [mask.new_ones(mask.shape) for mask in masks]


def _black(pool, masks, positions, losses, mode):
    return [mask.new_zeros(mask.shape) for mask in masks]


def _inverted(pool, masks, positions, losses, mode):
    return [(mask <= 0.5).to(mask.dtype) for mask in masks]


def _random(pool, masks, positions, losses, mode):
    """Clean mode: one mask per image, from the image's own seeded stream; paper mode: one mask per
    loss for the whole set, as the MedIS notebooks draw (the losses then face different targets)."""
    if mode == "paper":
        return {loss: [pool.mask(pool.draw_for_loss(k), mask) for mask in masks] for k, loss in enumerate(losses)}
    return [pool.mask(pool.draw_for_image(position), mask) for position, mask in zip(positions, masks)]


def _most_similar(pool, masks, positions, losses, mode):
    return [pool.mask(pool.most_similar(position), mask) for position, mask in zip(positions, masks)]


TARGET_KINDS: dict[str, TargetKind] = {kind.name: kind for kind in (
    TargetKind(UNTARGETED, targeted=False, build=_ground_truth),
    TargetKind("random", targeted=True, build=_random, pooled=True),
    TargetKind("most_similar", targeted=True, build=_most_similar, pooled=True),
    TargetKind("white", targeted=True, build=_white, uniform=True),
    TargetKind("black", targeted=True, build=_black, uniform=True),
    TargetKind("inverted", targeted=True, build=_inverted, paper=False),
)}
"""Every target kind by name, in table order."""


def target_kind(name: str | TargetKind) -> TargetKind:
    """The registered kind ``name`` (a :class:`TargetKind` is returned as it is).

    Raises:
        ConfigError: an unknown name (one line listing the kinds).
    """
    if isinstance(name, TargetKind):
        return name
    if name not in TARGET_KINDS:
        raise ConfigError(f"unknown target kind {name!r}; valid kinds: {', '.join(TARGET_KINDS)}")
    return TARGET_KINDS[name]


def kinds_named(selection: str) -> list[str]:
    """A named selection of kinds (the ``conf/target`` resolver): ``all`` every kind, ``paper`` the
    paper's kinds (untargeted included), ``paper_targeted`` the paper's targeted kinds, ``targeted``
    every targeted kind.

    Raises:
        ConfigError: an unknown selection.
    """
    selections = {
        "all": list(TARGET_KINDS),
        "paper": [name for name, kind in TARGET_KINDS.items() if kind.paper],
        "paper_targeted": [name for name, kind in TARGET_KINDS.items() if kind.paper and kind.targeted],
        "targeted": [name for name, kind in TARGET_KINDS.items() if kind.targeted],
    }
    if selection not in selections:
        raise ConfigError(f"unknown target selection {selection!r}; valid: {', '.join(selections)}")
    return selections[selection]


def table_order(name: str) -> tuple:
    """Sort key of a target name in tables: registry order, unknown names after, alphabetically."""
    names = list(TARGET_KINDS)
    return (0, names.index(name), "") if name in names else (1, 0, name)


# ------------------------------------------------------------------------------------------------ the pool

STREAM_FACTOR = 7919
"""A seed's streams are ``seed·7919 + stream``."""
LOSS_STREAM = 10**9
"""Loss k of the paper's random targets draws from stream ``10⁹ + k`` (images use their position)."""


def _downsampled(mask: Tensor, pool_size: int | None) -> Tensor:
    """(1, h, w) float {0, 1}, nearest-resized so that its longest side is at most ``pool_size``."""
    from medis.attacks.similarity import as_chw, binary, resize_mask

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
        import torch

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
        from medis.attacks.similarity import most_similar_index, similarity_table

        if self._similar is None:
            self._similar = most_similar_index(similarity_table(self.masks))
        return int(self._similar[position])

    def mask(self, index: int, like: Tensor) -> Tensor:
        """Pool mask ``index`` resized (nearest) to ``like``'s size, with its dtype, device and shape."""
        from medis.attacks.similarity import resize_mask

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
        kind: a kind of :data:`~medis.attacks.targets.TARGET_KINDS` (``untargeted``: the masks).
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
    from medis.attacks.similarity import as_chw

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
    from medis.attacks.similarity import as_chw

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
    import torch

    from medis.attacks.similarity import as_chw, binary

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
