"""Assemble a victim from its parts: network, weights, differentiable front end (Hydra's target for
``conf/model/*.yaml``).

A checkpoint of ours carries its victim (:mod:`medis.models.victim_spec`): the network, input size,
normalisation, fusion and resize it was trained and validated with. :func:`build_victim` then builds
THAT victim, whatever the config's defaults say; a key the caller set on purpose (``explicit``) that
contradicts it is a one-line error naming both values. Any other weights (the official
``PraNet-19.pth``, a checkpoint from before specs) go into the network the arguments describe.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from medis.models.checkpoints import load_state, load_weights, read_checkpoint
from medis.models.frontend import IMAGENET_MEAN, IMAGENET_STD, Fusion, Victim
from medis.models.victim_spec import VictimSpec, check_agrees, network_from, spec_of

__all__ = ["build_victim", "checkpoint_spec"]

log = logging.getLogger(__name__)


def checkpoint_spec(checkpoint: str | Path | None) -> VictimSpec | None:
    """The victim a checkpoint file carries, or ``None`` (no file, or no spec in it)."""
    if not checkpoint:
        return None
    return spec_of(read_checkpoint(checkpoint), Path(checkpoint).name)


def build_victim(net: nn.Module | Mapping[str, Any], input_size: int | Sequence[int] = 352, fusion: Fusion = "paper",
                 checkpoint: str | Path | None = None, backbone_weights: str | Path | None = None,
                 antialias: bool = False, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, explicit: Collection[str] = ()) -> Victim:
    """Load weights into the network and wrap it in a :class:`~medis.models.frontend.Victim`.

    Args:
        net: the segmentation network (e.g. :class:`~medis.models.pranet.PraNet`), or its config
            ``{"_target_": "medis.models...", **arguments}``.
        input_size: network input size (PraNet: a multiple of 32).
        fusion: side-output fusion (``paper``, ``clean``, ``last``).
        checkpoint: official PraNet weights or one of our Lightning checkpoints (auto-detected); one
            of ours with a victim spec decides the victim (module docstring).
        backbone_weights: Res2Net ImageNet weights for ``net.resnet``, loaded before ``checkpoint``.
        antialias, mean, std: see :class:`~medis.models.frontend.Victim`.
        explicit: the keys among ``net``, ``input_size``, ``fusion``, ``antialias``, ``mean``, ``std``
            that the caller set on purpose: each must agree with the checkpoint's spec.

    Raises:
        medis.errors.ConfigError: an explicit key that contradicts the checkpoint's victim.
        medis.models.checkpoints.CheckpointError: an unreadable checkpoint, or weights that do not fit.
    """
    state = read_checkpoint(checkpoint) if checkpoint else None
    source = Path(checkpoint).name if checkpoint else ""
    spec = spec_of(state, source) if state is not None else None
    given = {"net": net if isinstance(net, Mapping) else None, "input_size": input_size, "fusion": fusion,
             "antialias": antialias, "mean": tuple(mean), "std": tuple(std)}
    if spec is not None:
        check_agrees(spec, given, [key for key in explicit if key != "net" or isinstance(net, Mapping)], source)
        log.info("victim of %s: %s", source, spec.describe())
        settings = spec.settings()
        network = net if isinstance(net, nn.Module) else network_from(spec.net, source)
    else:
        settings = given
        network = net if isinstance(net, nn.Module) else network_from(net, "model.net")
        if isinstance(state, Mapping) and "state_dict" in state:
            log.warning("%s carries no description of its victim (trained before checkpoints carried one): it is "
                        "attacked as the config describes it (input size %s, fusion %s); set model.input_size to the "
                        "size it was trained at", source, input_size, fusion)
    if backbone_weights:
        load_weights(network, backbone_weights, kind="backbone")
    if state is not None:
        load_state(network, state, checkpoint)
    size = settings["input_size"]
    return Victim(network, size if isinstance(size, int) else tuple(size), mean=tuple(settings["mean"]),
                  std=tuple(settings["std"]), fusion=settings["fusion"], antialias=bool(settings["antialias"]))
