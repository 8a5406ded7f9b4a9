"""The update rules, one small module each; :data:`RULES` finds them by name.

Every module of this package that defines a subclass of :class:`~medis.attacks.rules.base.UpdateRule`
with a ``name`` registers it: a new rule needs no list to be edited (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from medis.attacks.rules.base import StepInfo, UpdateRule
from medis.errors import ConfigError

__all__ = ["RULES", "StepInfo", "UpdateRule", "as_rule", "rule_classes"]


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


def as_rule(value: Any, key: str = "attack.rule") -> UpdateRule:
    """A rule object from itself, a registered name (``"pgd"``) or ``{"name": ..., **parameters}``.

    Raises:
        ConfigError: an unknown rule name, an unknown parameter (one line naming ``key`` and the
            valid ones) or anything else.
    """
    if isinstance(value, UpdateRule):
        return value
    if isinstance(value, str):
        return _rule_class(value, key)()
    if isinstance(value, Mapping) and "name" in value:
        cls = _rule_class(value["name"], key)
        params = {k: v for k, v in value.items() if k != "name"}
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown} in {key}; valid: {', '.join(sorted(names))}")
        return cls(**params)
    raise ConfigError(f"{key} must be an update rule ({', '.join(RULES)}), got {value!r}")


def _rule_class(name: str, key: str) -> type[UpdateRule]:
    if name not in RULES:
        raise ConfigError(f"{key}={name!r} is not an update rule; choose one of {', '.join(RULES)}")
    return RULES[name]
