"""Gallery pictures: the adversarial gallery of an attack (one row per image: clean and adversarial
inputs, the amplified perturbation, the masks and both predictions) and the validation prediction
grid of training. Pure drawing (NumPy, PIL, torch tensors in): the Lightning callbacks that save and
log them are :mod:`medis.lightning.gallery_callback` and :mod:`medis.lightning.validation_gallery`.

Layout of :func:`gallery_grid` (all bands white, text black, PIL's default font)::

    +-------------------------------------------------------------------------------------+
    | clean | adversarial | perturbation ×k | ground truth | target | clean pred | adv pred |  header band
    | isic2016/ISIC_0001 · dice · success at step 12                                        |  caption band
    | [tile] | [tile] | [tile] | [tile] | [tile] | [tile] | [tile]                          |  tile_height
    | kvasir/cju0 · bce · failed                                                            |
    | [tile] | ...                                                                          |
    +-------------------------------------------------------------------------------------+

Every tile of a row is resized to ``tile_height`` keeping that row's aspect ratio. Columns are
aligned: each column is as wide as its widest tile, a narrower tile is padded with white on its
right, and tiles are separated by :data:`SEPARATOR` white pixels. Each tile's outermost pixels are
replaced by a light-gray 1 px frame (:data:`FRAME`) so that an all-white mask (the "white" target)
still shows where its tile is. So the grid is exactly as wide
as its widest row, and ``HEADER_HEIGHT + len(entries) * (CAPTION_HEIGHT + tile_height)`` high.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from medis.attacks.batching.loss_size import loss_shape

HEADER_HEIGHT = 20  # px, the band of column titles
CAPTION_HEIGHT = 16  # px, the caption line above each row
SEPARATOR = 2  # px of white between two tiles of a row
COLUMNS = 7
WHITE = 255
FRAME = (170, 170, 170)  # 1 px outline drawn on each tile's border, so that white masks stay visible

Entry = dict[str, Any]


# ---------------------------------------------------------------------------------------- tiles


def perturbation_tile(image: torch.Tensor, adversarial: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The perturbation δ = adversarial − image, amplified so that its largest component fills [0, 1].

    Args:
        image, adversarial: (3, H, W) in [0, 1].

    Returns:
        ``(tile, factor)``: tile (3, H, W) = 0.5 + δ / (2·max|δ|), i.e. mid-gray where δ = 0, 1 where
        δ = +max|δ| and 0 where δ = −max|δ| (all gray when δ ≡ 0); factor = 0.5 / max|δ|, the
        amplification shown in the column title (``math.inf`` when δ ≡ 0; see :func:`amplification_label`).
    """
    delta = adversarial.float() - image.float()
    peak = float(delta.abs().max()) if delta.numel() else 0.0
    if peak == 0.0:
        return torch.full_like(delta, 0.5), math.inf
    return (0.5 + delta / (2 * peak)).clamp(0, 1), 0.5 / peak


def amplification_label(factor: float) -> str:
    """How a factor from :func:`perturbation_tile` reads in a title: ``×16`` (an integer from 10 up),
    ``×2.5`` (two significant digits below 10), ``×0`` when there is no perturbation at all."""
    if math.isinf(factor):
        return "×0"
    if factor >= 10:
        return f"×{round(factor)}"
    return f"×{factor:.2g}"


def tile_width(height: int, width: int, tile_height: int) -> int:
    """Width of a tile ``tile_height`` high cut from an ``height`` × ``width`` image (aspect kept, ≥ 1)."""
    return max(1, round(width * tile_height / height))


DISPLAY_SIDE = 1024
"""The longest side (px) at which gallery entries are kept (:func:`display_copy`)."""


def display_copy(tensor: torch.Tensor, side: int = DISPLAY_SIDE, binary: bool = False) -> torch.Tensor:
    """A (C, H, W) map as a gallery keeps it: on the CPU, its own storage (never a view of the attack's
    state), scaled down to a longest side of ``side`` where it is larger: antialiased bilinear
    (clamped to [0, 1]), or for masks (``binary``) foreground where most of the covered area is.
    At ISIC's sizes a full-size entry (image, adversarial image, masks, probabilities) is about
    half a gigabyte; the gallery's tiles are 160 px high and W&B's overlays at most ``side``."""
    tensor = tensor.detach().float().cpu()
    size = loss_shape((tensor.shape[-2], tensor.shape[-1]), side)
    if size == tuple(tensor.shape[-2:]):
        return tensor.clone()
    if binary:
        return (F.interpolate(tensor[None], size=size, mode="area")[0] >= 0.5).float()
    return F.interpolate(tensor[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)


def resize_tile(tile: torch.Tensor, size: tuple[int, int], binary: bool = False) -> torch.Tensor:
    """Resize a (C, H, W) tile to ``size`` = (h, w): nearest for masks (``binary``, values kept
    exactly), antialiased bilinear otherwise (clamped to [0, 1]). Returns (3, h, w): gray tiles
    (C = 1) are repeated on the three channels."""
    batch = tile.detach().float().cpu()[None]
    if binary:
        out = F.interpolate(batch, size=size, mode="nearest")
    else:
        out = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return out[0].expand(3, -1, -1)


def row_tiles(entry: Entry, tile_height: int) -> tuple[list[torch.Tensor], float]:
    """The seven tiles of one entry, each (3, tile_height, w) in [0, 1], and its perturbation factor.

    Order: clean image, adversarial image, amplified perturbation, ground truth, target,
    clean probability, adversarial probability.
    """
    image, adversarial = entry["image"].float().cpu(), entry["adversarial"].float().cpu()
    perturbation, factor = perturbation_tile(image, adversarial)
    size = (tile_height, tile_width(image.shape[-2], image.shape[-1], tile_height))
    images = [image, adversarial, perturbation]
    masks = [entry["mask"], entry["reference"]]
    probs = [entry["clean_prob"], entry["adversarial_prob"]]
    tiles = ([resize_tile(t, size) for t in images] + [resize_tile(t, size, binary=True) for t in masks]
             + [resize_tile(t, size) for t in probs])
    return tiles, factor


# ---------------------------------------------------------------------------------------- text


def caption(entry: Entry) -> str:
    """``<dataset>/<id> · <loss> · success at step s`` (``· success`` when steps is unknown), ``· failed``,
    or ``· set aside`` (clean mode: the clean prediction already met the success rule, no attack),
    then the record's score (``· score 0.47``) when the entry has one."""
    if entry.get("set_aside"):
        outcome = "set aside: the clean prediction already meets the rule"
    elif entry["success"]:
        outcome = "success" if entry.get("steps") is None else f"success at step {entry['steps']}"
    else:
        outcome = "failed"
    score = "" if entry.get("metric") is None else f" · score {entry['metric']:.2f}"
    return f"{entry['dataset']}/{entry['id']} · {entry['loss']} · {outcome}{score}"


def column_titles(factors: Sequence[float]) -> list[str]:
    """The seven column titles. The perturbation title carries the amplification when every row
    shares it; otherwise each row's caption does (see :func:`gallery_grid`)."""
    labels = {amplification_label(f) for f in factors}
    perturbation = f"perturbation {labels.pop()}" if len(labels) == 1 else "perturbation (amplified)"
    return ["clean", "adversarial", perturbation, "ground truth", "target", "clean prob.", "adversarial prob."]


# ---------------------------------------------------------------------------------------- grid


def default_font() -> ImageFont.ImageFont:
    """PIL's built-in bitmap font (11 px high, Latin-1 so ``×`` and ``·`` render; no font file).
    Pillow >= 10.1 made ``load_default()`` a small FreeType font without ``×``, hence the explicit call."""
    loader = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)
    return loader()


def to_uint8(tile: torch.Tensor) -> np.ndarray:
    """(3, h, w) in [0, 1] -> uint8 (h, w, 3)."""
    return (tile.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _tile_box(row: int, column: int, pitch: int, tile_height: int) -> tuple[int, int]:
    """(top, left) in px of the tile in ``row``, ``column`` of the grid."""
    return HEADER_HEIGHT + row * (CAPTION_HEIGHT + tile_height) + CAPTION_HEIGHT, column * pitch


def _paste_tiles(grid: np.ndarray, rows: Sequence[list[torch.Tensor]], pitch: int, tile_height: int) -> None:
    """Write every tile, left-aligned in its column, into the white uint8 (H_total, W_total, 3) ``grid``."""
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            top, left = _tile_box(r, c, pitch, tile_height)
            grid[top:top + tile_height, left:left + tile.shape[-1]] = to_uint8(tile)


def _annotate(canvas: Image.Image, entries: Sequence[Entry], rows: Sequence[list[torch.Tensor]],
              factors: Sequence[float], pitch: int, tile_height: int) -> None:
    """Draw the tile frames, the column titles in the header band and each row's caption line."""
    draw, font = ImageDraw.Draw(canvas), default_font()
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            top, left = _tile_box(r, c, pitch, tile_height)
            draw.rectangle((left, top, left + tile.shape[-1] - 1, top + tile_height - 1), outline=FRAME)
    for c, title in enumerate(column_titles(factors)):
        draw.text((c * pitch + 2, 5), title, fill=(0, 0, 0), font=font)
    shared = len({amplification_label(f) for f in factors}) == 1
    for r, (entry, factor) in enumerate(zip(entries, factors)):
        text = caption(entry) + ("" if shared else f" · perturbation {amplification_label(factor)}")
        top, _ = _tile_box(r, 0, pitch, tile_height)
        draw.text((2, top - CAPTION_HEIGHT + 3), text, fill=(0, 0, 0), font=font)


def gallery_grid(entries: Sequence[Entry], tile_height: int = 160) -> np.ndarray:
    """Draw the gallery of ``entries`` (see :class:`AdversarialGallery` for their keys), one row each.

    Args:
        entries: gallery entries; tensors (3, H, W) or (1, H, W) in [0, 1], H, W may differ by entry.
        tile_height: height in px of every tile.

    Returns:
        uint8 (HEADER_HEIGHT + N * (CAPTION_HEIGHT + tile_height), 7 * column_width + 6 * SEPARATOR, 3)
        where column_width is the widest tile; white background (see the module docstring).
    """
    if not entries:
        raise ValueError("gallery_grid needs at least one entry")
    rows, factors = zip(*(row_tiles(entry, tile_height) for entry in entries))
    column_width = max(tiles[0].shape[-1] for tiles in rows)
    pitch = column_width + SEPARATOR  # from one column's left edge to the next
    height = HEADER_HEIGHT + len(rows) * (CAPTION_HEIGHT + tile_height)
    grid = np.full((height, COLUMNS * column_width + (COLUMNS - 1) * SEPARATOR, 3), WHITE, dtype=np.uint8)
    _paste_tiles(grid, rows, pitch, tile_height)
    canvas = Image.fromarray(grid)
    _annotate(canvas, entries, rows, factors, pitch, tile_height)
    return np.array(canvas)


def prediction_grid(images: torch.Tensor, masks: torch.Tensor, probs: torch.Tensor) -> np.ndarray:
    """One row per sample: image, ground truth, predicted probability (gray), prediction contour-free.

    Args:
        images: (N, 3, H, W) in [0, 1]; masks, probs: (N, 1, H, W) in [0, 1].

    Returns:
        uint8 (N*H, 3*W, 3).
    """
    def gray(t: torch.Tensor) -> torch.Tensor:
        return t.expand(-1, 3, -1, -1)

    tiles = torch.cat([images, gray(masks), gray(probs)], dim=3)  # (N, 3, H, 3W)
    rows = torch.cat(list(tiles), dim=1)  # (3, N*H, 3W)
    return to_uint8(rows)
