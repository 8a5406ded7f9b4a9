"""Mask audit (medis.data.audit) and the 0/1-coded masks read_mask accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medis.data.audit import audit_masks
from medis.data.io import read_mask


def save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def test_audit_counts_each_finding_with_examples(tmp_path: Path) -> None:
    good = np.zeros((8, 8)); good[2:5, 2:5] = 255
    grey = good.copy(); grey[0, 0] = 100  # JPEG-like grey level
    zero_one = (good > 0).astype(np.uint8)
    paths = [save(tmp_path / "good.png", good), save(tmp_path / "grey.png", grey),
             save(tmp_path / "zero_one.png", zero_one), save(tmp_path / "empty.png", np.zeros((8, 8))),
             save(tmp_path / "full.png", np.full((8, 8), 255))]
    audit = audit_masks(paths)
    assert audit.total == 5
    assert [Path(p).name for p in audit.non_binary] == ["grey.png"]
    assert [Path(p).name for p in audit.zero_one] == ["zero_one.png"]
    assert [Path(p).name for p in audit.empty] == ["empty.png"]
    assert [Path(p).name for p in audit.full] == ["full.png"]
    text = " | ".join(audit.warnings())
    assert "1 of 5 masks hold grey levels" in text and "grey.png" in text and "have no foreground" in text
    assert audit_masks(paths[:1]).warnings() == []


def test_zero_one_masks_keep_their_foreground(tmp_path: Path) -> None:
    mask = np.zeros((6, 6), np.uint8); mask[1:3, 1:4] = 1
    assert read_mask(save(tmp_path / "m.png", mask)).sum() == 6  # not binarised away at > 127
    mask[0, 0] = 200  # a 0/255-style mask with a stray 1 stays thresholded at > 127
    assert read_mask(save(tmp_path / "n.png", mask)).sum() == 1
