"""Reading images and masks from disk, with one-line errors that name the file.

Images become RGB ``uint8`` arrays whatever their mode (grayscale and palette are expanded, CMYK
converted, 16-bit rescaled to 8 bits); masks become ``bool`` arrays, foreground where the value is
> 127, which also binarises JPEG masks (Kvasir-SEG) whose values scatter around 0 and 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medis.errors import DataError

MASK_THRESHOLD = 127


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"unreadable or truncated image {path}: {err}") from None
    return image


def _to_uint8(image: Image.Image) -> np.ndarray:
    """HxW or HxWxC array in uint8, rescaling 16/32-bit integer and float modes."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return np.clip(np.round(array / top * 255.0), 0, 255).astype(np.uint8)
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        top = 1.0 if array.max() <= 1.0 else 255.0
        return np.clip(np.round(array / top * 255.0), 0, 255).astype(np.uint8)
    return np.asarray(image)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB.

    Returns:
        ``uint8`` array of shape (H, W, 3).
    """
    path = Path(path)
    image = _open(path)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        gray = _to_uint8(image)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def read_mask_levels(path: str | Path) -> np.ndarray:
    """A mask's grey levels as stored: ``uint8`` (H, W) (first channel of a colour mask)."""
    path = Path(path)
    image = _open(path)
    if image.mode in ("RGB", "RGBA", "P", "CMYK", "LA", "1"):
        image = image.convert("L")
    array = _to_uint8(image)
    return array[..., 0] if array.ndim == 3 else array


def binarise(levels: np.ndarray) -> np.ndarray:
    """Foreground of a mask's grey levels: > 127; a mask coded 0/1 (maximum 1) has foreground = 1."""
    return levels == 1 if levels.max(initial=0) == 1 else levels > MASK_THRESHOLD


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask and binarise it at > 127 (on the first channel of a colour mask); a mask coded
    0/1 (its maximum is 1) keeps its 1s as foreground instead of coming out empty.

    Returns:
        ``bool`` array of shape (H, W).
    """
    return binarise(read_mask_levels(path))


def read_pair(image_path: str | Path, mask_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an image and its mask and check that their sizes agree.

    Returns:
        (image ``uint8`` (H, W, 3), mask ``bool`` (H, W)).
    """
    image = read_image(image_path)
    mask = read_mask(mask_path)
    if image.shape[:2] != mask.shape:
        raise DataError(
            f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
            f"{image.shape[1]}x{image.shape[0]} (width x height)"
        )
    return image, mask
