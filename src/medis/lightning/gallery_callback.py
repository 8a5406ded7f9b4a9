"""The adversarial gallery callback: at the end of an attack, one PNG per target kind
(``<run>/gallery_<target>.png``, drawn by :func:`medis.reporting.gallery.gallery_grid`), also logged
to W&B, with each gallery image as a W&B image with segmentation overlays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import WandbLogger

from medis.lightning.wandb_guard import wandb_failure_is_a_warning
from medis.reporting.gallery import Entry, caption, gallery_grid, to_uint8

__all__ = ["AdversarialGallery"]


CLASS_LABELS = {0: "background", 1: "lesion"}
MASK_LAYERS = (("ground_truth", "mask"), ("target", "reference"), ("clean_prediction", "clean_prob"),
               ("adversarial_prediction", "adversarial_prob"))
"""W&B mask layer -> gallery entry field (probabilities are thresholded at 0.5)."""


def _plane(value: Any) -> np.ndarray:
    """A (1, H, W) or (H, W) tensor/array as an (H, W) numpy array."""
    array = value.detach().float().cpu().numpy() if hasattr(value, "detach") else np.asarray(value, dtype=np.float32)
    return array.reshape(array.shape[-2:])


def overlay_pixels(entry: Entry) -> np.ndarray:
    """The adversarial image of a gallery entry as (H, W, 3) uint8."""
    return to_uint8(torch.as_tensor(entry["adversarial"]).detach().float().cpu())


def overlay_masks(entry: Entry) -> dict[str, dict]:
    """W&B segmentation layers of an entry: ground truth, target, clean and adversarial prediction,
    each ``{"mask_data": (H, W) uint8 class ids, "class_labels": {0: "background", 1: "lesion"}}``."""
    layers = {}
    for layer, field in MASK_LAYERS:
        if entry.get(field) is not None:
            layers[layer] = {"mask_data": (_plane(entry[field]) > 0.5).astype(np.uint8), "class_labels": CLASS_LABELS}
    return layers


def padded(pixels: list[np.ndarray], masks: list[dict[str, dict]]) -> tuple[list[np.ndarray], list[dict[str, dict]]]:
    """Images (white) and their mask layers (background) padded at the bottom and right to the
    largest height and width, so that W&B shows one logged set of different sizes as is."""
    height, width = max(p.shape[0] for p in pixels), max(p.shape[1] for p in pixels)

    def pad(array: np.ndarray, value: int) -> np.ndarray:
        spread = [(0, height - array.shape[0]), (0, width - array.shape[1])] + [(0, 0)] * (array.ndim - 2)
        return np.pad(array, spread, constant_values=value)

    return ([pad(p, 255) for p in pixels],
            [{name: {**layer, "mask_data": pad(layer["mask_data"], 0)} for name, layer in m.items()} for m in masks])


def gallery_keys(target: str, targets: Sequence[str]) -> tuple[str, str]:
    """The W&B keys of ``target``'s gallery and overlays: ``attack/gallery`` and ``attack/overlays`` in a
    run of one target kind (the target is in the caption), so that runs of a sweep over targets share
    one panel; ``attack/gallery/<target>`` and ``attack/overlays/<target>`` in a run of several. The
    rule of the scalar metrics (:mod:`medis.reporting.run_metrics`)."""
    suffix = f"/{target}" if len(set(targets)) > 1 else ""
    return f"attack/gallery{suffix}", f"attack/overlays{suffix}"


class AdversarialGallery(pl.Callback):
    """At the end of the attack, draw the module's ``gallery`` (target kind -> list of entries) as one
    PNG per target, ``<dirpath>/gallery_<target>.png``, and log it to every W&B logger as
    ``attack/gallery``, and each entry as a W&B image with segmentation overlays
    (``attack/overlays``: the adversarial image with ground truth, target, clean and adversarial
    prediction as mask layers that the W&B UI toggles); a run of several target kinds logs each
    under ``/<target>`` (:func:`gallery_keys`).

    Each entry is a dict: ``dataset``, ``id``, ``loss`` (str), ``success`` (bool), ``steps`` (int or
    None), optionally ``set_aside`` (bool) and ``metric`` (the record's score); ``image``, ``adversarial`` (3, H, W) in [0, 1]; ``mask`` (ground truth), ``reference``
    (target mask) (1, H, W) in {0, 1}; ``clean_prob``, ``adversarial_prob`` (1, H, W) in [0, 1].

    Attributes:
        paths: target kind -> PNG written at the last test epoch end.
    """

    def __init__(self, dirpath: str, max_images: int = 4, tile_height: int = 160) -> None:
        self.dirpath = Path(dirpath)
        self.max_images = max_images
        self.tile_height = tile_height
        self.paths: dict[str, Path] = {}

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.paths = {}
        gallery = getattr(pl_module, "gallery", None) or {}
        targets = list(getattr(pl_module, "targets", None) or gallery)
        for target, entries in gallery.items():
            entries = list(entries)[:self.max_images]
            if not entries:
                continue
            grid = gallery_grid(entries, self.tile_height)
            self.paths[target] = self._save(grid, target)
            self._log(trainer, gallery_keys(target, targets), target, grid, entries)
        if self.paths:
            print("attack gallery: " + ", ".join(str(p) for p in self.paths.values()))

    def _save(self, grid: np.ndarray, target: str) -> Path:
        out = self.dirpath / f"gallery_{target}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(out)
        return out

    @staticmethod
    def _log(trainer: pl.Trainer, keys: tuple[str, str], target: str, grid: np.ndarray,
             entries: Sequence[Entry]) -> None:
        text = (f"{target} | rows: " + "; ".join(caption(e) for e in entries)
                + " | columns: clean, adversarial, amplified perturbation, ground truth, target,"
                  " clean probability, adversarial probability")
        for logger in list(trainer.loggers):
            if not isinstance(logger, WandbLogger):
                continue
            with wandb_failure_is_a_warning(trainer, logger):
                logger.log_image(key=keys[0], images=[grid], caption=[text])
                pixels, masks = padded([overlay_pixels(e) for e in entries], [overlay_masks(e) for e in entries])
                logger.log_image(key=keys[1], images=pixels,
                                 caption=[caption(e) for e in entries], masks=masks)
