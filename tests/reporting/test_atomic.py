"""Atomic writes (medis.reporting.atomic): all or nothing, usual permissions, no temporary left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medis.reporting.atomic import atomic_write, atomic_write_text


def test_replaces_with_umask_permissions(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "summary.md"
    atomic_write_text(path, "old\n")
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "plot.png"
    atomic_write_text(path, "old")

    def broken(handle) -> None:
        handle.write(b"half")
        raise RuntimeError("renderer failed")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
