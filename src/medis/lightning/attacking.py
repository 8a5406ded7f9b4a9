"""What ``attack.py`` runs: victim, data, AttackModule, callbacks, loggers, ``trainer.test``."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from medis.lightning.attack_module import AttackModule
from medis.lightning.training import _instantiate_all, build_loggers


def run_attack_job(cfg: DictConfig) -> dict[str, Any]:
    """Attack as configured (see ``conf/attack.yaml``); returns ``{"records", "summary"}``."""
    pl.seed_everything(cfg.seed, workers=True)
    attack = OmegaConf.to_container(cfg.attack, resolve=True)
    module = AttackModule(victim=instantiate(cfg.model), attack=attack, losses=list(cfg.losses.names),
                          targets=list(cfg.target.kinds), output_dir=cfg.paths.output_dir, resume=cfg.resume,
                          seed=cfg.seed)
    datamodule = instantiate(cfg.data)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = build_loggers(cfg)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, inference_mode=False)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)
    try:
        trainer.test(module, datamodule=datamodule)
    finally:
        if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
            import wandb

            wandb.finish()
    fusion = next((c for c in callbacks if hasattr(c, "rows")), None)
    return {"records": module.records, "summary": fusion.rows if fusion is not None else []}
