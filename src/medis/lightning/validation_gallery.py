"""The validation gallery of training: after each validation epoch, a PNG grid of the kept examples
(image, ground truth, prediction; :func:`medis.reporting.gallery.prediction_grid`), also logged to W&B."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.loggers import WandbLogger

from medis.reporting.gallery import prediction_grid

__all__ = ["ValidationPredictions"]


class ValidationPredictions(pl.Callback):
    """After each validation epoch, write the module's kept examples (``val_examples``) as a PNG
    grid under ``<dirpath>/epoch_NNN.png`` and, when a W&B logger is attached, as a W&B image."""

    def __init__(self, dirpath: str | None = None) -> None:
        self.dirpath = dirpath

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        examples = getattr(pl_module, "val_examples", None)
        if trainer.sanity_checking or not examples or not trainer.is_global_zero:
            return
        grid = prediction_grid(examples["image"].float(), examples["mask"].float(), examples["prob"].float())
        if self.dirpath:
            out = Path(self.dirpath) / f"epoch_{trainer.current_epoch:03d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(grid).save(out)
        caption = "rows: " + ", ".join(examples["id"]) + " | columns: image, ground truth, prediction"
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/predictions", images=[grid], caption=[caption], step=trainer.global_step)
