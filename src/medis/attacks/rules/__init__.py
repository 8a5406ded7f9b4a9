"""The update rules, one small module each; :data:`RULES` finds them by name.

Every module of this package that defines a subclass of :class:`~medis.attacks.rules.base.UpdateRule`
with a ``name`` registers it: a new rule needs no list to be edited (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import pkgutil

from medis.attacks.rules.base import StepInfo, UpdateRule

__all__ = ["RULES", "StepInfo", "UpdateRule", "rule_classes"]


def rule_classes() -> dict[str, type[UpdateRule]]:
    """Every named rule class of this package's modules, by name (imports them all)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found: dict[str, type[UpdateRule]] = {}
    pending = list(UpdateRule.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if cls.name and cls.__module__.startswith(__name__ + "."):
            found.setdefault(cls.name, cls)
    return dict(sorted(found.items()))


RULES: dict[str, type[UpdateRule]] = rule_classes()
"""Rule name -> class."""
