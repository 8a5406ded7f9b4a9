"""From the ``attack`` config node to the attacks to run: one attack, or an ensemble of several.

An attack is a named set of losses and an update rule (:class:`Member`). The node of a single
attack (``conf/attack/medis.yaml``, ``pgd.yaml``, ``segpgd.yaml``...) holds the settings of
:func:`attack_config` plus optionally ``name`` (the ``attack`` column of the records; default
``medis``) and ``losses`` (the attack's own losses; default: the ``losses`` config group).

An ensemble node (``conf/attack/ensemble.yaml``) adds ``members: {name: settings}``: each member's
settings are laid over the node's shared ones (``eps``, ``steps``, thresholds...). Every member
attacks the same images; its records' ``loss`` is qualified ``<member>/<loss>`` so that parallel
fusion over all the records of an image is the per-image worst case over attacks and losses (SEA:
Croce, Singh, Hein, ECCV 2024), computed with the same fusion code as MedIS's over losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from medis.attacks.criteria import EXACT
from medis.attacks.engine import AttackConfig
from medis.attacks.updates import UpdateConfig
from medis.errors import ConfigError
from medis.losses import LOSS_NAMES

UPDATE_KEYS = ("update", "step_size", "eps", "random_start", "momentum", "step_size_eps", "asma_tau", "asma_beta",
               "asma_l2", "apgd_alpha", "apgd_rho")
CONFIG_KEYS = ("mode", "steps", "stop_threshold", "success_threshold", "max_batch", "fusion_only", "keep_images",
               "seed", "name")
RUN_KEYS = ("precision", "channels_last", "compile", "compile_mode")
PLAN_KEYS = ("losses", "members") + RUN_KEYS
"""Keys of the node that are not :class:`AttackConfig` settings."""
AUTO = "auto"
"""``max_batch`` value: the largest replica batch that fits (CUDA; all replicas on CPU)."""


@dataclass(frozen=True)
class RunOptions:
    """The fast-path options of an attack run (:mod:`medis.attacks.fastpath`), all off by default.

    Attributes:
        precision: ``fp32`` or ``bf16`` (autocast of the victim's forward; outputs back in float32).
        channels_last: the network's weights and input in channels-last memory format.
        compile: ``torch.compile`` the network (forward and input backward), ``compile_mode`` its mode.
        auto_max_batch: ``max_batch: auto``, found once per model and image size.
    """

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None
    auto_max_batch: bool = False


def run_options(attack: Mapping[str, Any]) -> RunOptions:
    """The :class:`RunOptions` of an ``attack`` node (missing keys: off)."""
    values = {key: attack[key] for key in RUN_KEYS if attack.get(key) is not None}
    return RunOptions(**values, auto_max_batch=attack.get("max_batch") == AUTO)


def attack_config(settings: Mapping[str, Any], targeted: bool, kind: str) -> AttackConfig:
    """An :class:`AttackConfig` from one attack's settings (validated, one-line errors naming the key)."""
    values = dict(settings)
    update = {key: values.pop(key) for key in UPDATE_KEYS if key in values}
    update["rule"] = update.pop("update", "sign")
    for key in ("stop_threshold", "success_threshold"):
        value = values.get(key)
        if value is None or (key == "stop_threshold" and value == EXACT):
            continue
        if isinstance(value, str) or not 0.0 <= float(value) <= 1.0:
            allowed = f"in [0, 1], {EXACT!r} or null" if key == "stop_threshold" else "in [0, 1] or null"
            raise ConfigError(f"attack.{key} must be {allowed}, got {value!r}")
    unknown = set(values) - set(CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"unknown attack key(s) {sorted(unknown)}; valid: {sorted(CONFIG_KEYS + UPDATE_KEYS)}")
    return AttackConfig(update=UpdateConfig(**update), targeted=targeted, target_kind=kind, **values)


@dataclass(frozen=True)
class Member:
    """One attack of a run.

    Attributes:
        name: the records' ``attack`` column.
        losses: registry names of its losses.
        settings: :func:`attack_config` settings (shared ones with the member's laid over them).
        qualified: record losses as ``<name>/<loss>`` (ensembles) instead of ``<loss>``.
    """

    name: str
    losses: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    qualified: bool = False

    def label(self, loss: str) -> str:
        """The ``loss`` column of this member's records for ``loss``."""
        return f"{self.name}/{loss}" if self.qualified else loss

    @property
    def labels(self) -> list[str]:
        return [self.label(loss) for loss in self.losses]

    def config(self, targeted: bool, kind: str, seed: int) -> AttackConfig:
        return attack_config({**self.settings, "seed": seed, "name": self.name}, targeted, kind)


def _losses(value: Any, default: Sequence[str], where: str | None = None) -> tuple[str, ...]:
    names = tuple(default if value is None else value)
    unknown = [name for name in names if name not in LOSS_NAMES]
    if unknown or not names:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}unknown loss(es) {unknown or '[]'}; valid: {', '.join(LOSS_NAMES)}")
    return names


def attack_members(attack: Mapping[str, Any], default_losses: Sequence[str], seed: int = 0) -> list[Member]:
    """The attacks an ``attack`` node asks for (module docstring), each validated by building its
    untargeted and targeted configs now, before any work.

    Args:
        attack: the ``attack`` config node as a dict.
        default_losses: the ``losses`` config group's names (for attacks without their own).
        seed: checked with the configs.

    Raises:
        ConfigError: unknown loss, key or value (one line naming it).
    """
    shared = {key: value for key, value in attack.items() if key not in PLAN_KEYS}
    if shared.get("max_batch") == AUTO:
        shared["max_batch"] = None  # resolved per image size by the attack module
    members_node = attack.get("members")
    if members_node is None:
        members = [Member(str(shared.pop("name", "medis")), _losses(attack.get("losses"), default_losses),
                          shared)]
    else:
        if not isinstance(members_node, Mapping) or not members_node:
            raise ConfigError("attack.members must be a non-empty mapping {name: settings}")
        shared.pop("name", None)
        members = []
        for name, own in members_node.items():
            own = dict(own or {})
            losses = _losses(own.pop("losses", None), default_losses, f"attack.members.{name}.losses")
            members.append(Member(str(name), losses, {**shared, **own}, qualified=True))
    for member in members:
        for targeted in (False, True):
            member.config(targeted, "untargeted" if not targeted else "random", seed)
    return members
