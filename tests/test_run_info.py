"""run_info.json and the output-folder check (medis.runtime.run_info)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medis.errors import DataError
from medis.runtime.run_info import ensure_writable, write_run_info


def test_run_info_names_seed_versions_and_commit(tmp_path: Path) -> None:
    info = json.loads(write_run_info(tmp_path, seed=7).read_text())
    assert info["seed"] == 7
    assert info["versions"]["torch"] and info["versions"]["pytorch-lightning"] and info["versions"]["medis"]
    assert info["device"].startswith(("cpu", "cuda"))
    assert info["git_commit"] is None or len(info["git_commit"].split("+")[0]) == 40


def test_unwritable_output_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match=f"output folder {blocker / 'run'} is not writable"):
        ensure_writable(blocker / "run")


def test_too_little_free_space_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="MiB free, need at least"):
        ensure_writable(tmp_path, min_free_mb=10**12)
    assert ensure_writable(tmp_path) == tmp_path
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
