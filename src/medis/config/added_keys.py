"""Keys added with ``+`` on the command line must exist somewhere: a typo is one line, not a silent no-op.

Hydra refuses ``attack.stesp=5`` (no such key) and suggests ``+attack.stesp=5``, which it then adds
without complaint: the run ignores it (``+resume=true`` for ``resume``), or a constructor fails
with a TypeError deep inside the run (``+data.eval_bach_size=4``). :func:`check_added_keys` accepts
an added key only when

- its parent node builds an object (``_target_``) whose constructor takes it by name, or takes
  ``**kwargs`` (``+trainer.limit_train_batches=2``, ``+model.net.base_channels=16``; not
  ``+attack.rule.momentum=0.9`` when the rule is PGD, which has no momentum);
- else, the schema knows it (:data:`medis.config.schema.SCHEMA`);
- it adds a whole new entry to a collection of objects (``+callbacks.early_stop._target_=...``,
  ``+logger.tensorboard._target_=...``);

and otherwise stops with one line naming the key and the nearest key the config does hold.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medis.errors import ConfigError

__all__ = ["added_keys", "check_added_keys"]

COLLECTIONS = ("callbacks", "logger")
"""Nodes whose entries are objects a user may add (``+callbacks.<name>._target_=...``)."""


def added_keys(overrides: Iterable[str]) -> list[str]:
    """The keys that ``+key=value`` / ``++key=value`` command-line overrides add, in order."""
    keys = []
    for override in overrides:
        if override.startswith("+") and "=" in override:
            key = override.split("=", 1)[0].lstrip("+")
            if "@" not in key and "/" not in key:  # +group@pkg=option adds a config group, not a key
                keys.append(key)
    return keys


def _paths(node: Any, prefix: str = "") -> list[str]:
    """Every key path of ``node`` (inner nodes and leaves), without resolving interpolations."""
    found = []
    if isinstance(node, DictConfig):
        for name in node.keys():
            path = f"{prefix}.{name}" if prefix else str(name)
            found.append(path)
            found.extend(_paths(node._get_node(name), path))
    return found


def _schema_knows(key: str, patterns: Iterable[str]) -> bool:
    parts = key.split(".")
    for pattern in patterns:
        wanted = pattern.split(".")
        if len(wanted) == len(parts) and all(w in ("*", p) for w, p in zip(wanted, parts)):
            return True
    return False


def _constructor_takes(target: str, name: str) -> bool:
    """Whether the callable named ``target`` takes a keyword ``name`` (or ``**kwargs``); ``True`` when it
    cannot be inspected (an unknown target is reported where it is built)."""
    from hydra._internal.utils import _locate

    try:
        signature = inspect.signature(_locate(target))
    except Exception:  # noqa: BLE001 - an unimportable target fails, with its own message, when it is built
        return True
    parameters = signature.parameters.values()
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters) or name in signature.parameters


def _accepted(cfg: DictConfig, key: str, known: set[str], patterns: Iterable[str]) -> bool:
    parts = key.split(".")
    if parts[0] in COLLECTIONS and len(parts) >= 2 and parts[0] + "." + parts[1] not in known:
        return True  # a whole new callback or logger
    parent = ".".join(parts[:-1])
    node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent in known else None
    if isinstance(node, DictConfig) and "_target_" in node:  # what the object's constructor takes decides
        return _constructor_takes(str(node._get_node("_target_")._value()), parts[-1])
    return _schema_knows(key, patterns)


def _nearest(key: str, candidates: Sequence[str]) -> str | None:
    """The candidate ``key`` most likely meant: the closest last part among the keys under its first
    part (``attack.stesp`` -> ``attack.budget.steps``), else the closest whole key."""
    leaf, top = key.rsplit(".", 1)[-1], key.split(".", 1)[0]
    within = [c for c in candidates if c.split(".", 1)[0] == top and c != top] if "." in key else []
    scored = sorted(((difflib.SequenceMatcher(None, leaf, c.rsplit(".", 1)[-1]).ratio(), c) for c in within),
                    reverse=True)
    if scored and scored[0][0] >= 0.6:
        return scored[0][1]
    found = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    return found[0] if found else None


def check_added_keys(cfg: DictConfig, overrides: Sequence[str], patterns: Iterable[str] | None = None) -> None:
    """Stop at the first ``+`` key of ``overrides`` that ``cfg`` (the composed task config) has no
    place for (module docstring).

    Raises:
        ConfigError: ``unknown key <key> (added with +); the nearest key is <nearest>`` (one line).
    """
    if patterns is None:
        from medis.config.schema import SCHEMA

        patterns = list(SCHEMA)
    patterns = list(patterns)
    added = added_keys(overrides)
    if not added:
        return
    every = _paths(cfg)
    known = {path for path in every if not any(path == k or path.startswith(k + ".") for k in added)}
    # a node that holds nothing but added keys was made by them (+callbacks.early._target_=...)
    known -= {path for path in known if any(k.startswith(path + ".") for k in added)
              and not any(other.startswith(path + ".") for other in known)}
    for key in added:
        if _accepted(cfg, key, known, patterns):
            continue
        nearest = _nearest(key, sorted(known | {p for p in patterns if "*" not in p}))
        hint = f"; the nearest key is {nearest}" if nearest else ""
        raise ConfigError(f"unknown key {key} (added with +{key}=...): no config group, schema entry or "
                          f"constructor takes it{hint}")
