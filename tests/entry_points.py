"""Running the Hydra entry points (train.py, attack.py) as a user does, on small synthetic data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_entry(script: str, tmp_path: Path, *overrides: str, images: int = 24,
              multirun: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` with outputs and a synthetic ISIC set (``images`` images, 64 px high) under tmp_path
    (``env``: variables set for it on top of this process's)."""
    args = [sys.executable, script, *(["-m"] if multirun else []),
            f"paths.log_dir={tmp_path / 'outputs'}", f"data.root={tmp_path / 'synthetic_isic'}",
            f"data.synthetic.n={images}", "data.synthetic.size=64", "data.num_workers=0", *overrides]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=None if env is None else {**os.environ, **env})


def only(pattern: str, root: Path) -> Path:
    """The one path under ``root`` matching ``pattern`` (fails if there are none or several)."""
    found = sorted(root.glob(pattern))
    assert len(found) == 1, found
    return found[0]
