"""What the configs read from the registries, so that no config lists a registry by hand.

- OmegaConf resolvers: ``${medis.losses:<selection>}`` gives loss names of
  :data:`medis.losses.LOSS_SETS` (``all``, ``paper``, ``sea``; e.g. ``conf/losses/all.yaml``);
  ``${medis.targets:<selection>}`` target kinds of :func:`medis.attacks.targets.kinds_named` (``all``,
  ``paper``, ``paper_targeted``, ``targeted``; e.g. ``conf/target/all.yaml``);
  ``${medis.is_clean:${attack.mode}}`` whether an attack is in clean mode (``conf/attack.yaml`` turns
  the victim's antialiased resize on for clean mode); ``${medis.clean_only:${attack.mode},<value>}``
  the value in clean mode and null in paper mode (``engine.loss_size``);
- Hydra config-group options: every registered loss is ``losses=<name>`` (``{names: [<name>]}``)
  and every target kind ``target=<kind>`` (``{kinds: [<kind>]}``), next to the files of
  ``conf/losses`` and ``conf/target``.

Registered when this module is imported (``attack.py`` imports it through
:mod:`medis.lightning.attack_job`); registering again is harmless.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from medis.attacks.targets import TARGET_KINDS, kinds_named
from medis.losses.registry import LOSS_NAMES, loss_set

__all__ = ["register_resolvers", "store_registry_options"]


def is_clean(mode: str) -> bool:
    """``${medis.is_clean:${attack.mode}}``: whether the attack runs in clean mode."""
    return mode == "clean"


def clean_only(mode: str, value: object) -> object:
    """``${medis.clean_only:${attack.mode},<value>}``: ``value`` in clean mode, null in paper mode (a
    clean-mode default such as ``engine.loss_size``)."""
    return value if is_clean(mode) else None


def register_resolvers() -> None:
    """Register ``medis.losses``, ``medis.targets``, ``medis.is_clean`` and ``medis.clean_only``
    (replacing earlier registrations)."""
    OmegaConf.register_new_resolver("medis.losses", loss_set, replace=True)
    OmegaConf.register_new_resolver("medis.targets", kinds_named, replace=True)
    OmegaConf.register_new_resolver("medis.is_clean", is_clean, replace=True)
    OmegaConf.register_new_resolver("medis.clean_only", clean_only, replace=True)


def store_registry_options() -> None:
    """One ``losses`` option per registered loss and one ``target`` option per target kind."""
    store = ConfigStore.instance()
    for name in LOSS_NAMES:
        store.store(group="losses", name=name, node={"names": [name]})
    for kind in TARGET_KINDS:
        store.store(group="target", name=kind, node={"kinds": [kind]})


register_resolvers()
store_registry_options()
