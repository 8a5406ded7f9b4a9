"""What ``attack.py`` runs: victim, data, AttackModule, callbacks, loggers, ``trainer.test``."""

from __future__ import annotations

from pathlib import Path
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
    transfer = cfg.get("transfer_to")
    module = AttackModule(victim=instantiate(cfg.model), attack=attack, losses=list(cfg.losses.names),
                          targets=list(cfg.target.kinds), output_dir=cfg.paths.output_dir, resume=cfg.resume,
                          seed=cfg.seed, gallery_size=cfg.gallery_size,
                          transfer_victim=instantiate(cfg.model, checkpoint=transfer) if transfer else None)
    datamodule = instantiate(cfg.data)
    with job_trainer(cfg, inference_mode=False) as trainer:
        trainer.test(module, datamodule=datamodule)
    if trainer.is_global_zero:
        print(where_results_are(Path(cfg.paths.output_dir)))
    fusion = next((c for c in trainer.callbacks if isinstance(c, FusionCallback)), None)
    return {"records": module.records, "summary": fusion.rows if fusion is not None else []}


def where_results_are(run_dir: Path) -> str:
    """A few lines naming the files an attack run wrote (records, summary, gallery, W&B, CSV logs)."""
    found = [("records", sorted(run_dir.glob("records.csv"))),
             ("summary", sorted(run_dir.glob("summary.md"))),
             ("gallery", sorted(run_dir.glob("gallery_*.png"))),
             ("W&B offline run", sorted(run_dir.glob("wandb/offline-run-*"))),
             ("CSV metrics", sorted(run_dir.glob("csv/**/metrics.csv")))]
    lines = [f"  {label:<16} {path}" for label, paths in found for path in paths]
    return "\n".join([f"attack run folder: {run_dir}", *lines])
