"""What ``attack.py experiment=robustness_curve`` runs: the cascade at several radii on one or more
checkpoints, each image's worst case, the checks that the robustness is real, and the report.

For every model (``curve.checkpoints``, else ``model.checkpoint``) and every radius of ``curve.eps``
(/255) the attack (``attack=ensemble``: the cascade) runs on the first ``curve.images`` test images at
their original size; its records go to ``records/<model>_eps<k>.csv``; each image's worst case
(:mod:`medis.robustness.worst_case`) gives the mean worst-case mIoU and Dice. Then the checks of
:mod:`medis.robustness.checks` run at ``curve.checks.eps``. The table, plot, ``curve.json`` and
``checks.json`` go to the run folder (:mod:`medis.robustness.report`) and to the loggers (W&B: the
table, the plot and one metric per model and radius).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from medis.config.schema import check_config
from medis.errors import ConfigError
from medis.lightning.attack_job import engine_options, explicit_model_keys, victim_of
from medis.lightning.train_job import job_trainer
from medis.models.wrappers import FLOAT64
from medis.reporting import RecordWriter
from medis.robustness.checks import CheckSettings, run_checks
from medis.robustness.report import labels_of, write_report
from medis.robustness.worst_case import at_radius, clean_scores, mean, worst_cases

log = logging.getLogger(__name__)


def _device(cfg: DictConfig) -> torch.device:
    wanted = str(cfg.trainer.get("accelerator", "auto"))
    return torch.device("cuda" if wanted in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu")


def _settings(node: DictConfig) -> CheckSettings:
    values = OmegaConf.to_container(node, resolve=True) or {}
    known = set(CheckSettings.__dataclass_fields__)
    unknown = sorted(set(values) - known - {"transfer_from"})
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in curve.checks; valid: {', '.join(sorted(known | {'transfer_from'}))}")
    values.pop("transfer_from", None)
    for key in ("eps", "large_eps"):
        if values.get(key) is not None:
            values[key] = float(values[key]) / 255
    if "seeds" in values:
        values["seeds"] = tuple(int(s) for s in values["seeds"])
    return CheckSettings(**values)


def _samples(cfg: DictConfig, count: int | None, device: torch.device, dtype: torch.dtype):
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()  # synthetic sets are generated on first use
    datamodule.setup("test")
    dataset = datamodule.dataset("test", sharded=False)
    n = len(dataset) if count is None else min(int(count), len(dataset))
    if n == 0:
        raise ConfigError(f"data: the test split of {cfg.data.root} holds no images")
    samples = [dataset[i] for i in range(n)]
    images = [s["image"].to(device, dtype) for s in samples]
    masks = [s["mask"].to(device, dtype) for s in samples]
    return images, masks, [str(s["id"]) for s in samples], str(cfg.data.get("dataset_name") or "")


def run_robustness_job(cfg: DictConfig) -> dict[str, Any]:
    """The robustness curve as configured (module docstring); returns ``{"models": {label: ...}, "paths"}``."""
    check_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    curve_cfg = cfg.curve
    checkpoints = [str(c) for c in (curve_cfg.get("checkpoints") or [])] or (
        [str(cfg.model.checkpoint)] if cfg.model.get("checkpoint") else [])
    if not checkpoints:
        raise ConfigError("the robustness curve needs a model: model.checkpoint=<ckpt> or curve.checkpoints=[a.ckpt,b.ckpt]")
    for path in checkpoints:
        if not Path(path).is_file():
            raise ConfigError(f"curve.checkpoints: {path}: no such file")
    labels = labels_of(checkpoints, curve_cfg.get("labels"))
    if len(labels) != len(checkpoints) or len(set(labels)) != len(labels):
        raise ConfigError(f"curve.labels must name each of the {len(checkpoints)} checkpoints once, got {labels}")
    radii = [float(e) for e in curve_cfg.eps]
    settings = _settings(curve_cfg.checks)
    source_path = curve_cfg.checks.get("transfer_from")
    if source_path is not None and not Path(str(source_path)).is_file():
        raise ConfigError(f"curve.checks.transfer_from: {source_path}: no such file")
    engine, fast_path = engine_options(cfg.engine)
    attack = instantiate(cfg.attack, _convert_="all").with_losses(list(cfg.losses.names))
    device = _device(cfg)
    dtype = torch.float64 if fast_path.precision == FLOAT64 else torch.float32
    images, masks, ids, dataset = _samples(cfg, curve_cfg.get("images"), device, dtype)
    run_dir = Path(cfg.paths.output_dir)
    explicit = explicit_model_keys()

    def load(path: str):
        return fast_path.wrap(victim_of(cfg, explicit, checkpoint=path).to(device).freeze())

    source = load(str(source_path)) if source_path is not None else None
    models: dict[str, Any] = {}
    with job_trainer(cfg, inference_mode=False) as trainer:
        for label, path in zip(labels, checkpoints):
            victim = source if source is not None and Path(path).resolve() == Path(str(source_path)).resolve() \
                else load(path)
            clean_miou, clean_dice = clean_scores(victim, images, masks)
            model: dict[str, Any] = {"checkpoint": path, "clean": {"miou": mean(clean_miou), "dice": mean(clean_dice)},
                                     "eps": {}, "images": ids}
            reference = None
            for eps_255 in radii:
                print(f"{label}: attacking {len(ids)} images at eps {eps_255:g}/255 ({attack.name})", flush=True)
                start = time.perf_counter()
                found = worst_cases(victim, images, masks, ids, at_radius(attack, eps_255 / 255), seed=cfg.seed,
                                    options=engine, dataset=dataset)
                with RecordWriter(run_dir / "records" / f"{label.replace('/', '_')}_eps{eps_255:g}.csv") as writer:
                    writer.append(found.records)
                model["eps"][f"{eps_255:g}"] = {**found.summary(), "per_image_miou": found.miou,
                                                "per_image_dice": found.dice, "seconds": time.perf_counter() - start}
                print(f"{label}: eps {eps_255:g}/255: worst-case mIoU {found.summary()['miou']:.4f}, Dice "
                      f"{found.summary()['dice']:.4f} ({len(ids)} images, {found.summary()['passes']:.0f} passes "
                      f"an image, {time.perf_counter() - start:.0f} s)", flush=True)
                if abs(eps_255 / 255 - settings.eps) < 1e-9:
                    reference = found
            if settings.enabled:
                if reference is None:
                    reference = worst_cases(victim, images, masks, ids, at_radius(attack, settings.eps), seed=cfg.seed,
                                            options=engine)
                checks = run_checks(victim, images, masks, ids, at_radius(attack, settings.eps), reference, settings,
                                    seed=cfg.seed, options=engine, source=source,
                                    progress=lambda name, label=label: print(f"{label}: check {name}", flush=True))
                model["checks"] = [c.as_dict() for c in checks]
                for check in checks:
                    print(f"{label}: {check.name}: {({True: 'pass', False: 'FAIL', None: 'skipped'})[check.passed]}: "
                          f"{check.detail}", flush=True)
            models[label] = model
        shown = {key: OmegaConf.to_container(curve_cfg, resolve=True)[key] for key in ("eps", "images")}
        paths = write_report(run_dir, models, {**shown, "checks": {**settings.__dict__, "transfer_from": source_path},
                                               "attack": attack.name, "seed": int(cfg.seed)})
        _log(trainer, models, paths)
    print(paths["table"].read_text())
    print(f"robustness curve: {paths['table']}, {paths['plot']}, {paths['checks']}")
    return {"models": models, "paths": paths}


def _log(trainer: pl.Trainer, models: dict[str, Any], paths: dict[str, Path]) -> None:
    """Every model's worst cases as metrics (``curve/<model>/miou@<eps>``), and for W&B the table and plot."""
    metrics = {}
    for label, model in models.items():
        metrics[f"curve/{label}/miou@0"] = model["clean"]["miou"]
        metrics[f"curve/{label}/dice@0"] = model["clean"]["dice"]
        for eps, row in model["eps"].items():
            metrics[f"curve/{label}/miou@{eps}"] = row["miou"]
            metrics[f"curve/{label}/dice@{eps}"] = row["dice"]
    for logger in trainer.loggers:
        logger.log_metrics({k: v for k, v in metrics.items() if v is not None})
        if isinstance(logger, WandbLogger):
            rows = [[label, float(eps), row["miou"], row["dice"]] for label, model in models.items()
                    for eps, row in model["eps"].items()]
            logger.log_table(key="robustness_curve", columns=["model", "eps_255", "worst_miou", "worst_dice"], data=rows)
            logger.log_image(key="robustness_curve_plot", images=[str(paths["plot"])])
        logger.save()
