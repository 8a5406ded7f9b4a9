"""The adversarial gallery: perturbation tile and grid layout (medis.reporting.gallery), and its callback
(medis.lightning.gallery_callback; fake trainer, real offline W&B)."""

from __future__ import annotations

import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medis.lightning import gallery_callback as gallery_mod
from medis.lightning.gallery_callback import AdversarialGallery
from medis.reporting.gallery import (
    CAPTION_HEIGHT,
    COLUMNS,
    FRAME,
    HEADER_HEIGHT,
    SEPARATOR,
    amplification_label,
    caption,
    gallery_grid,
    perturbation_tile,
    resize_tile,
)


def _entry(height: int, width: int, seed: int = 0, success: bool = True, steps: int | None = 7,
           eps: float = 8 / 255) -> dict:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, height, width, generator=g) * 0.8 + 0.1
    sign = torch.randint(0, 2, (3, height, width), generator=g).float() * 2 - 1
    mask = torch.zeros(1, height, width)
    mask[:, height // 4:3 * height // 4, width // 3:2 * width // 3] = 1
    return {
        "dataset": "toy", "id": f"img{seed}", "loss": "dice", "success": success, "steps": steps,
        "image": image, "adversarial": (image + eps * sign).clamp(0, 1),
        "mask": mask, "reference": 1 - mask,
        "clean_prob": torch.rand(1, height, width, generator=g), "adversarial_prob": torch.rand(1, height, width, generator=g),
    }


def _grid_width(column_width: int) -> int:
    return COLUMNS * column_width + (COLUMNS - 1) * SEPARATOR


def _grid_height(rows: int, tile_height: int) -> int:
    return HEADER_HEIGHT + rows * (CAPTION_HEIGHT + tile_height)


# ------------------------------------------------------------------------------ perturbation tile


def test_perturbation_tile_gray_at_zero_and_extremes_at_max() -> None:
    image = torch.full((3, 2, 3), 0.5)
    adversarial = image.clone()
    adversarial[0, 0, 0] += 0.04  # +max|δ|
    adversarial[1, 1, 2] -= 0.04  # -max|δ|
    adversarial[2, 0, 1] += 0.02  # half of it
    tile, factor = perturbation_tile(image, adversarial)
    assert tile.shape == (3, 2, 3)
    assert tile[0, 0, 0] == pytest.approx(1.0, abs=1e-6)
    assert tile[1, 1, 2] == pytest.approx(0.0, abs=1e-6)
    assert tile[2, 0, 1] == pytest.approx(0.75, abs=1e-6)
    untouched = torch.ones(3, 2, 3, dtype=torch.bool)
    untouched[0, 0, 0] = untouched[1, 1, 2] = untouched[2, 0, 1] = False
    assert torch.allclose(tile[untouched], torch.tensor(0.5))
    assert factor == pytest.approx(0.5 / 0.04, rel=1e-4)
    assert amplification_label(factor) == "×12"


def test_perturbation_tile_all_gray_without_perturbation() -> None:
    image = torch.rand(3, 4, 5)
    tile, factor = perturbation_tile(image, image.clone())
    assert torch.equal(tile, torch.full((3, 4, 5), 0.5))
    assert math.isinf(factor) and amplification_label(factor) == "×0"


@pytest.mark.parametrize("factor, label", [(0.5 / (8 / 255), "×16"), (0.5 / (1 / 255), "×128"), (2.5, "×2.5"), (0.5, "×0.5")])
def test_amplification_labels_are_rounded(factor: float, label: str) -> None:
    assert amplification_label(factor) == label


def test_caption_success_and_failure() -> None:
    assert caption(_entry(8, 8, steps=12)) == "toy/img0 · dice · success at step 12"
    assert caption(_entry(8, 8, steps=None)) == "toy/img0 · dice · success"
    assert caption(_entry(8, 8, success=False, steps=None)) == "toy/img0 · dice · failed"


# ------------------------------------------------------------------------------ grid


def test_grid_shape_and_white_padding_for_rows_of_different_sizes() -> None:
    tile_height = 40
    entries = [_entry(20, 40, seed=0), _entry(30, 15, seed=1)]  # tiles 80 and 20 px wide
    grid = gallery_grid(entries, tile_height=tile_height)
    assert grid.dtype == np.uint8
    assert grid.shape == (_grid_height(2, tile_height), _grid_width(80), 3)
    pitch = 80 + SEPARATOR
    top = HEADER_HEIGHT + (CAPTION_HEIGHT + tile_height) + CAPTION_HEIGHT  # second row's tiles
    second = grid[top:top + tile_height]
    for c in range(COLUMNS):
        assert (second[:, c * pitch + 20:c * pitch + 80] == 255).all()  # right of each narrow tile: white
        assert not (second[:, c * pitch:c * pitch + 20] == 255).all()  # the tile itself is drawn
    first = grid[HEADER_HEIGHT + CAPTION_HEIGHT:HEADER_HEIGHT + CAPTION_HEIGHT + tile_height]
    for c in range(COLUMNS - 1):
        assert (first[:, c * pitch + 80:(c + 1) * pitch] == 255).all()  # white separators
    assert (grid[:HEADER_HEIGHT] < 128).any()  # the column titles are written in the header
    assert (grid[HEADER_HEIGHT:HEADER_HEIGHT + CAPTION_HEIGHT] < 128).any()  # and a caption


def test_grid_columns_show_the_entry() -> None:
    tile_height = 10
    entry = _entry(10, 10)
    entry["clean_prob"] = torch.full((1, 10, 10), 0.25)
    grid = gallery_grid([entry], tile_height=tile_height).astype(int)
    top, pitch = HEADER_HEIGHT + CAPTION_HEIGHT, 10 + SEPARATOR
    inner = lambda c: grid[top + 1:top + tile_height - 1, c * pitch + 1:c * pitch + 9]  # noqa: E731 (inside the frame)
    clean = (entry["image"].permute(1, 2, 0).numpy() * 255).round()[1:-1, 1:-1]
    assert np.abs(inner(0) - clean).max() <= 1
    assert np.isin(inner(2), [0, 255]).all()  # ±eps everywhere: perturbation at its extremes
    assert np.array_equal(inner(3)[..., 0], entry["mask"][0, 1:-1, 1:-1].numpy() * 255)
    assert np.array_equal(inner(4)[..., 0], entry["reference"][0, 1:-1, 1:-1].numpy() * 255)
    assert (inner(5) == 64).all()  # probability 0.25, gray
    frame = grid[top:top + tile_height, 4 * pitch:4 * pitch + 10]
    assert (frame[0] == FRAME).all() and (frame[:, -1] == FRAME).all()  # the frame around a tile


def test_masks_stay_binary_after_resize() -> None:
    mask = (torch.rand(1, 37, 23, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    resized = resize_tile(mask, (160, 99), binary=True)
    assert resized.shape == (3, 160, 99)
    assert set(resized.unique().tolist()) == {0.0, 1.0}
    grid = gallery_grid([dict(_entry(37, 23), mask=mask, reference=1 - mask)], tile_height=160)
    top, pitch = HEADER_HEIGHT + CAPTION_HEIGHT, 99 + SEPARATOR
    for c in (3, 4):  # ground truth, target: binary inside their frame
        assert set(np.unique(grid[top + 1:top + 159, c * pitch + 1:c * pitch + 98])) == {0, 255}


def test_empty_grid_is_an_error() -> None:
    with pytest.raises(ValueError):
        gallery_grid([])


# ------------------------------------------------------------------------------ callback


def _module(gallery: dict | None) -> types.SimpleNamespace:
    return types.SimpleNamespace() if gallery is None else types.SimpleNamespace(gallery=gallery)


def test_callback_writes_one_png_per_target(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gallery = {"untargeted": [_entry(20, 30, seed=i) for i in range(5)],
               "white": [_entry(16, 16, seed=9), _entry(32, 16, seed=10)],
               "black": []}
    callback = AdversarialGallery(str(tmp_path / "gallery"), max_images=3, tile_height=32)
    callback.on_test_end(types.SimpleNamespace(is_global_zero=True, loggers=[]), _module(gallery))
    assert set(callback.paths) == {"untargeted", "white"}
    expected = {"untargeted": (_grid_width(48), _grid_height(3, 32)),  # 5 entries, max_images rows
                "white": (_grid_width(32), _grid_height(2, 32))}
    for target, (width, height) in expected.items():
        path = callback.paths[target]
        assert path == tmp_path / "gallery" / f"gallery_{target}.png"
        with Image.open(path) as png:
            assert png.size == (width, height) and png.mode == "RGB"
    assert not (tmp_path / "gallery" / "gallery_black.png").exists()
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and str(callback.paths["white"]) in out[0]


@pytest.mark.parametrize("is_global_zero, gallery", [(False, {"white": [_entry(8, 8)]}), (True, {}),
                                                     (True, None), (True, {"white": []})])
def test_callback_does_nothing_off_rank_zero_or_without_entries(tmp_path: Path, is_global_zero: bool,
                                                                 gallery: dict | None) -> None:
    callback = AdversarialGallery(str(tmp_path / "gallery"))
    callback.on_test_end(types.SimpleNamespace(is_global_zero=is_global_zero, loggers=[]), _module(gallery))
    assert callback.paths == {}
    assert not (tmp_path / "gallery").exists()


class _RecordingLogger:
    """Stands for a WandbLogger (the module's ``WandbLogger`` name is monkeypatched to this class)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def log_image(self, **kwargs) -> None:
        self.calls.append(kwargs)


def test_callback_logs_to_wandb_loggers_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gallery_mod, "WandbLogger", _RecordingLogger)
    recording, other = _RecordingLogger(), types.SimpleNamespace(log_image=pytest.fail)
    callback = AdversarialGallery(str(tmp_path), max_images=2, tile_height=16)
    gallery = {"random": [_entry(8, 8, seed=1), _entry(8, 8, seed=2, success=False), _entry(8, 8, seed=3)]}
    callback.on_test_end(types.SimpleNamespace(is_global_zero=True, loggers=[other, recording]), _module(gallery))
    assert len(recording.calls) == 2
    call, overlays = recording.calls
    assert call["key"] == "attack/gallery"  # one target kind: the key every run of a target sweep shares
    [image] = call["images"]
    assert image.shape == (_grid_height(2, 16), _grid_width(16), 3)
    [text] = call["caption"]
    assert "toy/img1 · dice · success at step 7" in text and "toy/img2 · dice · failed" in text
    assert "img3" not in text
    # one W&B image per entry, the adversarial image with four mask layers (class ids 0/1)
    assert overlays["key"] == "attack/overlays" and len(overlays["images"]) == 2
    assert all(image.shape == (8, 8, 3) and image.dtype == np.uint8 for image in overlays["images"])
    for masks in overlays["masks"]:
        assert set(masks) == {"ground_truth", "target", "clean_prediction", "adversarial_prediction"}
        assert all(layer["mask_data"].shape == (8, 8) and set(np.unique(layer["mask_data"])) <= {0, 1}
                   and layer["class_labels"] == {0: "background", 1: "lesion"} for layer in masks.values())


def test_callback_with_real_offline_wandb_logger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real WandbLogger(offline=True): the gallery lands in the offline run's media (about 1-2 s)."""
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(offline=True, save_dir=str(tmp_path))
    try:
        callback = AdversarialGallery(str(tmp_path / "gallery"), tile_height=16)
        trainer = types.SimpleNamespace(is_global_zero=True, loggers=[logger])
        callback.on_test_end(trainer, _module({"inverted": [_entry(8, 12)]}))
    finally:
        wandb.finish()
    assert callback.paths["inverted"].exists()
    assert list(tmp_path.glob("wandb/offline-run-*/files/media/images/attack/gallery_*.png"))


def test_overlays_of_different_sizes_are_padded_to_one_size() -> None:
    pixels = [np.zeros((4, 6, 3), np.uint8), np.zeros((5, 3, 3), np.uint8)]
    masks = [{"ground_truth": {"mask_data": np.ones((4, 6), np.uint8), "class_labels": {0: "background"}}},
             {"ground_truth": {"mask_data": np.ones((5, 3), np.uint8), "class_labels": {0: "background"}}}]
    out_pixels, out_masks = gallery_mod.padded(pixels, masks)
    assert all(p.shape == (5, 6, 3) for p in out_pixels)
    assert all(m["ground_truth"]["mask_data"].shape == (5, 6) for m in out_masks)
    assert out_pixels[0][4].min() == 255 and out_masks[0]["ground_truth"]["mask_data"][4].max() == 0  # padding
    assert out_masks[1]["ground_truth"]["mask_data"][:5, :3].min() == 1  # the image itself untouched


def test_gallery_keys_name_the_target_only_in_runs_of_several() -> None:
    assert gallery_mod.gallery_keys("white", ["white"]) == ("attack/gallery", "attack/overlays")
    assert gallery_mod.gallery_keys("white", ["untargeted", "white"]) == ("attack/gallery/white",
                                                                          "attack/overlays/white")


def test_several_targets_log_one_gallery_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gallery_mod, "WandbLogger", _RecordingLogger)
    recording = _RecordingLogger()
    callback = AdversarialGallery(str(tmp_path), max_images=1, tile_height=16)
    gallery = {"white": [_entry(8, 8, seed=1)], "black": [_entry(8, 8, seed=2)]}
    callback.on_test_end(types.SimpleNamespace(is_global_zero=True, loggers=[recording]), _module(gallery))
    assert [call["key"] for call in recording.calls] == ["attack/gallery/white", "attack/overlays/white",
                                                         "attack/gallery/black", "attack/overlays/black"]
