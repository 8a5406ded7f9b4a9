"""Who a run is, for comparing runs in W&B: its display name, group, tags and the plain top-level
config keys a dashboard filters and plots by.

- name: what this job sets on the command line (``pgd eps=0.0314 target=white``), so the runs of a
  sweep have distinct names that say what differs; without overrides, ``<data>-<model>[-<attack>]-s<seed>``;
- group: the sweep for the jobs of a multirun (``attack 2026-11-29_11-02-38``), otherwise
  ``<data>-<model>``: every job of one sweep shares a W&B group;
- tags: ``attack:<name>``, ``data:<name>``, ``model:<name>``, ``target:<kind>``, ``mode:<mode>``;
- config: ``eps``, ``target``, ``dataset``, ``attack``, ``losses``, ``steps``, ``mode``, ``model``,
  ``seed`` (attack runs) or ``dataset``, ``model``, ``epochs``, ``lr``, ... (training runs) at the top
  level, beside the full resolved config under ``config``.

``run_name`` / ``run_group`` in the config replace the automatic name and group when set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["RunIdentity", "run_identity", "job_overrides"]

NOT_IN_NAMES = ("paths.", "hydra.", "data.root", "data.synthetic.", "data.num_workers", "model.checkpoint",
                "transfer_to", "resume", "wait_for_lock", "run_name", "run_group", "logger", "trainer.limit_",
                "ckpt_path", "init_from", "backbone_weights", "engine")
"""Override keys that only say where things are or how the job runs, not what it measures."""

SHORT_KEYS = {"attack.budget.eps": "eps", "attack.budget.steps": "steps", "attack.budget.norm": "norm",
              "losses.names": "losses", "target.kinds": "target"}


@dataclass(frozen=True)
class RunIdentity:
    """A run's W&B name, group, tags and top-level comparison keys."""

    name: str
    group: str
    tags: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)


def _hydra() -> Any:
    """This job's ``HydraConfig``, or None outside a Hydra job (a library caller)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def job_overrides() -> list[str]:
    """This job's command-line overrides (the swept values included) as ``key=value`` strings; empty
    outside a Hydra job."""
    hydra = _hydra()
    return list(hydra.overrides.task) if hydra is not None else []


def _choices() -> dict[str, str]:
    hydra = _hydra()
    return {k: v for k, v in hydra.runtime.choices.items() if isinstance(v, str)} if hydra is not None else {}


def _sweep_group(task: str) -> str | None:
    """``<task> <sweep folder name>`` for a job of a multirun, else None."""
    from hydra.types import RunMode

    hydra = _hydra()
    if hydra is not None and hydra.mode == RunMode.MULTIRUN:
        return f"{task} {PurePath(str(hydra.sweep.dir)).name}"
    return None


def short_override(override: str) -> str | None:
    """``attack.budget.eps=0.0314`` -> ``eps=0.0314``; ``attack=pgd`` -> ``attack=pgd``; a path value
    -> its file name; None for keys that do not say what the job measures (:data:`NOT_IN_NAMES`)."""
    key, _, value = override.lstrip("+~").partition("=")
    if key.startswith(NOT_IN_NAMES) or key in NOT_IN_NAMES:
        return None
    if "/" in value:
        value = PurePath(value).name
    short = SHORT_KEYS.get(key, key.split("/")[-1] if "/" in key else key)
    return f"{short}={value.strip('[]')}"


FIRST_IN_NAMES = ("attack", "data", "model", "eps", "target", "losses", "steps")


def _name_order(short: str) -> int:
    """What a sweep usually varies comes first in a run name; the rest keeps its command-line order."""
    key = short.partition("=")[0]
    return FIRST_IN_NAMES.index(key) if key in FIRST_IN_NAMES else len(FIRST_IN_NAMES)


def _number(value: Any) -> float | int | None:
    """A budget value as a plain number (None stays None: paper mode has no eps ball)."""
    return None if value is None else (int(value) if isinstance(value, int) else float(value))


def _join(values: Any) -> str:
    return ",".join(str(v) for v in values) if isinstance(values, (list, tuple)) else str(values)


def comparison_keys(cfg: DictConfig, task: str) -> dict[str, Any]:
    """The plain values dashboards compare runs by (see the module docstring)."""
    choices = _choices()
    model = choices.get("model") or str(cfg.model.get("_target_", "model")).rsplit(".", 1)[-1]
    keys: dict[str, Any] = {"dataset": str(cfg.data.get("dataset_name") or choices.get("data", "data")), "model": model,
                            "seed": cfg.get("seed")}
    if task == "attack":
        attack = cfg.attack
        keys.update(attack=str(attack.get("name") or choices.get("attack")), mode=str(attack.get("mode", "clean")),
                    eps=_number(attack.budget.get("eps")), steps=_number(attack.budget.get("steps")),
                    norm=attack.budget.get("norm"),
                    losses=_join(list(cfg.losses.names)), target=_join(list(cfg.target.kinds)))
    else:
        module = cfg.get("module", {})
        keys.update(epochs=cfg.trainer.get("max_epochs"), lr=OmegaConf.select(module, "optimizer.lr"),
                    batch_size=cfg.data.get("batch_size"), image_size=cfg.data.get("image_size"),
                    init_from=PurePath(str(cfg.init_from)).name if cfg.get("init_from") else None)
    return keys


def run_identity(cfg: DictConfig) -> RunIdentity:
    """Name, group, tags and comparison keys of the run ``cfg`` describes (``task_name`` attack or train)."""
    task = str(cfg.get("task_name", "attack"))
    keys = comparison_keys(cfg, task)
    base = "-".join([keys["dataset"], keys["model"], *([keys["attack"]] if task == "attack" else []), f"s{keys['seed']}"])
    shown = sorted((s for s in (short_override(o) for o in job_overrides()) if s), key=_name_order)
    if task == "attack" and shown and not shown[0].startswith("attack="):  # name the attack first
        shown.insert(0, keys["attack"])
    name = cfg.get("run_name") or " ".join(shown) or base
    group = cfg.get("run_group") or _sweep_group(task) or f"{keys['dataset']}-{keys['model']}"
    tags = [f"data:{keys['dataset']}", f"model:{keys['model']}"]
    if task == "attack":
        tags += [f"attack:{keys['attack']}", f"mode:{keys['mode']}", *(f"target:{k}" for k in cfg.target.kinds)]
    return RunIdentity(name=str(name), group=str(group), tags=tuple(t[:64] for t in tags), config=keys)
