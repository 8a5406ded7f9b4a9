"""MedIS: adversarial attacks on medical image segmentation.

Reproduces and extends Shukla, Gupta, Gupta, "Exploring the feasibility of adversarial attacks on
medical image segmentation", Multimedia Tools and Applications, 2023
(doi:10.1007/s11042-023-15575-8).

The library needs no config::

    from medis import Attack, Victim, run_attack

(imported lazily, so that ``import medis`` and the data tools stay light).
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "run_attack": "medis.attacks.engine",
    "Attack": "medis.attacks.composition",
    "AttackResult": "medis.attacks.engine.results",
    "Budget": "medis.attacks.budget",
    "EngineOptions": "medis.attacks.engine",
    "Record": "medis.results.records",
    "Victim": "medis.models.frontend",
    "build_loss": "medis.losses",
    "fuse": "medis.results.fusion",
    "summary_table": "medis.results.fusion",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medis' has no attribute {name!r}")
