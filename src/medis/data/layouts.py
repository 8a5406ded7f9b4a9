"""Real folder layouts of public segmentation data sets -> (id, image path, mask path).

Every layout pairs images and masks BY ID (never by sorted position), skips files that are not
images of the set (ISIC 2017 superpixel maps and metadata CSVs, ISIC 2018 LICENSE/ATTRIBUTION
files, Kvasir's bounding-box JSON), and fails with one line naming the folder or file when the
folder is missing, an image has no mask (or the reverse), or nothing is found.

Layouts (see docs/data.md):

========================  =========================================================================
``isic2016``              ``ISBI2016_ISIC_Part1_{Training,Test}_Data/ISIC_NNNNNNN.jpg`` +
                          ``..._GroundTruth/ISIC_NNNNNNN_Segmentation.png``; splits train, test
``isic2017``              ``ISIC-2017_{Training,Validation,Test_v2}_Data/`` +
                          ``..._Part1_GroundTruth/ISIC_NNNNNNN_segmentation.png``; train, val, test
``isic2018``              ``ISIC2018_Task1-2_{Training,Validation,Test}_Input/`` +
                          ``ISIC2018_Task1_{...}_GroundTruth/``; train, val, test
``kvasir``                ``Kvasir-SEG/{images,masks}/<id>.jpg`` (JPEG masks); one unsplit set
``cvc_clinicdb``          ``CVC-ClinicDB/Original/N.tif`` + ``CVC-ClinicDB/Ground Truth/N.tif``
``pranet``                ``TrainDataset/{images,masks}`` (split ``train``) and
                          ``TestDataset/<set>/{images,masks}`` (split ``<set>``, or ``test`` = all)
``generic``               ``images/`` + ``masks/`` with the same stems; one unsplit set
========================  =========================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from medis.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
PRANET_TEST_SETS = ("CVC-300", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "Kvasir")

_ISIC_IMAGE = re.compile(r"^ISIC_(\d{7})\.(jpe?g|png)$", re.IGNORECASE)
_ISIC_MASK = re.compile(r"^ISIC_(\d{7})_segmentation\.png$", re.IGNORECASE)


@dataclass(frozen=True)
class SamplePaths:
    """One image of a data set with its mask. ``(dataset, id)`` is unique within a discovery."""

    id: str
    image: Path
    mask: Path
    dataset: str


@dataclass(frozen=True)
class _Folders:
    """An image folder, its mask folder, and the data set name their samples carry."""

    images: Path
    masks: Path
    dataset: str


KeyFn = Callable[[Path], "str | None"]


def _isic_image_key(path: Path) -> str | None:
    match = _ISIC_IMAGE.match(path.name)
    return f"ISIC_{match.group(1)}" if match else None


def _isic_mask_key(path: Path) -> str | None:
    match = _ISIC_MASK.match(path.name)
    return f"ISIC_{match.group(1)}" if match else None


def _stem_key(path: Path) -> str | None:
    if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    return path.stem


def _stem_key_with_suffix(suffix: str) -> KeyFn:
    """Mask key for generic layouts whose masks are named ``<stem><suffix>.<ext>``."""

    def key(path: Path) -> str | None:
        stem = _stem_key(path)
        if stem is None or not suffix:
            return stem
        return stem[: -len(suffix)] if stem.endswith(suffix) else None

    return key


_ISIC_FOLDERS: dict[str, dict[str, tuple[str, str]]] = {
    "isic2016": {
        "train": ("ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
        "test": ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"),
    },
    "isic2017": {
        "train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
        "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
        "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),
    },
    "isic2018": {
        "train": ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"),
        "val": ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth"),
        "test": ("ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth"),
    },
}


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"missing folder {path} ({what})")
    return path


def _set_folder(root: Path, name: str, inner: str) -> Path:
    """The folder of a named set: ``root/name`` or ``root`` itself, whichever holds ``inner``."""
    for base in (root / name, root):
        if (base / inner).is_dir():
            return base
    raise DataError(f"missing folder {root / name / inner} (nor {root / inner}) for {name}")


def _isic_folders(layout: str) -> Callable[[Path, str | None], list[_Folders]]:
    def folders(root: Path, split: str | None) -> list[_Folders]:
        table = _ISIC_FOLDERS[layout]
        if split not in table:
            raise DataError(f"layout {layout!r} has splits {sorted(table)}, not {split!r}")
        image_dir, mask_dir = table[split]
        return [
            _Folders(
                _require_dir(root / image_dir, f"{layout} {split} images"),
                _require_dir(root / mask_dir, f"{layout} {split} masks"),
                layout,
            )
        ]

    return folders


def _unsplit(split: str | None, layout: str) -> None:
    if split not in (None, "all"):
        raise DataError(f"layout {layout!r} has no official splits; got split {split!r}")


def _kvasir_folders(root: Path, split: str | None) -> list[_Folders]:
    _unsplit(split, "kvasir")
    base = _set_folder(root, "Kvasir-SEG", "images")
    return [_Folders(base / "images", _require_dir(base / "masks", "Kvasir-SEG masks"), "Kvasir-SEG")]


def _clinicdb_folders(root: Path, split: str | None) -> list[_Folders]:
    _unsplit(split, "cvc_clinicdb")
    base = _set_folder(root, "CVC-ClinicDB", "Original")
    return [_Folders(base / "Original", _require_dir(base / "Ground Truth", "CVC-ClinicDB masks"), "CVC-ClinicDB")]


def _pranet_folders(root: Path, split: str | None) -> list[_Folders]:
    def pair(base: Path, dataset: str) -> _Folders:
        return _Folders(
            _require_dir(base / "images", f"PraNet {dataset} images"),
            _require_dir(base / "masks", f"PraNet {dataset} masks"),
            dataset,
        )

    if split in (None, "train"):
        return [pair(root / "TrainDataset", "TrainDataset")]
    test_root = _require_dir(root / "TestDataset", "PraNet TestDataset")
    if split == "test":
        names = sorted(p.name for p in test_root.iterdir() if (p / "images").is_dir())
        if not names:
            raise DataError(f"no test sets (<name>/images/) found in {test_root}")
        return [pair(test_root / name, name) for name in names]
    return [pair(test_root / split, split)]


def _generic_folders(root: Path, split: str | None) -> list[_Folders]:
    _unsplit(split, "generic")
    return [
        _Folders(_require_dir(root / "images", "generic images"), _require_dir(root / "masks", "generic masks"),
                 root.name)
    ]


@dataclass(frozen=True)
class Layout:
    """How one data set family is laid out on disk."""

    name: str
    splits: tuple[str, ...]
    folders: Callable[[Path, str | None], list[_Folders]]
    image_key: KeyFn
    mask_key: KeyFn


LAYOUTS: dict[str, Layout] = {
    **{
        name: Layout(name, tuple(_ISIC_FOLDERS[name]), _isic_folders(name), _isic_image_key, _isic_mask_key)
        for name in _ISIC_FOLDERS
    },
    "kvasir": Layout("kvasir", (), _kvasir_folders, _stem_key, _stem_key),
    "cvc_clinicdb": Layout("cvc_clinicdb", (), _clinicdb_folders, _stem_key, _stem_key),
    "pranet": Layout("pranet", ("train", "test", *PRANET_TEST_SETS), _pranet_folders, _stem_key, _stem_key),
    "generic": Layout("generic", (), _generic_folders, _stem_key, _stem_key),
}


def _index(folder: Path, key: KeyFn, what: str) -> dict[str, Path]:
    """Map id -> file for the files of ``folder`` that ``key`` recognises; duplicate ids fail."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        sample_id = key(path)
        if sample_id is None:
            continue
        if sample_id in found:
            raise DataError(f"two {what} files share id {sample_id!r}: {found[sample_id]} and {path}")
        found[sample_id] = path
    return found


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``2`` before ``10``."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text))


def _describe(paths: list[Path], limit: int = 3) -> str:
    names = ", ".join(p.name for p in paths[:limit])
    return names + (f", ... ({len(paths)} in all)" if len(paths) > limit else "")


def _pair(folders: _Folders, layout: Layout) -> list[SamplePaths]:
    images = _index(folders.images, layout.image_key, "image")
    masks = _index(folders.masks, layout.mask_key, "mask")
    lonely_images = [images[k] for k in sorted(images.keys() - masks.keys(), key=natural_key)]
    if lonely_images:
        raise DataError(f"image without a mask in {folders.masks}: {_describe(lonely_images)}")
    lonely_masks = [masks[k] for k in sorted(masks.keys() - images.keys(), key=natural_key)]
    if lonely_masks:
        raise DataError(f"mask without an image in {folders.images}: {_describe(lonely_masks)}")
    return [SamplePaths(k, images[k], masks[k], folders.dataset) for k in sorted(images, key=natural_key)]


def discover(root: str | Path, layout: str, split: str | None = None, mask_suffix: str = "") -> list[SamplePaths]:
    """List the (id, image, mask) samples of a data set stored in a real layout.

    Args:
        root: the folder that holds the layout's folders (for Kvasir-SEG and CVC-ClinicDB, either the
            set's own folder or its parent).
        layout: a key of :data:`LAYOUTS`.
        split: one of the layout's splits (``None`` for unsplit layouts; PraNet: ``train``, ``test``
            or a test-set name such as ``CVC-300``).
        mask_suffix: ``generic`` only: masks are named ``<stem><mask_suffix>.<ext>``.

    Returns:
        Samples grouped by data set, each in natural id order (``2`` before ``10``).

    Raises:
        DataError: a missing folder, an unknown layout or split, an unpaired image or mask, two
            files with one id, or no sample at all; the message names the path.
    """
    root = Path(root).expanduser()
    if layout not in LAYOUTS:
        raise DataError(f"unknown data layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    if not root.is_dir():
        raise DataError(f"missing data folder {root} (layout {layout!r})")
    spec = LAYOUTS[layout]
    if layout == "generic" and mask_suffix:
        spec = Layout(spec.name, spec.splits, spec.folders, spec.image_key, _stem_key_with_suffix(mask_suffix))
    samples: list[SamplePaths] = []
    for folders in spec.folders(root, split):
        pairs = _pair(folders, spec)
        if not pairs:
            raise DataError(f"no images found in {folders.images} (layout {layout!r})")
        samples.extend(pairs)
    return samples
