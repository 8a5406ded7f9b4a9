"""The fusion callback: at the end of an attack, the ASR / distortion tables of the run's records
(:mod:`medis.results.fusion`), logged and written as ``summary.md`` / ``summary.csv``."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from medis.reporting import summary_rows, write_summary
from medis.lightning.wandb_guard import wandb_failure_is_a_warning
from medis.runtime.stop_signals import RunStopped
from medis.reporting.run_metrics import (
    RECORD_COLUMNS,
    SUMMARY_COLUMNS,
    record_table_rows,
    run_metrics,
    summary_table_rows,
)

__all__ = ["FusionCallback"]


class FusionCallback(pl.Callback):
    """At the end of the attack: fuse the records (:mod:`medis.results.fusion`), log ASR and distortion as
    scalars whose names every run of a sweep shares (``attack/asr``, ``attack/by_loss/<loss>/asr``,
    ...: :mod:`medis.reporting.run_metrics`) and as two long-format W&B tables (``attack/summary``:
    one row per data set x target x loss; ``attack/records``: one per record), and write
    ``summary.md`` and ``summary.csv`` into ``dirpath``: the summary first, so that a W&B failure (an
    unwritable HOME or WANDB_DIR) costs only W&B, with one warning (:mod:`medis.lightning.wandb_guard`).

    Runs in ``on_test_end``, after the module's ``on_test_epoch_end`` has merged the records of all
    ranks (callbacks' epoch-end hooks run before the module's)."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath
        self.rows: list[dict] = []

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """A run stopped by a signal (:class:`~medis.runtime.stop_signals.RunStopped`: SIGTERM,
        Ctrl-C) or a requeue (``SystemExit`` from submitit's preemption handler): the records on
        disk are whole rows; write the summary of what is done, marked partial (no W&B)."""
        if not isinstance(exception, (KeyboardInterrupt, SystemExit)) or not trainer.is_global_zero:
            return
        stopped = getattr(pl_module, "stopped_line", None)
        if stopped is None:
            return
        pl_module.close_records()
        records = getattr(pl_module, "records", [])
        if records:
            why = stopped(exception.name if isinstance(exception, RunStopped) else "a requeue or preemption")
            write_summary(records, self.dirpath, partial=why)
            print(f"partial summary.md and summary.csv in {self.dirpath} ({why})")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        records = getattr(pl_module, "records", [])
        if not records or not trainer.is_global_zero:
            return
        self.rows = summary_rows(records)
        metrics = run_metrics(self.rows)
        several_targets = len({row["target"] for row in self.rows}) > 1
        for key in ("skipped", "skipped_pairs"):  # images (pairs) whose target equals the ground truth
            counts = getattr(pl_module, key, {}) or {}
            metrics[f"attack/{key}"] = float(sum(counts.values()))
            for kind, count in counts.items() if several_targets else ():
                metrics[f"attack/by_target/{kind}/{key}"] = float(count)
        attack = getattr(pl_module, "attack", None)
        name = str(getattr(attack, "name", "attack"))
        members = getattr(attack, "members", None) or [attack]
        eps = getattr(getattr(members[0], "budget", None), "eps", None)
        _, summary_md = write_summary(records, self.dirpath)  # the summary first: a logger cannot cost it
        print(Path(summary_md).read_text())
        print(f"records, summary.md and summary.csv in {self.dirpath}")
        for logger in list(trainer.loggers):
            with wandb_failure_is_a_warning(trainer, logger):
                logger.log_metrics(metrics, step=0)
                if isinstance(logger, WandbLogger):
                    logger.log_table(key="attack/summary", columns=list(SUMMARY_COLUMNS),
                                     data=summary_table_rows(self.rows, name, eps))
                    logger.log_table(key="attack/records", columns=list(RECORD_COLUMNS),
                                     data=record_table_rows(records, name))
