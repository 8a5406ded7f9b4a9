"""What ``attack.py`` runs: victim, data, AttackModule, callbacks, loggers, ``trainer.test``."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from medis.lightning.attack_module import AttackModule
from medis.lightning.callbacks import FusionCallback
from medis.lightning.training import job_trainer


def run_attack_job(cfg: DictConfig) -> dict[str, Any]:
    """Attack as configured (see ``conf/attack.yaml``); returns ``{"records", "summary"}``."""
    pl.seed_everything(cfg.seed, workers=True)
    attack = OmegaConf.to_container(cfg.attack, resolve=True)
    module = AttackModule(victim=instantiate(cfg.model), attack=attack, losses=list(cfg.losses.names),
                          targets=list(cfg.target.kinds), output_dir=cfg.paths.output_dir, resume=cfg.resume,
                          seed=cfg.seed)
    datamodule = instantiate(cfg.data)
    with job_trainer(cfg, inference_mode=False) as trainer:
        trainer.test(module, datamodule=datamodule)
    fusion = next((c for c in trainer.callbacks if isinstance(c, FusionCallback)), None)
    return {"records": module.records, "summary": fusion.rows if fusion is not None else []}
