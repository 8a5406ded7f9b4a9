"""Mask similarity for the most-similar target, and the nearest-neighbour mask resize.

The paper's "most similar" target (Shukla, Gupta, Gupta, MTAP 2023) is, for each image, the OTHER
mask of the evaluation set with the highest two-class mIoU to its ground truth: an n x n table with
-1 on the diagonal (:func:`similarity_table`, :func:`most_similar_index`), computed with one matrix
product per row chunk (:func:`pairwise_miou`).

Conventions: a mask is foreground where its value is > 0.5 (the paper rounds masks at 0.5);
nearest-neighbour resizing is PyTorch's ``mode="nearest"`` (source index floor(dst * in / out)),
the rule of OpenCV's ``INTER_NEAREST`` that the data pipeline uses for masks.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from medis.errors import ConfigError, DataError

# Integer-valued float32 sums are exact below 2**24; above, the products go through float64.
_FLOAT32_EXACT = 2**24


def binary(mask: Tensor) -> Tensor:
    """Foreground of a mask of any dtype: bool, same shape (> 0.5; bool masks as they are)."""
    return mask if mask.dtype == torch.bool else mask > 0.5


def float_like(mask: Tensor) -> torch.dtype:
    """The dtype of a target built for ``mask``: its own if floating point, else float32."""
    return mask.dtype if mask.is_floating_point() else torch.float32


def as_chw(mask: Tensor, what: str) -> Tensor:
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

    The paper's "mIoU" (docs/method.md, "Metrics"): the IoU of each class, NaN-averaged over the classes present in
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
    a = binary(masks_a).to(count_dtype)
    b = binary(masks_b.to(masks_a.device)).to(count_dtype)
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
    chw = as_chw(mask, "resize_mask")
    out_dtype = float_like(mask)
    fg = binary(chw).to(out_dtype)
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
        by_shape.setdefault(tuple(as_chw(mask, f"mask {i}").shape[-2:]), []).append(i)
    for shape, idx in by_shape.items():
        rows, cols = (nearest_indices(shape[d], size[d], device) for d in (0, 1))
        # pick the nearest source pixels of every bool mask directly: no float copy at full size
        group = torch.stack([binary(as_chw(masks[i], f"mask {i}")).to(device)[0][rows][:, cols] for i in idx])
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
    """The n x n two-class mIoU table of a set of masks, -1 on the diagonal (docs/method.md, "Targets").

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


