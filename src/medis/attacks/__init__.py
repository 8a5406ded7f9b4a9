"""Attacks: composable parts (update rules, budgets, criteria, losses, targets) and the batched engine.

An attack is a composition (:class:`Attack`: rule + losses + budget + criteria); an ensemble a list
of attacks (:class:`Ensemble`); :func:`run_attack` runs one attack on a batch. docs/architecture.md
shows how to add a rule, an attack, a loss or a target kind.

Names are imported lazily, so that importing a torch-free part (the target-kind registry
:mod:`medis.attacks.targets`) does not import torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Attack": "medis.attacks.composition",
    "AttackResult": "medis.attacks.engine",
    "Budget": "medis.attacks.budget",
    "Criteria": "medis.attacks.criteria",
    "EngineOptions": "medis.attacks.engine",
    "Ensemble": "medis.attacks.ensemble",
    "RULES": "medis.attacks.rules",
    "TARGET_KINDS": "medis.attacks.targets",
    "TargetPool": "medis.attacks.targets",
    "Thresholds": "medis.attacks.criteria",
    "make_targets": "medis.attacks.targets",
    "paper_random_targets": "medis.attacks.targets",
    "run_attack": "medis.attacks.engine",
    "run_ensemble": "medis.attacks.ensemble",
    "same_as_ground_truth": "medis.attacks.targets",
    "similarity_table": "medis.attacks.similarity",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medis.attacks' has no attribute {name!r}")
