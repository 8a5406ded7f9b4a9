"""The fusion callback: at the end of an attack, the ASR / distortion tables of the run's records
(:mod:`medis.fusion`), logged and written as ``summary.md`` / ``summary.csv``."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from medis.reporting import summary_rows, write_summary

__all__ = ["FusionCallback"]


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
        records = getattr(pl_module, "records", [])
        if not records or not trainer.is_global_zero:
            return
        self.rows = summary_rows(records)
        metrics = {}
        for row in self.rows:
            loss = "fused" if row["loss"] == "parallel fusion" else row["loss"]
            prefix = f"{row['dataset']}/{row['target']}" + (f"/eps{row['eps']:.4g}" if row.get("eps") is not None else "")
            for key in ("asr", "distortion", "real_asr", "set_aside"):
                if row.get(key) is not None:
                    metrics[f"attack/{key}/{prefix}/{loss}"] = float(row[key])
        for kind, count in getattr(pl_module, "skipped", {}).items():
            metrics[f"attack/skipped/{kind}"] = float(count)
        for kind, count in getattr(pl_module, "skipped_pairs", {}).items():
            if count:
                metrics[f"attack/skipped_pairs/{kind}"] = float(count)
        columns = ["dataset", "target", "loss", "images", "set_aside", "successes", "asr", "distortion", "real_asr",
                   "linf", "l2", "ssim", "psnr"]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=0)
            if isinstance(logger, WandbLogger):
                logger.log_table(key="attack/summary", columns=columns,
                                 data=[[row.get(c) for c in columns] for row in self.rows])
        _, summary_md = write_summary(records, self.dirpath)
        print(Path(summary_md).read_text())
        print(f"records, summary.md and summary.csv in {self.dirpath}")
