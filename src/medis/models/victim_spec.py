"""What a checkpoint of ours says about the victim it holds, so that attacking it needs nothing else.

``train.py`` writes into every checkpoint's hyperparameters the network (its ``_target_`` and
arguments), the input size it trained at, the normalisation, the resize of its data pipeline
(``antialias``) and the fusion its validation read (``val_fusion``). :func:`spec_of` reads them
back as a :class:`VictimSpec`; :mod:`medis.models.build` builds that victim. A setting the caller
gives on purpose (``explicit``) must agree with the checkpoint: :func:`check_agrees` names both
values otherwise. Checkpoints without a spec (the official ``PraNet-19.pth``, ours from before
specs) leave the victim to the config.

A network's ``_target_`` is resolved only inside :mod:`medis.models` (a checkpoint is data: it may
not name an arbitrary callable) and must build an ``nn.Module``.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from medis.errors import ConfigError
from medis.models.checkpoints import CheckpointError

__all__ = ["NETWORK_PREFIX", "VictimSpec", "check_agrees", "network_from", "spec_of"]

NETWORK_PREFIX = "medis.models."
"""The only package a checkpoint's network ``_target_`` may name."""
SPEC_KEY = "victim"
"""The hyperparameter that holds the spec (beside ``val_fusion``, ``mean`` and ``std``)."""


@dataclass(frozen=True)
class VictimSpec:
    """A trained victim (module docstring).

    Attributes:
        net: ``{"_target_": "medis.models.pranet.pranet_lite", "channel": 16}``: the network.
        input_size: the network input side it trained at (or (height, width)).
        mean, std: per-channel normalisation.
        fusion: the side-output fusion its validation read (``last``, ``clean``, ``paper``).
        antialias: whether its data pipeline's resize antialiases (the in-graph resize follows it).
    """

    net: Mapping[str, Any]
    input_size: int | tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fusion: str
    antialias: bool

    def settings(self) -> dict[str, Any]:
        """The spec as ``model.*`` config values (``net`` as a plain dict)."""
        values = asdict(self)
        values["net"] = dict(self.net)
        return values

    def describe(self) -> str:
        """One line: ``pranet_lite(channel=16), 160 px, fusion last, resize without antialiasing``."""
        name = str(self.net.get("_target_", "?")).rsplit(".", 1)[-1]
        arguments = ", ".join(f"{k}={v}" for k, v in self.net.items() if k != "_target_")
        return (f"{name}({arguments}), {self.input_size} px, fusion {self.fusion}, resize "
                f"{'with' if self.antialias else 'without'} antialiasing")


def spec_of(state: Any, source: str) -> VictimSpec | None:
    """The :class:`VictimSpec` a loaded checkpoint carries, or ``None`` (no spec: not one of ours, or
    older than specs).

    Raises:
        CheckpointError: a spec that is malformed (one line naming ``source``).
    """
    hparams = state.get("hyper_parameters") if isinstance(state, Mapping) else None
    if not isinstance(hparams, Mapping) or SPEC_KEY not in hparams:
        return None
    victim = hparams[SPEC_KEY]
    try:
        size = victim["input_size"]
        return VictimSpec(net=dict(victim["net"]), input_size=size if isinstance(size, int) else tuple(size),
                          mean=tuple(float(v) for v in hparams["mean"]), std=tuple(float(v) for v in hparams["std"]),
                          fusion=str(hparams["val_fusion"]), antialias=bool(victim["antialias"]))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: its victim description is malformed ({type(err).__name__}: {err})") from None


def network_from(net: Mapping[str, Any], source: str = "the checkpoint") -> nn.Module:
    """The network of a spec's ``net`` (``_target_`` inside :data:`NETWORK_PREFIX`, the rest its arguments).

    Raises:
        CheckpointError: a target outside medis.models, one that does not exist, or not a network.
    """
    target = str(net.get("_target_", ""))
    if not target.startswith(NETWORK_PREFIX):
        raise CheckpointError(f"{source} names the network {target!r}; only networks of {NETWORK_PREFIX}* are built")
    module_name, _, attribute = target.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        raise CheckpointError(f"{source} names the network {target!r}, which this version does not have") from None
    network = factory(**{k: v for k, v in net.items() if k != "_target_"})
    if not isinstance(network, nn.Module):
        raise CheckpointError(f"{source} names {target!r}, which does not build a network")
    return network


def check_agrees(spec: VictimSpec, given: Mapping[str, Any], explicit: Collection[str], source: str) -> None:
    """Every key of ``explicit`` (``net``, ``input_size``, ``mean``, ``std``, ``fusion``, ``antialias``)
    that the caller set on purpose must have, in ``given``, the checkpoint's value.

    Raises:
        ConfigError: one line naming the key, the value given and the checkpoint's.
    """
    wanted = spec.settings()
    for key in sorted(explicit):
        if key not in wanted:
            continue
        value = given.get(key)
        if not _same(value, wanted[key]):
            shown = f"model={_short(value)}" if key == "net" else f"model.{key}={value!r}"
            raise ConfigError(f"{shown} contradicts {source}, whose victim has {key} {_short(wanted[key])!r} "
                              f"({spec.describe()}); drop the override to attack the checkpoint's victim")


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, Mapping):
        return isinstance(value, Mapping) and dict(value) == dict(wanted)
    if isinstance(wanted, (tuple, list)):
        if isinstance(value, (int, float)) and len(set(wanted)) == 1:  # a square size given as one side
            return value == wanted[0]
        return isinstance(value, (tuple, list)) and [float(v) for v in value] == [float(v) for v in wanted]
    if isinstance(value, (tuple, list)) and isinstance(wanted, (int, float)):
        return len(set(value)) == 1 and value[0] == wanted
    return value == wanted


def _short(value: Any) -> Any:
    """A network spec as ``name(arguments)``; anything else as it is."""
    if isinstance(value, Mapping):
        name = str(value.get("_target_", "?")).rsplit(".", 1)[-1]
        return f"{name}({', '.join(f'{k}={v}' for k, v in value.items() if k != '_target_')})"
    return value
