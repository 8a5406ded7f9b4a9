"""What ``attack.py`` runs: victim, data, AttackModule, callbacks, loggers, ``trainer.test``."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import medis.config.resolvers  # noqa: F401  (registers the config resolvers)
from medis.attacks.composition import as_part
from medis.attacks.engine import EngineOptions
from medis.config.schema import check_config
from medis.errors import ConfigError
from medis.lightning.attack_module import AttackModule
from medis.lightning.fusion_callback import FusionCallback
from medis.lightning.train_job import job_trainer
from medis.models.frontend import Victim
from medis.models.wrappers import FastPath
from medis.runtime.resume_command import resume_command
from medis.runtime.stop_signals import stop_on_signals

log = logging.getLogger(__name__)


def engine_options(node: DictConfig | dict) -> tuple[EngineOptions, FastPath]:
    """The ``engine`` config node split into the engine's options and the victim's fast path, by
    their fields (an unknown key is a one-line error naming both lists)."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    names = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (EngineOptions, FastPath)}
    unknown = sorted(set(values) - names[EngineOptions] - names[FastPath])
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in engine; valid: {', '.join(sorted(set().union(*names.values())))}")
    return tuple(as_part({k: v for k, v in values.items() if k in names[cls]}, cls, "engine")  # type: ignore[return-value]
                 for cls in (EngineOptions, FastPath))


def build_attack_module(cfg: DictConfig, **overrides: Any) -> AttackModule:
    """The :class:`AttackModule` of ``cfg`` (``conf/attack.yaml``); ``overrides`` replace its arguments
    (e.g. ``victim=``)."""
    engine, fast_path = engine_options(cfg.engine)
    transfer = cfg.get("transfer_to")
    arguments: dict[str, Any] = dict(
        attack=instantiate(cfg.attack, _convert_="all"), losses=list(cfg.losses.names), targets=list(cfg.target.kinds),
        output_dir=cfg.paths.output_dir, engine=engine, fast_path=fast_path, resume=cfg.resume, seed=cfg.seed,
        gallery_size=cfg.gallery_size)
    arguments.update(overrides)
    if "victim" not in arguments:
        arguments["victim"] = victim_of(cfg, explicit_model_keys())
    if "transfer_victim" not in arguments:
        arguments["transfer_victim"] = victim_of(cfg, (), checkpoint=transfer) if transfer else None
    return AttackModule(**arguments)


def explicit_model_keys() -> set[str]:
    """The victim settings this run's command line sets on purpose (Hydra's task overrides): ``net``
    for ``model=<architecture>`` or ``model.net.*``, else the key under ``model.``; none outside a
    Hydra run. A checkpoint of ours must agree with each (:mod:`medis.models.build`)."""
    if not HydraConfig.initialized():
        return set()
    found = set()
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "model" or key.startswith("model.net"):
            found.add("net")
        elif key.startswith("model."):
            found.add(key.split(".")[1])
    return found - {"checkpoint", "backbone_weights"}


def victim_of(cfg: DictConfig, explicit: Collection[str], **changes: Any) -> Victim:
    """The victim of ``cfg.model`` (``changes``: other arguments, e.g. another ``checkpoint``): the one
    a checkpoint of ours carries, else the config's. Paper mode reads it as the MedIS notebooks do
    (the paper fusion, bilinear resize without antialiasing), whatever the checkpoint validated with."""
    paper = cfg.attack.get("mode") == "paper"
    kept = set(explicit) - ({"fusion", "antialias"} if paper else set())
    victim = instantiate(cfg.model, **changes, explicit=sorted(kept))
    if paper and (victim.fusion, victim.antialias) != ("paper", False):
        log.info("paper mode: the victim's %s fusion and %s resize are read as the notebooks read them (paper "
                 "fusion, no antialiasing)", victim.fusion, "antialiased" if victim.antialias else "plain")
        victim.fusion, victim.antialias = "paper", False
    return victim


def run_attack_job(cfg: DictConfig) -> dict[str, Any]:
    """Attack as configured (see ``conf/attack.yaml``); returns ``{"records", "summary"}``."""
    check_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    module: AttackModule | None = None
    with stop_on_signals() as stop:  # SIGTERM / Ctrl-C, from set-up to W&B's last upload
        module = build_attack_module(cfg)
        datamodule = instantiate(cfg.data)
        with job_trainer(cfg, inference_mode=False) as trainer:
            try:
                trainer.test(module, datamodule=datamodule)
            except BaseException:
                module.leave_finish_line()  # other ranks waiting for this one stop at once
                raise
    if stop.signum is not None:  # the fusion callback wrote the partial summary; W&B is closed
        run = cfg.paths.output_dir
        again = resume_command("attack.py", ["hydra.run.dir", "resume"], [f"hydra.run.dir={run}", "resume=true"])
        where = (module.stopped_line(stop.name) if module is not None and module.total_images
                 else f"stopped by {stop.name} before the attack started")
        print(f"{where}; resume with: {again}", file=sys.stderr)
        raise SystemExit(stop.exit_status)
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
