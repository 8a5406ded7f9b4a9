"""A W&B failure costs W&B, never the run's own files.

W&B writes outside the run folder (its settings and artifact cache under HOME, ``WANDB_DIR``,
``WANDB_CACHE_DIR``). When one of those is unwritable, a table or an image logged at the end of an
attack used to raise after the whole attack had run, before the summary existed. Inside
:func:`wandb_failure_is_a_warning` an error of a W&B logger turns W&B off for the rest of the run
(the logger leaves ``trainer.loggers``) with one warning; an error of any other logger is raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_warn

__all__ = ["wandb_failure_is_a_warning"]


@contextlib.contextmanager
def wandb_failure_is_a_warning(trainer: pl.Trainer | Any, logger: Any) -> Iterator[None]:
    """Run the block; if ``logger`` is a W&B logger and the block raises, warn once and drop it from
    ``trainer.loggers``."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - any W&B failure (OSError, wandb.Error, ...) costs only W&B
        if not isinstance(logger, WandbLogger):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        rank_zero_warn(f"W&B failed ({type(err).__name__}: {first}); W&B is off for the rest of this run, the "
                       f"run's own files (records, summary, gallery) are complete")
        with contextlib.suppress(Exception):
            trainer.loggers = [other for other in trainer.loggers if other is not logger]
