"""The adversarial gallery callback: at the end of an attack, one PNG per target kind
(``<run>/gallery_<target>.png``, drawn by :func:`medis.reporting.gallery.gallery_grid`), also logged
to W&B."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.loggers import WandbLogger

from medis.reporting.gallery import Entry, caption, gallery_grid

__all__ = ["AdversarialGallery"]


class AdversarialGallery(pl.Callback):
    """At the end of the attack, draw the module's ``gallery`` (target kind -> list of entries) as one
    PNG per target, ``<dirpath>/gallery_<target>.png``, and log it to every W&B logger as
    ``attack/gallery/<target>``.

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
        for target, entries in (getattr(pl_module, "gallery", None) or {}).items():
            entries = list(entries)[:self.max_images]
            if not entries:
                continue
            grid = gallery_grid(entries, self.tile_height)
            self.paths[target] = self._save(grid, target)
            self._log(trainer, target, grid, entries)
        if self.paths:
            print("attack gallery: " + ", ".join(str(p) for p in self.paths.values()))

    def _save(self, grid: np.ndarray, target: str) -> Path:
        out = self.dirpath / f"gallery_{target}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(out)
        return out

    @staticmethod
    def _log(trainer: pl.Trainer, target: str, grid: np.ndarray, entries: Sequence[Entry]) -> None:
        text = (f"{target} | rows: " + "; ".join(caption(e) for e in entries)
                + " | columns: clean, adversarial, amplified perturbation, ground truth, target,"
                  " clean probability, adversarial probability")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"attack/gallery/{target}", images=[grid], caption=[text])
