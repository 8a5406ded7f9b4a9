"""Write synthetic sets in the REAL folder layouts that :mod:`medis.data.layouts` reads.

Each kind reproduces one real layout, with its file names, formats and clutter: ISIC 2016 (capital
``_Segmentation``), ISIC 2017 (superpixel PNGs and metadata CSVs beside the images), ISIC 2018
(LICENSE/ATTRIBUTION files, ids not contiguous), Kvasir-SEG (JPEG masks, bounding-box JSON),
CVC-ClinicDB (``.tif`` and a ``Ground Truth`` folder with a space), PraNet's TrainDataset and
TestDataset (PNG, one test set with ``.tif`` masks) and the generic ``images/``+``masks/``.

Generation is atomic: the set is written to a temporary sibling folder and renamed into place, so
an interrupted run never leaves a half-written data set where a loader would find it.
"""

from __future__ import annotations

import json
import os
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from medis.data.layouts import PRANET_TEST_SETS
from medis.data.synthetic.dermoscopy import render_dermoscopy
from medis.data.synthetic.polyp import render_polyp
from medis.errors import DataError

Renderer = Callable[[np.random.Generator, int, int], "tuple[np.ndarray, np.ndarray]"]
MARKER = "synthetic.json"
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class _Item:
    """One sample to write: where, under which name, and how."""

    image_dir: str
    mask_dir: str
    image_name: str
    mask_name: str
    aspect: float


@dataclass(frozen=True)
class SyntheticKind:
    """A synthetic set: which renderer, which layout, which size jitter."""

    name: str
    modality: str
    renderer: Renderer
    size_jitter: float


KINDS: dict[str, SyntheticKind] = {
    "isic2016": SyntheticKind("isic2016", "dermoscopy", render_dermoscopy, 0.2),
    "isic2017": SyntheticKind("isic2017", "dermoscopy", render_dermoscopy, 0.2),
    "isic2018": SyntheticKind("isic2018", "dermoscopy", render_dermoscopy, 0.2),
    "kvasir": SyntheticKind("kvasir", "polyp", render_polyp, 0.25),
    "cvc_clinicdb": SyntheticKind("cvc_clinicdb", "polyp", render_polyp, 0.0),
    "pranet": SyntheticKind("pranet", "polyp", render_polyp, 0.2),
    "generic_dermoscopy": SyntheticKind("generic_dermoscopy", "dermoscopy", render_dermoscopy, 0.2),
    "generic_polyp": SyntheticKind("generic_polyp", "polyp", render_polyp, 0.2),
}

_ISIC_SPLIT_FOLDERS = {
    "isic2016": [("train", 0.7, "ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
                 ("test", 0.3, "ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth")],
    "isic2017": [("train", 0.7, "ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
                 ("val", 0.1, "ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
                 ("test", 0.2, "ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth")],
    "isic2018": [("train", 0.7, "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"),
                 ("val", 0.1, "ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth"),
                 ("test", 0.2, "ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth")],
}


def _split_counts(n: int, fractions: list[float]) -> list[int]:
    """Split n into parts proportional to ``fractions``, each at least 1 (n >= len(fractions))."""
    counts = [max(1, int(round(n * f))) for f in fractions]
    counts[0] += n - sum(counts)
    if counts[0] < 1:
        raise DataError(f"--n {n} is too small for {len(fractions)} splits")
    return counts


def _kvasir_id(rng: np.random.Generator) -> str:
    alphabet = np.array(list(string.ascii_lowercase + string.digits))
    return "cj" + "".join(rng.choice(alphabet, 23))


def _plan(kind: str, n: int, rng: np.random.Generator) -> Iterator[_Item]:
    """The file names and folders of every sample of a set, in the kind's real layout."""
    if kind in _ISIC_SPLIT_FOLDERS:
        splits = _ISIC_SPLIT_FOLDERS[kind]
        next_id = int(rng.integers(0, 1000))
        suffix = "_Segmentation" if kind == "isic2016" else "_segmentation"
        for (_, _, image_dir, mask_dir), count in zip(splits, _split_counts(n, [s[1] for s in splits])):
            for _ in range(count):
                next_id += int(rng.integers(1, 6))  # real ISIC ids are not contiguous
                stem = f"ISIC_{next_id:07d}"
                yield _Item(image_dir, mask_dir, f"{stem}.jpg", f"{stem}{suffix}.png", rng.uniform(1.2, 1.45))
    elif kind == "kvasir":
        for _ in range(n):
            stem = _kvasir_id(rng)
            yield _Item("Kvasir-SEG/images", "Kvasir-SEG/masks", f"{stem}.jpg", f"{stem}.jpg", rng.uniform(1.15, 1.8))
    elif kind == "cvc_clinicdb":
        for i in range(1, n + 1):
            yield _Item("CVC-ClinicDB/Original", "CVC-ClinicDB/Ground Truth", f"{i}.tif", f"{i}.tif", 4 / 3)
    elif kind == "pranet":
        n_train = _split_counts(n, [0.7, 0.3])[0]
        for i in range(n_train):
            stem = _kvasir_id(rng) if i % 2 == 0 else str(i + 1)
            yield _Item("TrainDataset/images", "TrainDataset/masks", f"{stem}.png", f"{stem}.png", rng.uniform(1.2, 1.6))
        for test_set, count in zip(PRANET_TEST_SETS, _split_counts(n - n_train, [0.2] * 5)):
            mask_ext = ".tif" if test_set == "ETIS-LaribPolypDB" else ".png"
            for i in range(count):
                stem = _kvasir_id(rng) if test_set == "Kvasir" else str(i + 1)
                yield _Item(f"TestDataset/{test_set}/images", f"TestDataset/{test_set}/masks", f"{stem}.png",
                            f"{stem}{mask_ext}", rng.uniform(1.2, 1.6))
    else:  # generic_*
        for i in range(n):
            yield _Item("images", "masks", f"img_{i:05d}.png", f"img_{i:05d}.png", rng.uniform(1.2, 1.45))


def _save(array: np.ndarray, path: Path) -> None:
    """Save with the format its extension implies (JPEG at quality 92, as the sets ship)."""
    image = Image.fromarray(array)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=92)
    else:
        image.save(path)


def _write_clutter(kind: str, root: Path, items: list[_Item], masks: dict[str, np.ndarray]) -> None:
    """The files real sets carry beside the images, which loaders must ignore."""
    if kind == "isic2017":
        for _, _, image_dir, _ in _ISIC_SPLIT_FOLDERS[kind]:
            folder = root / image_dir
            rows = ["image_id,age_approximate,sex"]
            for path in sorted(folder.glob("ISIC_*.jpg")):
                superpixels = np.zeros((8, 8, 3), np.uint8)
                superpixels[..., 0] = np.arange(64, dtype=np.uint8).reshape(8, 8)
                Image.fromarray(superpixels).save(folder / f"{path.stem}_superpixels.png")
                rows.append(f"{path.stem},55,female")
            (folder / f"{image_dir}_metadata.csv").write_text("\n".join(rows) + "\n")
    elif kind == "isic2018":
        for _, _, image_dir, mask_dir in _ISIC_SPLIT_FOLDERS[kind]:
            for folder in (image_dir, mask_dir):
                (root / folder / "LICENSE.txt").write_text("Synthetic stand-in; CC-0.\n")
                (root / folder / "ATTRIBUTION.txt").write_text("Generated by medis.data.synthetic.\n")
    elif kind == "kvasir":
        boxes = {}
        for item in items:
            mask = masks[item.image_name]
            ys, xs = np.nonzero(mask)
            stem = Path(item.image_name).stem
            box = [] if ys.size == 0 else [{"label": "polyp", "xmin": int(xs.min()), "ymin": int(ys.min()),
                                            "xmax": int(xs.max()), "ymax": int(ys.max())}]
            boxes[stem] = {"height": int(mask.shape[0]), "width": int(mask.shape[1]), "bbox": box}
        (root / "Kvasir-SEG" / "kavsir_bboxes.json").write_text(json.dumps(boxes, indent=1))


def generate(kind: str, out: str | Path, n: int, size: int, seed: int = 0, overwrite: bool = False,
             progress: bool = True) -> Path:
    """Generate ``n`` synthetic samples of ``kind`` into ``out`` in the kind's real layout.

    Args:
        kind: a key of :data:`KINDS`.
        out: the folder to create (its parent is created as needed).
        n: number of samples over all splits.
        size: image height in pixels; widths follow the layout's typical aspect ratios, and sizes
            vary from image to image by the kind's jitter (real sets mix sizes).
        seed: the whole set is a pure function of (kind, n, size, seed).
        overwrite: replace an existing ``out``. Otherwise a folder that already holds this very set
            (same kind, n, size, seed and generator version in its ``synthetic.json``) is kept as
            it is, and any other existing folder is an error.
        progress: show a progress bar.

    Returns:
        ``out`` as a Path.
    """
    if kind not in KINDS:
        raise DataError(f"unknown synthetic kind {kind!r}; choose one of {sorted(KINDS)}")
    if n < 1 or size < 32:
        raise DataError(f"need n >= 1 and size >= 32, got n={n}, size={size}")
    out = Path(out)
    wanted = {"kind": kind, "n": n, "size": size, "seed": seed, "generator_version": GENERATOR_VERSION}
    if out.exists() and not overwrite:
        if _marker(out) == wanted:
            return out  # the same set is already there
        raise DataError(f"output folder {out} exists and holds another set; pass --overwrite to replace it")
    spec = KINDS[kind]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        items = list(_plan(kind, n, np.random.default_rng([seed, 0])))
        masks: dict[str, np.ndarray] = {}
        for index, item in enumerate(_track(items, f"synthetic {kind}", progress)):
            rng = np.random.default_rng([seed, 1, index])
            height = max(32, int(round(size * (1 + spec.size_jitter * rng.uniform(-1, 1)))) // 2 * 2)
            width = max(32, int(round(height * item.aspect)) // 2 * 2)
            image, mask = spec.renderer(rng, height, width)
            (tmp / item.image_dir).mkdir(parents=True, exist_ok=True)
            (tmp / item.mask_dir).mkdir(parents=True, exist_ok=True)
            _save(image, tmp / item.image_dir / item.image_name)
            _save(mask.astype(np.uint8) * 255, tmp / item.mask_dir / item.mask_name)
            masks[item.image_name] = mask
        _write_clutter(kind, tmp, items, masks)
        (tmp / MARKER).write_text(json.dumps(wanted, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _marker(folder: Path) -> dict | None:
    """The ``synthetic.json`` of a generated folder, or None."""
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _track(items: list, description: str, enabled: bool):
    """Iterate with a rich progress bar (quiet when disabled)."""
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)
