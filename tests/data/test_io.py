"""Reading images and masks: every image mode becomes RGB uint8, masks binarise at > 127,
and unreadable files or size mismatches fail with one line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medis.data.io import read_image, read_mask, read_pair
from medis.errors import DataError


def test_rgb_roundtrip(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "x.png")
    assert np.array_equal(read_image(tmp_path / "x.png"), array)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA"])
def test_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    Image.new("RGB", (6, 4), (120, 60, 30)).convert(mode).save(path)
    image = read_image(path)
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8


def test_sixteen_bit_rescaled(tmp_path: Path) -> None:
    array = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(array).save(tmp_path / "x.png")
    image = read_image(tmp_path / "x.png")
    assert image.shape == (1, 3, 3)
    assert image[0, :, 0].tolist() == [0, 128, 255]


def test_mask_threshold_and_jpeg_noise(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8)).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[False, False, True, True]]
    exact = np.zeros((64, 64), bool)
    exact[16:48, 20:50] = True
    Image.fromarray(exact.astype(np.uint8) * 255).save(tmp_path / "m.jpg", quality=75)
    raw = np.asarray(Image.open(tmp_path / "m.jpg"))
    assert len(np.unique(raw)) > 2  # the JPEG really is noisy
    assert np.array_equal(read_mask(tmp_path / "m.jpg"), exact)


def test_colour_mask_uses_luminance(tmp_path: Path) -> None:
    array = np.zeros((2, 2, 3), np.uint8)
    array[0, 0] = 255
    Image.fromarray(array).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[True, False], [False, False]]


def test_truncated_and_unreadable(tmp_path: Path) -> None:
    Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"unreadable or truncated image .*cut\.jpg"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "junk.png").write_text("not a png")
    with pytest.raises(DataError, match=r"junk\.png"):
        read_mask(tmp_path / "junk.png")
    with pytest.raises(DataError, match=r"file not found: .*gone\.png"):
        read_image(tmp_path / "gone.png")


def test_size_mismatch_names_both(tmp_path: Path) -> None:
    Image.new("RGB", (10, 8)).save(tmp_path / "img.png")
    Image.new("L", (10, 9)).save(tmp_path / "mask.png")
    with pytest.raises(DataError, match=r"mask .*mask\.png is 10x9 but its image .*img\.png is 10x8"):
        read_pair(tmp_path / "img.png", tmp_path / "mask.png")
