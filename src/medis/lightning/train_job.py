"""What ``train.py`` runs: compose the pieces of a training run from a Hydra config and fit.

Order: seed everything (and log the seed) -> data module -> network -> Res2Net ImageNet weights
(``backbone_weights``) -> transfer weights (``init_from``: the official PraNet checkpoint or one of
ours) -> SegmentationModule -> callbacks, loggers (a CSV logger is always added) -> Trainer.fit.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

from medis.config.schema import check_config
from medis.data.resize import RESIZE_ANTIALIAS
from medis.errors import ConfigError
from medis.lightning.run_csv_logger import RunCSVLogger
from medis.lightning.run_identity import RunIdentity, run_identity
from medis.lightning.wandb_guard import wandb_failure_is_a_warning
from medis.models.checkpoints import load_weights
from medis.runtime.resume_command import resume_command
from medis.runtime.run_info import ensure_writable, write_run_info
from medis.runtime.stop_signals import StopRequest, stop_on_signals

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group node that has a ``_target_``."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def build_loggers(cfg: DictConfig, identity: RunIdentity | None = None) -> list[Logger]:
    """The configured loggers, plus a CSVLogger in the run folder when none is configured. A W&B
    logger whose ``name``, ``group`` or ``tags`` the config leaves empty gets those of ``identity``."""
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if not (isinstance(node, DictConfig) and "_target_" in node):
            continue
        named: dict[str, Any] = {}
        if identity is not None and str(node._target_).endswith("WandbLogger"):
            named = {key: value for key, value in (("name", identity.name), ("group", identity.group),
                                                   ("tags", list(identity.tags))) if not node.get(key)}
        loggers.append(instantiate(node, **named))
    if not any(isinstance(logger, CSVLogger) for logger in loggers):
        loggers.append(RunCSVLogger(save_dir=cfg.paths.output_dir, name="csv", version=""))
    return loggers


def _cpu_batchnorm(trainer: DictConfig) -> dict[str, Any]:
    """``{"sync_batchnorm": False}`` where ``trainer.sync_batchnorm`` is set (conf/trainer/ddp.yaml) but
    the ranks run on CPUs (``accelerator=cpu``, or ``auto`` without CUDA): PyTorch's SyncBatchNorm
    works with CUDA modules only, so each CPU rank keeps its own batch statistics. ``{}`` otherwise."""
    if not trainer.get("sync_batchnorm"):
        return {}
    accelerator = str(trainer.get("accelerator", "auto"))
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return {}
    log.info("trainer.sync_batchnorm=true needs CUDA modules; the CPU ranks keep their own batch-norm statistics")
    return {"sync_batchnorm": False}


@contextlib.contextmanager
def job_trainer(cfg: DictConfig, **trainer_kwargs: Any) -> Iterator[pl.Trainer]:
    """The Trainer of a train or attack job: configured callbacks and loggers (CSV always), the
    comparison keys of :func:`run_identity` (``eps``, ``target``, ...) and the resolved config (under
    ``config``) logged as hyperparameters, and W&B finished on exit so that each job of a
    multirun gets its own W&B run."""
    ensure_writable(cfg.paths.output_dir)
    identity = run_identity(cfg)
    loggers = build_loggers(cfg, identity)
    callbacks = instantiate_all(cfg.get("callbacks"))
    try:
        trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers,
                                          **_cpu_batchnorm(cfg.trainer), **trainer_kwargs)
    except Exception as err:  # noqa: BLE001 - only a missing accelerator package becomes a user error
        missing = err.__cause__ if isinstance(err.__cause__, ImportError) else err
        if not isinstance(missing, ImportError):
            raise
        raise ConfigError(f"trainer.accelerator={cfg.trainer.get('accelerator')!r} needs a package this machine "
                          f"lacks: {missing}") from None
    hparams = {**identity.config, "config": OmegaConf.to_container(cfg, resolve=True)}
    if trainer.is_global_zero:
        write_run_info(cfg.paths.output_dir, cfg.get("seed"))
    for logger in list(trainer.loggers):
        with wandb_failure_is_a_warning(trainer, logger):  # W&B starts here: its failure costs only W&B
            logger.log_hyperparams(hparams)
    try:
        yield trainer
    finally:
        if any(isinstance(logger, WandbLogger) for logger in loggers):
            import wandb

            try:
                wandb.finish()
            except Exception as err:  # noqa: BLE001 - the run's own files are written; W&B's sync state is W&B's
                log.warning("W&B failed to finish its run (%s: %s)", type(err).__name__, err)


def run_training(cfg: DictConfig) -> dict[str, Any]:
    """Train as configured (see ``conf/train.yaml``).

    Returns:
        ``{"best_val_dice", "best_checkpoint", "last_checkpoint", "metrics"}``; ``best_val_dice`` is
        the best checkpoint's score (the monitored metric: ``val/dice``, or ``val/robust_dice`` in
        adversarial training), ``None`` when no validation ran.
    """
    check_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    net = instantiate(cfg.model.net)
    if cfg.get("backbone_weights"):
        load_weights(net, cfg.backbone_weights, kind="backbone")
        log.info("loaded backbone weights from %s", cfg.backbone_weights)
    if cfg.get("init_from"):
        kind = load_weights(net, cfg.init_from)
        log.info("initialised the network from %s (%s checkpoint)", cfg.init_from, kind)
    module = instantiate(cfg.module, net=net)
    module.remember_victim(trained_victim(cfg))  # not through instantiate: its net config would be built
    # adversarial training attacks in validation too: gradients must be possible there (no inference mode)
    with job_trainer(cfg, inference_mode=module.adversarial is None) as trainer, stop_on_signals() as stop:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    if stop.signum is not None:
        _stopped(cfg, trainer, stop)
    return _report(trainer)


def _stopped(cfg: DictConfig, trainer: pl.Trainer, stop: StopRequest) -> None:
    """A training stopped by SIGTERM or SIGINT: one line saying where, and how to go on from the last
    epoch's checkpoint; exit 128 + signal."""
    run = Path(cfg.paths.output_dir)
    last = max(run.glob("checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime, default=None)
    where = f"stopped by {stop.name} in epoch {trainer.current_epoch + 1} of {trainer.max_epochs}"
    if last is None:
        print(f"{where}; no epoch had ended, so there is no checkpoint to resume from", file=sys.stderr)
    else:
        again = resume_command("train.py", ["hydra.run.dir", "ckpt_path"], [f"hydra.run.dir={run}", f"ckpt_path={last}"])
        print(f"{where}; resume with: {again}", file=sys.stderr)
    raise SystemExit(stop.exit_status)


def trained_victim(cfg: DictConfig) -> dict[str, Any]:
    """What this run's checkpoints carry of the victim it trains, besides the module's own
    ``val_fusion``, ``mean`` and ``std`` (:mod:`medis.models.victim_spec`): the network's config,
    the input size the loaders resize to, and whether that resize antialiases."""
    return {"net": OmegaConf.to_container(cfg.model.net, resolve=True), "input_size": int(cfg.data.image_size),
            "antialias": RESIZE_ANTIALIAS}


def _report(trainer: pl.Trainer) -> dict[str, Any]:
    """Print and return the run's final numbers."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint.best_model_score if checkpoint is not None else None
    monitor = (checkpoint.monitor if checkpoint is not None else None) or "val/dice"
    result = {
        "best_val_dice": float(best) if best is not None else metrics.get(monitor),
        "best_checkpoint": checkpoint.best_model_path if checkpoint is not None else None,
        "last_checkpoint": checkpoint.last_model_path if checkpoint is not None else None,
        "metrics": metrics,
    }
    if trainer.is_global_zero:
        shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("val/dice", "val/iou", "val/jaccard_thresholded",
                                                            "val/robust_dice") if k in metrics)
        print(f"final: {shown or 'no validation metrics'}")
        if result["best_val_dice"] is not None:
            print(f"best {monitor} {result['best_val_dice']:.4f}; checkpoint: {result['best_checkpoint'] or '-'}")
    return result
