"""Synthetic data: reproducible, exact and realistic enough that thresholding does not solve it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from medis.data.io import read_mask
from medis.data.layouts import discover
from medis.data.synthetic import generate, render_dermoscopy, render_polyp
from medis.errors import DataError

RENDERERS = [render_dermoscopy, render_polyp]


def otsu_threshold(gray: np.ndarray) -> int:
    """Otsu's threshold of a uint8 image (maximal between-class variance)."""
    p = np.bincount(gray.ravel(), minlength=256) / gray.size
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega) + 1e-12)
    return int(np.argmax(between))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


@pytest.mark.parametrize("render", RENDERERS)
def test_reproducible_and_seed_dependent(render) -> None:
    image_a, mask_a = render(np.random.default_rng([3, 1]), 64, 80)
    image_b, mask_b = render(np.random.default_rng([3, 1]), 64, 80)
    image_c, _ = render(np.random.default_rng([3, 2]), 64, 80)
    assert np.array_equal(image_a, image_b) and np.array_equal(mask_a, mask_b)
    assert not np.array_equal(image_a, image_c)
    assert image_a.shape == (64, 80, 3) and image_a.dtype == np.uint8 and mask_a.dtype == bool


def test_dermoscopy_mask_is_one_region_without_holes() -> None:
    for index in range(30):
        _, mask = render_dermoscopy(np.random.default_rng([5, index]), 96, 128)
        assert 0.01 < mask.mean() < 0.9
        regions, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        assert regions - 1 == 1, f"image {index}: lesion has {regions - 1} regions"
        labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)[1]
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        holes = set(np.unique(labels[~mask])) - set(border)
        assert not holes, f"image {index}: lesion mask has holes"


def test_polyp_masks_nonempty_and_inside_frame() -> None:
    for index in range(20):
        image, mask = render_polyp(np.random.default_rng([6, index]), 96, 128)
        assert mask.any()
        assert image[mask].mean() > 40  # never under the black frame or the lumen's darkness alone
        assert image[0, 0].max() < 30  # the frame's cut corner is black


@pytest.mark.parametrize("render, ceiling", [(render_dermoscopy, 0.75), (render_polyp, 0.5)])
def test_otsu_baseline_does_not_solve_it(render, ceiling: float) -> None:
    scores = []
    for index in range(40):
        image, mask = render(np.random.default_rng([7, index]), 96, 128)
        gray = (image.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
        scores.append(dice(gray <= otsu_threshold(gray), mask))  # lesions/polyps are the darker class
    assert np.mean(scores) < ceiling


def test_kvasir_jpeg_masks_binarise_to_their_boxes(synthetic_root: Path) -> None:
    boxes = json.loads((synthetic_root / "kvasir" / "Kvasir-SEG" / "kavsir_bboxes.json").read_text())
    samples = discover(synthetic_root / "kvasir", "kvasir")
    assert set(boxes) == {s.id for s in samples}
    noisy = 0
    for sample in samples:
        noisy += len(np.unique(np.asarray(Image.open(sample.mask)))) > 2
        mask = read_mask(sample.mask)
        ys, xs = np.nonzero(mask)
        box = boxes[sample.id]["bbox"][0]
        assert abs(xs.min() - box["xmin"]) <= 1 and abs(xs.max() - box["xmax"]) <= 1
        assert abs(ys.min() - box["ymin"]) <= 1 and abs(ys.max() - box["ymax"]) <= 1
    assert noisy > 0  # they really are JPEG masks with compression noise


def test_generate_is_deterministic_and_atomic(tmp_path: Path) -> None:
    generate("isic2016", tmp_path / "a", n=6, size=48, seed=4, progress=False)
    generate("isic2016", tmp_path / "b", n=6, size=48, seed=4, progress=False)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary folder left
    sizes = {Image.open(tmp_path / "a" / f).size for f in files_a if f.suffix == ".jpg"}
    assert len(sizes) > 1  # image sizes vary, as in the real sets
    with pytest.raises(DataError, match="exists"):
        generate("isic2016", tmp_path / "a", n=6, size=48)
    with pytest.raises(DataError, match="unknown synthetic kind"):
        generate("isic2099", tmp_path / "c", n=6, size=48)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medis.data.synthetic", *args], capture_output=True, text=True)


def test_cli_writes_a_layout_keeps_the_same_set_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "synthetic_isic"
    done = _cli("--kind", "isic2018", "--out", str(out), "--n", "10", "--size", "48")
    assert done.returncode == 0, done.stderr
    assert len(discover(out, "isic2018", "train")) == 7
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    same = _cli("--kind", "isic2018", "--out", str(out), "--n", "10", "--size", "48")  # the same set: kept
    assert same.returncode == 0 and "already holds" in same.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == written
    again = _cli("--kind", "isic2018", "--out", str(out), "--n", "12", "--size", "48")  # another set: refused
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert again.stderr.strip().count("\n") == 0 and str(out) in again.stderr
    assert "Traceback" not in again.stderr
    bad = _cli("--kind", "isic2018", "--out", str(tmp_path / "x"), "--n", "0")
    assert bad.returncode == 2 and "n >= 1" in bad.stderr
