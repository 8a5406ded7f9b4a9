"""An image too small for the metrics is refused before any work, in one line naming it, its size
and the minimum; records already written stay as they were (issue 27)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from medis.data.audit import MIN_SIDE
from medis.data.synthetic import generate

from .entry_points import REPO


def attack(root: Path, run_dir: Path, checkpoint: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "attack.py", "data=isic2018", f"data.root={root}", f"model.checkpoint={checkpoint}",
            "losses.names=[bce]", "attack.budget.steps=1", "logger=csv", "gallery_size=0", "data.num_workers=0",
            f"hydra.run.dir={run_dir}", *extra]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)


def add_test_image(root: Path, side: int, image_id: str) -> Path:
    image = root / "ISIC2018_Task1-2_Test_Input" / f"{image_id}.jpg"
    Image.fromarray(np.full((side, side, 3), 128, np.uint8)).save(image)
    mask = np.zeros((side, side), np.uint8)
    mask[: side // 2] = 255
    Image.fromarray(mask).save(root / "ISIC2018_Task1_Test_GroundTruth" / f"{image_id}_segmentation.png")
    return image


def test_a_tiny_image_is_refused_before_any_work_and_costs_nothing(tmp_path: Path, trained_checkpoint: Path) -> None:
    root = tmp_path / "isic"
    generate("isic2018", root, n=10, size=64, seed=3, progress=False)
    add_test_image(root, MIN_SIDE, "ISIC_0099998")  # the smallest side allowed is attacked
    run_dir = tmp_path / "run"
    first = attack(root, run_dir, trained_checkpoint)
    assert first.returncode == 0, first.stderr[-3000:]
    records = (run_dir / "records.csv").read_bytes()
    assert b"ISIC_0099998" in records
    tiny = add_test_image(root, 3, "ISIC_0099999")
    again = attack(root, run_dir, trained_checkpoint, "resume=true")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"error: {tiny}: image of 3x3 px is too small to attack; the smallest side must be at least {MIN_SIDE} px "
        f"(SSIM's window)")
    assert "Traceback" not in again.stderr
    assert (run_dir / "records.csv").read_bytes() == records
