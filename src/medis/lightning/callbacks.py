"""Lightning callbacks: a gallery of validation predictions each epoch, and the end-of-training report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import WandbLogger


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
    return (rows.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


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


class FusionCallback(pl.Callback):
    """At the end of the attack: fuse the records (:mod:`medis.fusion`), log ASR and distortion per
    loss and fused, per target, as scalars (``attack/asr/<target>/<loss>``, ``.../fused``) and as a
    W&B table, and write ``summary.md`` and ``summary.csv`` into ``dirpath``.

    Runs in ``on_test_end``, after the module's ``on_test_epoch_end`` has merged the records of all
    ranks (callbacks' epoch-end hooks run before the module's)."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath
        self.rows: list[dict] = []

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from medis.reporting import summary_rows, write_summary

        records = getattr(pl_module, "records", [])
        if not records or not trainer.is_global_zero:
            return
        self.rows = summary_rows(records)
        metrics = {}
        for row in self.rows:
            loss = "fused" if row["loss"] == "parallel fusion" else row["loss"]
            prefix = f"{row['dataset']}/{row['target']}" + (f"/eps{row['eps']:.4g}" if row.get("eps") is not None else "")
            metrics[f"attack/asr/{prefix}/{loss}"] = float(row["asr"])
            if row["distortion"] is not None:
                metrics[f"attack/distortion/{prefix}/{loss}"] = float(row["distortion"])
        for kind, count in getattr(pl_module, "skipped", {}).items():
            metrics[f"attack/skipped/{kind}"] = float(count)
        columns = ["dataset", "target", "loss", "images", "successes", "asr", "distortion", "linf", "l2", "ssim", "psnr"]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=0)
            if isinstance(logger, WandbLogger):
                logger.log_table(key="attack/summary", columns=columns,
                                 data=[[row.get(c) for c in columns] for row in self.rows])
        _, summary_md = write_summary(records, self.dirpath)
        print(Path(summary_md).read_text())
        print(f"records, summary.md and summary.csv in {self.dirpath}")
