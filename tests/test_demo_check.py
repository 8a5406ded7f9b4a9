"""bench/check_demo_table.py: a fresh demo whose table and val Dice equal README's passes; a cell or the
val Dice that differs fails, naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .entry_points import REPO

TABLE = """| loss | untargeted ASR % | untargeted distortion |
| --- | --- | --- |
| bce | 87.5 | 4.32 |
| parallel fusion | 100.0 | 3.97 |
"""


def check(tmp_path: Path, summary_table: str, dice: str) -> subprocess.CompletedProcess:
    readme = tmp_path / "README.md"
    readme.write_text(f"`make demo`: `pranet_lite` trained 4 epochs to\nval Dice 0.931, attacked.\n\n{TABLE}")
    (tmp_path / "demo" / "attack").mkdir(parents=True)
    (tmp_path / "demo" / "attack" / "summary.md").write_text(f"# MedIS attack summary\n\n{summary_table}\n")
    (tmp_path / "demo" / "train" / "checkpoints").mkdir(parents=True)
    (tmp_path / "demo" / "train" / "checkpoints" / f"best-epoch003-dice{dice}.ckpt").write_bytes(b"")
    return subprocess.run([sys.executable, "bench/check_demo_table.py", "--readme", str(readme), "--run",
                           str(tmp_path / "demo")], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_the_same_table_passes(tmp_path: Path) -> None:
    done = check(tmp_path, TABLE, "0.9310")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 outside the tolerance" in done.stdout


def test_a_different_cell_or_dice_fails_naming_it(tmp_path: Path) -> None:
    done = check(tmp_path, TABLE.replace("| 87.5 |", "| 84.4 |"), "0.9240")
    assert done.returncode == 1
    assert "bce / untargeted ASR %: README 87.5, this run 84.4" in done.stdout
    assert "val Dice: README 0.931, this run 0.924" in done.stdout
