"""The command that resumes a stopped run: the same script and the job's own overrides, with the
keys that say where to continue replaced, quoted for a POSIX shell (printed when a run is stopped
by a signal)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from hydra.core.hydra_config import HydraConfig

__all__ = ["resume_command"]


def resume_command(script: str, replaced: Sequence[str], added: Sequence[str]) -> str:
    """``python <script> <the job's overrides but those setting a key of replaced> <added>``, e.g.
    ``resume_command("attack.py", ["hydra.run.dir", "resume"], ["hydra.run.dir=<run>", "resume=true"])``.
    Outside a Hydra job the overrides are empty."""
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # no Hydra job
        overrides = []
    kept = [item for item in overrides if item.split("=", 1)[0].lstrip("+~") not in set(replaced)]
    return " ".join(shlex.quote(word) for word in ["python", script, *kept, *added])
