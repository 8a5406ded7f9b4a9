"""The command that resumes a run: the same script and overrides, its run folder and
``resume=true``, quoted for a POSIX shell (printed when a run is stopped by a signal)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

__all__ = ["resume_command"]

_REPLACED = ("hydra.run.dir=", "resume=", "+resume=", "++resume=")


def resume_command(run_dir: str | Path, script: str | None = None) -> str:
    """``python <script> <the job's overrides> hydra.run.dir=<run_dir> resume=true`` (the job's own
    ``hydra.run.dir`` and ``resume`` replaced). Outside a Hydra job only the last two are given."""
    script = script or Path(sys.argv[0]).name or "attack.py"
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # no Hydra job
        overrides = []
    kept = [item for item in overrides if not item.startswith(_REPLACED)]
    words = ["python", script, *kept, f"hydra.run.dir={run_dir}", "resume=true"]
    return " ".join(shlex.quote(word) for word in words)
