"""Lightning's CSV logger, whose failed writes name their file.

A write on a full disk or past a file-size limit raises ``OSError`` without a file name; the
entry points show such an error as one line only when it names the file
(:func:`medis.errors.user_error_line`). :class:`RunCSVLogger` adds ``metrics.csv`` or
``hparams.yaml`` to it.
"""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Any

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only

from medis.errors import naming

__all__ = ["RunCSVLogger"]


class RunCSVLogger(CSVLogger):
    """``pytorch_lightning.loggers.CSVLogger`` (same arguments, same files) with named write errors."""

    @rank_zero_only
    def save(self) -> None:
        try:
            super().save()
        except OSError as err:
            raise naming(err, self.experiment.metrics_file_path)  # noqa: B904 - the OSError stays its context

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None) -> None:
        try:
            super().log_hyperparams(params)
        except OSError as err:
            raise naming(err, os.path.join(self.experiment.log_dir, "hparams.yaml"))  # noqa: B904
