"""Target masks of targeted attacks (SPEC §5).

MedIS (Shukla, Gupta, Gupta, "Exploring the feasibility of adversarial attacks on medical image
segmentation", Multimedia Tools and Applications, 2023, doi 10.1007/s11042-023-15575-8) steers the
victim's prediction toward one of four targets:

1. ``random``: a mask drawn at random from the evaluation set, resized with nearest-neighbour to
   the attacked image's size. The paper's notebooks draw ONE mask per loss for the whole set
   (:func:`paper_random_targets`, paper mode); the clean version draws one per image, shared by
   all losses (:func:`make_targets`).
2. ``most_similar``: for each image, the OTHER mask of the set with the highest two-class mIoU
   to its ground truth, from an n x n similarity table with -1 on the diagonal
   (:func:`similarity_table`, :func:`most_similar_index`).
3. ``white``: every pixel foreground. 4. ``black``: every pixel background.

Beyond the paper, ``inverted`` (1 - ground truth) is offered. An image whose target equals its
ground truth is skipped by the attack (:func:`same_as_ground_truth`).

Conventions: a mask is foreground where its value is > 0.5 (the paper rounds masks at 0.5; for
{0, 1} masks this is "nonzero"); every target is float {0, 1} with the shape, dtype (float32 when
the ground truth is not floating point) and device of its image's ground truth. Nearest-neighbour
resizing is PyTorch's ``mode="nearest"`` (source index floor(dst * in / out)), the rule of
OpenCV's ``INTER_NEAREST`` that the data pipeline uses for masks.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from medis.errors import ConfigError, DataError

TARGET_KINDS = ("random", "most_similar", "white", "black", "inverted")

# Integer-valued float32 sums are exact below 2**24; above, the products go through float64.
_FLOAT32_EXACT = 2**24


def _binary(mask: Tensor) -> Tensor:
    """Foreground of a mask of any dtype: bool, same shape (> 0.5; bool masks as they are)."""
    return mask if mask.dtype == torch.bool else mask > 0.5


def _float_like(mask: Tensor) -> torch.dtype:
    """The dtype of a target built for ``mask``: its own if floating point, else float32."""
    return mask.dtype if mask.is_floating_point() else torch.float32


def _as_chw(mask: Tensor, what: str) -> Tensor:
    """(H, W) or (1, H, W) -> (1, H, W); anything else is a :class:`DataError`."""
    if mask.dim() == 2:
        return mask.unsqueeze(0)
    if mask.dim() == 3 and mask.shape[0] == 1:
        return mask
    raise DataError(f"{what}: expected a mask of shape (1, H, W) or (H, W), got {tuple(mask.shape)}")


def _ratio_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def pairwise_miou(masks_a: Tensor, masks_b: Tensor) -> Tensor:
    """Two-class (foreground, background) mean IoU of every pair of flattened binary masks.

    The paper's "mIoU" (SPEC §2): the IoU of each class, NaN-averaged over the classes present in
    either mask of the pair (a class absent from both contributes nothing, so two empty masks
    score 1, as do two full ones). All counts come from ONE matrix product plus the row sums:

        inter_fg = A·Bᵀ,   union_fg = |A| + |B| − inter_fg,
        inter_bg = P − |A| − |B| + inter_fg,   union_bg = P − inter_fg.

    The product is taken in float32 on {0, 1} values, whose partial sums are integers below 2**24
    and hence exact (TF32/bf16 matmul modes round only the inputs, and 0 and 1 are exact in
    them); for P >= 2**24 it is taken in float64. The ratios are formed in float64.

    Args:
        masks_a: (n, P) binary masks (bool, or float/int with foreground > 0.5).
        masks_b: (m, P) binary masks at the same size P, moved to ``masks_a``'s device.

    Returns:
        (n, m) float64 (float32 on MPS) mIoU in [0, 1], on ``masks_a``'s device.
    """
    if masks_a.dim() != 2 or masks_b.dim() != 2 or masks_a.shape[1] != masks_b.shape[1]:
        raise DataError(
            f"pairwise_miou needs (n, P) and (m, P) masks, got {tuple(masks_a.shape)} and {tuple(masks_b.shape)}"
        )
    count_dtype = _count_dtype(masks_a.shape[1])
    a = _binary(masks_a).to(count_dtype)
    b = _binary(masks_b.to(masks_a.device)).to(count_dtype)
    return _miou_of_counts(a, b)


def _count_dtype(n_pixels: int) -> torch.dtype:
    return torch.float32 if n_pixels < _FLOAT32_EXACT else torch.float64


def _miou_of_counts(a: Tensor, b: Tensor) -> Tensor:
    """:func:`pairwise_miou` of (n, P) and (m, P) masks already as {0, 1} floats of the count dtype."""
    n_pixels = a.shape[1]
    ratio = _ratio_dtype(a.device)

    inter_fg = (a @ b.T).to(ratio)  # (n, m)
    size_a = a.sum(1).to(ratio)[:, None]  # (n, 1)
    size_b = b.sum(1).to(ratio)[None, :]  # (1, m)
    union_fg = size_a + size_b - inter_fg
    inter_bg = n_pixels - size_a - size_b + inter_fg
    union_bg = n_pixels - inter_fg

    present_fg = union_fg > 0
    present_bg = union_bg > 0
    iou_fg = torch.where(present_fg, inter_fg / union_fg.clamp_min(1), torch.zeros_like(inter_fg))
    iou_bg = torch.where(present_bg, inter_bg / union_bg.clamp_min(1), torch.zeros_like(inter_bg))
    # P >= 1, so at least one class is present in every pair.
    return (iou_fg + iou_bg) / (present_fg.to(ratio) + present_bg.to(ratio))


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of one binary mask (``mode="nearest"``, OpenCV's INTER_NEAREST rule).

    Args:
        mask: (1, h, w) or (h, w) mask, foreground > 0.5 (bool allowed).
        size: (H, W) output size.

    Returns:
        (1, H, W) float {0, 1} (the mask's dtype if floating point, else float32), same device.
    """
    chw = _as_chw(mask, "resize_mask")
    out_dtype = _float_like(mask)
    fg = _binary(chw).to(out_dtype)
    size = (int(size[0]), int(size[1]))
    if tuple(fg.shape[-2:]) == size:
        return fg  # a new tensor: the bool -> float conversion copies
    return F.interpolate(fg[None], size=size, mode="nearest")[0]


def _stack_resized(masks: Sequence[Tensor], size: tuple[int, int], device: torch.device) -> Tensor:
    """n masks of varying sizes -> (n, H*W) bool at ``size``, resized in one call per distinct shape."""
    n = len(masks)
    out = torch.empty(n, size[0] * size[1], dtype=torch.bool, device=device)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, mask in enumerate(masks):
        by_shape.setdefault(tuple(_as_chw(mask, f"mask {i}").shape[-2:]), []).append(i)
    for shape, idx in by_shape.items():
        rows, cols = (nearest_indices(shape[d], size[d], device) for d in (0, 1))
        # pick the nearest source pixels of every bool mask directly: no float copy at full size
        group = torch.stack([_binary(_as_chw(masks[i], f"mask {i}")).to(device)[0][rows][:, cols] for i in idx])
        out[torch.tensor(idx, device=device)] = group.reshape(len(idx), -1)
    return out


def nearest_indices(length: int, size: int, device: torch.device | str = "cpu") -> Tensor:
    """Source indices of PyTorch's ``mode="nearest"`` resize from ``length`` to ``size`` samples:
    ``min(floor(i * (length / size)), length - 1)`` in float32, as its kernels compute them. (size,) int64."""
    if size == length:
        return torch.arange(size, device=device)
    scale = torch.tensor(length / size, dtype=torch.float32)
    index = (torch.arange(size, dtype=torch.float32) * scale).floor().long().clamp(max=length - 1)
    return index.to(device)


def similarity_table(
    masks: Sequence[Tensor],
    size: tuple[int, int] = (128, 128),
    chunk: int = 512,
    device: str | torch.device = "cpu",
) -> Tensor:
    """The n x n two-class mIoU table of a set of masks, -1 on the diagonal (SPEC §5.2).

    Each mask is resized with nearest-neighbour to the common ``size``; the table is computed in
    row chunks of ``chunk`` masks, one (chunk, P) x (P, n) product at a time
    (:func:`pairwise_miou`), so the peak memory beyond the (n, P) stack is O(chunk * n).

    Args:
        masks: n binary masks, each (1, H_i, W_i) or (H_i, W_i), sizes may differ.
        size: (H, W) common size of the comparison.
        chunk: rows of the table computed per matrix product (>= 1).
        device: where the products are computed; the table is returned there.

    Returns:
        (n, n) float64 (float32 on MPS) symmetric table, table[i, j] = mIoU(mask_i, mask_j) for
        i != j and -1 on the diagonal.
    """
    if chunk < 1:
        raise ConfigError(f"similarity_table chunk must be >= 1, got {chunk}")
    device = torch.device(device)
    n = len(masks)
    if n == 0:
        return torch.empty(0, 0, dtype=_ratio_dtype(device), device=device)
    size = (int(size[0]), int(size[1]))
    flat = _stack_resized(masks, size, device)  # (n, P) bool
    flat_f = flat.to(_count_dtype(flat.shape[1]))  # converted once, not per chunk
    table = torch.empty(n, n, dtype=_ratio_dtype(device), device=device)
    for start in range(0, n, chunk):
        table[start : start + chunk] = _miou_of_counts(flat_f[start : start + chunk], flat_f)
    table.fill_diagonal_(-1.0)
    return table


def most_similar_index(table: Tensor) -> Tensor:
    """For each mask, the index of the OTHER mask with the highest mIoU.

    Args:
        table: (n, n) similarity table with -1 on the diagonal (:func:`similarity_table`), n >= 2.

    Returns:
        (n,) int64 row-wise argmax; ties go to the lowest index (explicitly, not relying on the
        backend's argmax); never the row itself since the diagonal is -1 < any mIoU.
    """
    if table.dim() != 2 or table.shape[0] != table.shape[1]:
        raise DataError(f"most_similar_index needs an (n, n) table, got {tuple(table.shape)}")
    n = table.shape[0]
    if n < 2:
        raise DataError(f"the most_similar target needs at least 2 masks in the set, got {n}")
    best = table.max(dim=1, keepdim=True).values
    cols = torch.arange(n, device=table.device).expand(n, n)
    return torch.where(table == best, cols, torch.full_like(cols, n)).min(dim=1).values


def _check_masks(masks: Sequence[Tensor]) -> None:
    for i, mask in enumerate(masks):
        _as_chw(mask, f"mask {i}")


def make_targets(
    kind: str,
    masks: Sequence[Tensor],
    *,
    seed: int = 0,
    table: Tensor | None = None,
    pool: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """One target per attacked image, at that image's size (clean mode, SPEC §5).

    Args:
        kind: one of :data:`TARGET_KINDS`:
            ``"white"`` all ones; ``"black"`` all zeros; ``"inverted"`` 1 - ground truth;
            ``"random"`` one mask per image drawn uniformly (with replacement, the image's own
            ground truth included; such an image is then skipped, see
            :func:`same_as_ground_truth`) from ``pool`` with a ``torch.Generator`` seeded with
            ``seed``, resized with nearest-neighbour;
            ``"most_similar"`` the other mask of ``masks`` with the highest mIoU to the image's
            ground truth (:func:`most_similar_index` of ``table``), resized with nearest-neighbour.
        masks: n ground truths, each (1, H_i, W_i) (or (H_i, W_i)) float {0, 1}.
        seed: seed of the ``"random"`` draws (the draw of image i depends only on seed, n, len(pool)).
        table: (n, n) similarity table of ``masks`` for ``"most_similar"``; computed with
            :func:`similarity_table` (default size and device) when ``None``. Ignored by other kinds.
        pool: masks to draw ``"random"`` targets from (default: ``masks``, the evaluation set
            itself), each (1, h, w) or (h, w). Ignored by other kinds.

    Returns:
        n targets, target i float {0, 1} with the shape, device and (floating) dtype of ``masks[i]``.

    Raises:
        ConfigError: unknown ``kind``.
        DataError: a malformed mask or table, an empty pool, or fewer than 2 masks for
            ``"most_similar"``.
    """
    if kind not in TARGET_KINDS:
        raise ConfigError(f"unknown target kind {kind!r}; valid kinds: {', '.join(TARGET_KINDS)}")
    _check_masks(masks)
    n = len(masks)
    if kind == "white":
        return [torch.ones_like(m, dtype=_float_like(m)) for m in masks]
    if kind == "black":
        return [torch.zeros_like(m, dtype=_float_like(m)) for m in masks]
    if kind == "inverted":
        return [(~_binary(m)).to(_float_like(m)) for m in masks]
    if n == 0:
        return []
    if kind == "random":
        pool = masks if pool is None else pool
        if len(pool) == 0:
            raise DataError("the random target needs a non-empty pool of masks")
        _check_masks(pool)
        generator = torch.Generator().manual_seed(int(seed))
        sources = torch.randint(len(pool), (n,), generator=generator).tolist()
        source_masks = pool
    else:  # most_similar
        if table is None:
            table = similarity_table(masks)
        if tuple(table.shape) != (n, n):
            raise DataError(f"similarity table of shape {tuple(table.shape)} does not match {n} masks")
        sources = most_similar_index(table).tolist()
        source_masks = masks
    return [_resized_like(source_masks[j], masks[i]) for i, j in enumerate(sources)]


def _resized_like(source: Tensor, mask: Tensor) -> Tensor:
    """``source`` resized (nearest) to ``mask``'s size, with ``mask``'s shape, dtype and device."""
    out = resize_mask(source.to(mask.device), tuple(mask.shape[-2:]))
    return out.to(_float_like(mask)).reshape(mask.shape)


def paper_random_targets(
    masks: Sequence[Tensor],
    losses: Sequence[str],
    seed: int = 0,
    pool: Sequence[Tensor] | None = None,
) -> dict[str, list[Tensor]]:
    """The notebooks' random targets (paper mode, SPEC §5.1): ONE mask per loss for the whole set.

    A ``torch.Generator`` seeded with ``seed`` draws one index into ``pool`` per loss, in the
    order of ``losses``; that mask, resized with nearest-neighbour, is the target of every image
    for that loss, so different losses may face different targets (the quirk that paper mode keeps).

    Args:
        masks: n ground truths, each (1, H_i, W_i) (or (H_i, W_i)); only their sizes, dtypes and
            devices are used.
        losses: loss names (distinct).
        seed: seed of the draws.
        pool: masks to draw from (default: ``masks``), each (1, h, w) or (h, w).

    Returns:
        {loss: n targets}, target i float {0, 1} with the shape, device and dtype of ``masks[i]``.
    """
    if len(set(losses)) != len(losses):
        raise ConfigError(f"paper_random_targets: duplicate loss names in {list(losses)}")
    _check_masks(masks)
    pool = masks if pool is None else pool
    if not losses:
        return {}
    if len(pool) == 0:
        raise DataError("the random target needs a non-empty pool of masks")
    _check_masks(pool)
    generator = torch.Generator().manual_seed(int(seed))
    draws = torch.randint(len(pool), (len(losses),), generator=generator).tolist()
    return {loss: [_resized_like(pool[j], m) for m in masks] for loss, j in zip(losses, draws)}


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
        t = _as_chw(target, f"target {i}")
        m = _as_chw(mask, f"mask {i}")
        if t.shape != m.shape:
            raise DataError(f"target {i} of size {tuple(t.shape[-2:])} does not match its mask {tuple(m.shape[-2:])}")
        out[i] = torch.equal(_binary(t), _binary(m.to(t.device)))
    return out
