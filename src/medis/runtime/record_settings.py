"""The settings that define a run's records, kept in the run folder so that ``resume=true`` cannot
mix two experiments in one records.csv.

A fresh attack run writes ``<run>/record_settings.json``: every config value under the keys that
decide what a record says (the attack and its parts, ε, losses, targets, the model and the SHA-256
of its checkpoint, the data and its shard, the seed, the transfer model, the precision and the
loss resolution), unresolved as typed, flattened to dotted keys. ``resume=true`` compares the
current values with them and refuses with one line naming each key that differs, before any file
of the run is touched (``.hydra/`` included). Keys that only change how the work runs (loader
workers, batch sizes, engine batching, logging) may change on resume. A run folder written before
this file existed is compared with its ``.hydra/config.yaml`` (without the checkpoint's hash).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medis.errors import ConfigError
from medis.reporting.atomic import atomic_write_text

__all__ = ["RECORD_DEFINING", "SETTINGS_NAME", "check_resume_settings", "record_settings", "write_record_settings"]

SETTINGS_NAME = "record_settings.json"

RECORD_DEFINING = ("attack", "losses", "target", "model", "data", "seed", "transfer_to", "engine.precision",
                   "engine.loss_size")
"""Config nodes whose values decide what a record holds."""

_HOW_IT_RUNS = {"data.num_workers", "data.pin_memory", "data.batch_size", "data.eval_batch_size"}
"""Keys under those nodes that change only how the work runs."""


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}", out)
    else:
        out[prefix] = json.dumps(value, sort_keys=True) if isinstance(value, list) else str(value)


def _sha256(path: str) -> str | None:
    file = Path(path)
    if not file.is_file():
        return None
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_settings(task: DictConfig | dict, with_hash: bool = True) -> dict[str, str]:
    """``{dotted key: value as typed}`` of the record-defining keys of ``task`` (the job's config
    without ``hydra``), with ``model.checkpoint#sha256`` when the checkpoint is a file."""
    tree = OmegaConf.to_container(task, resolve=False) if isinstance(task, DictConfig) else task
    out: dict[str, str] = {}
    for key in RECORD_DEFINING:
        node: Any = tree
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        _flatten(node, key, out)
    for key in _HOW_IT_RUNS:
        out.pop(key, None)
    model = tree.get("model")
    checkpoint = model.get("checkpoint") if isinstance(model, dict) else None
    if with_hash and checkpoint:
        digest = _sha256(str(checkpoint))
        if digest is not None:
            out["model.checkpoint#sha256"] = digest
    return out


def write_record_settings(run_dir: str | Path, task: DictConfig) -> Path:
    """Write ``<run_dir>/record_settings.json`` for a fresh run (atomically)."""
    settings = record_settings(task)
    return atomic_write_text(Path(run_dir) / SETTINGS_NAME, json.dumps(settings, indent=1, sort_keys=True) + "\n")


def _stored(run_dir: Path) -> tuple[dict[str, str], str] | None:
    """The stored settings and where they come from, or None when the folder holds neither file."""
    saved = run_dir / SETTINGS_NAME
    if saved.is_file():
        return json.loads(saved.read_text(encoding="utf-8")), str(saved)
    legacy = run_dir / ".hydra" / "config.yaml"
    if legacy.is_file():
        return record_settings(OmegaConf.load(legacy), with_hash=False), str(legacy)
    return None


def check_resume_settings(run_dir: str | Path, task: DictConfig) -> None:
    """Refuse to resume ``run_dir`` with record-defining settings other than the stored ones.

    Raises:
        ConfigError: one line naming each differing key with its stored and current value.
    """
    run_dir = Path(run_dir)
    found = _stored(run_dir)
    if found is None or not (run_dir / "records.csv").exists():
        return
    stored, source = found
    current = record_settings(task, with_hash="model.checkpoint#sha256" in stored)
    differing = sorted(key for key in set(stored) | set(current) if stored.get(key) != current.get(key))
    if not differing:
        return
    shown = [f"{key} (stored {_short(stored.get(key))}, now {_short(current.get(key))})" for key in differing[:8]]
    more = f" and {len(differing) - 8} more" if len(differing) > 8 else ""
    raise ConfigError(f"resume=true into {run_dir}: settings that define its records differ from {source}: "
                      f"{'; '.join(shown)}{more}. Resume with the stored values, or start a new run folder")


def _short(value: str | None) -> str:
    if value is None:
        return "unset"
    return value if len(value) <= 40 else value[:16] + "..." + value[-8:]
