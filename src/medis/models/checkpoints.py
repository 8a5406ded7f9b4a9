"""Loading weights: the official PraNet checkpoint, Res2Net ImageNet weights, our Lightning checkpoints.

Every file is read with ``torch.load(..., weights_only=True, map_location=...)``: a checkpoint that
carries code (an arbitrary pickle) is refused, never executed, and a GPU checkpoint loads on a
CPU. Every load is strict: missing, unexpected and mis-shaped keys are gathered into ONE error that
lists them (with the file's name), instead of PyTorch's multi-line report or a silent partial load.

Accepted files:

- official PraNet (``PraNet-19.pth``): a bare state_dict with ``resnet.*``, ``rfb*``, ``agg1.*``,
  ``ra*`` keys (a ``module.`` prefix from DataParallel is stripped);
- Res2Net ImageNet weights (``res2net50_v1b_26w_4s-3cf99910.pth``): the backbone's keys without
  the ``resnet.`` prefix, loaded into ``model.resnet``;
- Lightning checkpoints of our training: ``{"state_dict": {"model.<key>": ...}, ...}``.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Literal, Mapping

import torch
from torch import nn

from medis.errors import MedisError

CheckpointKind = Literal["auto", "official", "backbone", "lightning"]
LIGHTNING_PREFIX = "model."


class CheckpointError(MedisError):
    """A checkpoint cannot be read, or its keys do not fit the model."""


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; every failure becomes a one-line CheckpointError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()
        detail = next((line for line in reason if "Unsupported" in line or "GLOBAL" in line), reason[0] if reason else "")
        raise CheckpointError(
            f"refused to load {path}: it is not a plain weights file (weights_only loading rejects pickled "
            f"code or objects: {detail.strip()})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or not a PyTorch file): {first}") from None


def _summary(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def strict_load(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` strictly, reporting every mismatch in one error line.

    Raises:
        CheckpointError: naming ``source`` and listing missing, unexpected and mis-shaped keys.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                 if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing {_summary(missing)}")
    if unexpected:
        problems.append(f"unexpected {_summary(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped (checkpoint vs model) {_summary(misshaped)}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(dict(state), strict=True)


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def detect_kind(state: Any) -> CheckpointKind:
    """Tell a Lightning checkpoint, an official PraNet state_dict and backbone weights apart."""
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        return "lightning"
    if isinstance(state, Mapping) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = [k[len("module."):] if k.startswith("module.") else k for k in state]
        if any(k.startswith("resnet.") for k in keys):
            return "official"
        if any(k.startswith("layer1.") for k in keys):
            return "backbone"
    raise CheckpointError("unrecognised checkpoint: expected a PraNet state_dict (resnet.* keys), Res2Net "
                          "weights (layer1.* keys) or a Lightning checkpoint (a 'state_dict' entry)")


def load_weights(model: nn.Module, path: str | Path, kind: CheckpointKind = "auto",
                 map_location: str | torch.device = "cpu") -> CheckpointKind:
    """Load a checkpoint file into ``model`` (see the module docstring for the accepted files).

    Args:
        model: the network (for ``backbone``: a model with a ``resnet`` attribute).
        path: the checkpoint file.
        kind: ``auto`` detects it from the keys.
        map_location: where tensors are placed while loading (default CPU).

    Returns:
        The kind that was loaded.
    """
    return load_state(model, read_checkpoint(path, map_location), path, kind)


def load_state(model: nn.Module, state: Any, path: str | Path, kind: CheckpointKind = "auto") -> CheckpointKind:
    """Load the contents ``state`` of the checkpoint file ``path`` (:func:`read_checkpoint`) into
    ``model``, as :func:`load_weights` does; returns the kind that was loaded."""
    try:
        found = detect_kind(state)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    if kind != "auto" and kind != found:
        raise CheckpointError(f"{path} looks like a {found} checkpoint, not {kind}")
    name = Path(path).name
    if found == "lightning":
        weights = state["state_dict"]
        if not any(k.startswith(LIGHTNING_PREFIX) for k in weights):
            raise CheckpointError(f"{path}: Lightning checkpoint without '{LIGHTNING_PREFIX}*' weights")
        strict_load(model, {k[len(LIGHTNING_PREFIX):]: v for k, v in weights.items()
                            if k.startswith(LIGHTNING_PREFIX)}, name)
    elif found == "official":
        strict_load(model, _strip(state, "module."), name)
    else:
        backbone = getattr(model, "resnet", None)
        if backbone is None:
            raise CheckpointError(f"{path} holds backbone weights but {type(model).__name__} has no 'resnet' backbone")
        strict_load(backbone, _strip(state, "module."), name)
    return found
