"""What every run folder records about how it was made, and the check that it can be written.

``run_info.json`` holds the seed, the command line, library versions, the git commit of the code
(when it runs from a git checkout), the machine and the device, so a result can be traced and
re-run. :func:`ensure_writable` runs before any work: an output folder that cannot be created or
written, or a disk with almost no room left, is a one-line error instead of a crash mid-run.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from medis.errors import DataError
from medis.reporting.atomic import atomic_write_text

__all__ = ["MIN_FREE_MB", "PACKAGES", "ensure_writable", "run_info", "write_run_info"]

MIN_FREE_MB = 100
"""Least free space (MiB) an output folder must have when a run starts."""
PACKAGES = ("medis", "torch", "pytorch-lightning", "hydra-core", "omegaconf", "torchmetrics", "wandb",
            "albumentations", "numpy", "pillow")


def ensure_writable(folder: str | os.PathLike, min_free_mb: int = MIN_FREE_MB) -> Path:
    """Create ``folder`` if needed and prove it writable (a probe file) with enough free space.

    Raises:
        DataError: one line naming the folder and the cause.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise DataError(f"output folder {folder} is not writable: {err.strerror or err}") from None
    free_mb = shutil.disk_usage(folder).free / 2**20
    if free_mb < min_free_mb:
        raise DataError(f"output folder {folder} has {free_mb:.0f} MiB free, need at least {min_free_mb} MiB")
    return folder


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the checkout this package runs from (``None`` outside git), ``+dirty`` if modified."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def run_info(seed: int | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The facts :func:`write_run_info` stores (see the module docstring)."""
    return {
        "seed": seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "python": sys.version.split()[0],
        "versions": {package: _version(package) for package in PACKAGES},
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": _device(),
        **(extra or {}),
    }


def write_run_info(folder: str | os.PathLike, seed: int | None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``<folder>/run_info.json`` atomically; returns its path."""
    return atomic_write_text(Path(folder) / "run_info.json", json.dumps(run_info(seed, extra), indent=1) + "\n")
