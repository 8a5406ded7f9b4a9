"""Real folder layouts: discovery, pairing by id, clutter skipped, and one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from medis.data.io import read_pair
from medis.data.layouts import LAYOUTS, PRANET_TEST_SETS, discover, natural_key
from medis.errors import DataError

# (kind folder, layout, split, expected count, expected dataset name)
CASES = [
    ("isic2016", "isic2016", "train", 14, "isic2016"),
    ("isic2016", "isic2016", "test", 6, "isic2016"),
    ("isic2017", "isic2017", "train", 14, "isic2017"),
    ("isic2017", "isic2017", "val", 2, "isic2017"),
    ("isic2017", "isic2017", "test", 4, "isic2017"),
    ("isic2018", "isic2018", "train", 14, "isic2018"),
    ("isic2018", "isic2018", "val", 2, "isic2018"),
    ("isic2018", "isic2018", "test", 4, "isic2018"),
    ("kvasir", "kvasir", None, 12, "Kvasir-SEG"),
    ("cvc_clinicdb", "cvc_clinicdb", None, 12, "CVC-ClinicDB"),
    ("pranet", "pranet", "train", 21, "TrainDataset"),
    ("pranet", "pranet", "ETIS-LaribPolypDB", 2, "ETIS-LaribPolypDB"),
    ("generic_dermoscopy", "generic", None, 8, "generic_dermoscopy"),
]


@pytest.mark.parametrize("kind, layout, split, count, dataset", CASES)
def test_discover_counts_pairs_and_reads(synthetic_root: Path, kind, layout, split, count, dataset) -> None:
    samples = discover(synthetic_root / kind, layout, split)
    assert len(samples) == count
    assert len({s.id for s in samples}) == count
    for sample in samples:
        assert sample.dataset == dataset
        assert sample.image.suffix.lower() in {".jpg", ".png", ".tif"}
        # pairing by id: the mask file's name carries the image's id
        assert sample.mask.name.lower().startswith(sample.id.lower())
        image, mask = read_pair(sample.image, sample.mask)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert mask.dtype == bool and mask.shape == image.shape[:2]
        assert 0 < mask.mean() < 0.9


def test_isic_spellings_and_clutter(synthetic_root: Path) -> None:
    masks_2016 = [s.mask.name for s in discover(synthetic_root / "isic2016", "isic2016", "train")]
    assert all(name.endswith("_Segmentation.png") for name in masks_2016)
    data_2017 = synthetic_root / "isic2017" / "ISIC-2017_Training_Data"
    assert list(data_2017.glob("*_superpixels.png")) and list(data_2017.glob("*_metadata.csv"))
    ids_2017 = {s.id for s in discover(synthetic_root / "isic2017", "isic2017", "train")}
    assert all("superpixels" not in i for i in ids_2017)
    assert (synthetic_root / "isic2018" / "ISIC2018_Task1-2_Training_Input" / "LICENSE.txt").is_file()
    ids = [int(s.id[5:]) for s in discover(synthetic_root / "isic2018", "isic2018", "train")]
    assert ids == sorted(ids) and any(b - a > 1 for a, b in zip(ids, ids[1:]))  # not contiguous


def test_pranet_test_sets(synthetic_root: Path) -> None:
    samples = discover(synthetic_root / "pranet", "pranet", "test")
    assert {s.dataset for s in samples} == set(PRANET_TEST_SETS)
    etis = [s for s in samples if s.dataset == "ETIS-LaribPolypDB"]
    assert all(s.mask.suffix == ".tif" for s in etis)


def test_kvasir_accepts_own_folder_or_parent(synthetic_root: Path) -> None:
    parent = discover(synthetic_root / "kvasir", "kvasir")
    own = discover(synthetic_root / "kvasir" / "Kvasir-SEG", "kvasir")
    assert [s.id for s in parent] == [s.id for s in own]
    assert all(len(s.id) == 25 for s in own)


def test_clinicdb_natural_order(synthetic_root: Path) -> None:
    ids = [s.id for s in discover(synthetic_root / "cvc_clinicdb", "cvc_clinicdb")]
    assert ids == [str(i) for i in range(1, 13)]


def test_natural_key_orders_numbers_by_value() -> None:
    assert sorted(["10", "2", "1", "a10", "a9"], key=natural_key) == ["1", "2", "10", "a9", "a10"]


def _isic_copy(synthetic_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "isic2018"
    shutil.copytree(synthetic_root / "isic2018", root)
    return root


def test_mask_suffix_case_insensitive(synthetic_root: Path, tmp_path: Path) -> None:
    root = _isic_copy(synthetic_root, tmp_path)
    gt = root / "ISIC2018_Task1_Validation_GroundTruth"
    first, second = sorted(gt.glob("*_segmentation.png"))
    first.rename(gt / first.name.replace("_segmentation.png", "_SEGMENTATION.PNG"))
    samples = discover(root, "isic2018", "val")
    assert len(samples) == 2
    for sample in samples:
        assert sample.mask.name.upper().startswith(sample.id.upper())
    assert second in [s.mask for s in samples]


def test_pairs_by_id_not_position(synthetic_root: Path) -> None:
    """ISIC 2017 interleaves superpixel PNGs with the images, so pairing by sorted position would
    hand each image another image's mask. With pairing by id, each lesion is darker than the ring of
    skin just outside its own mask."""
    darker = []
    for sample in discover(synthetic_root / "isic2017", "isic2017", "train"):
        image, mask = read_pair(sample.image, sample.mask)
        gray = image.mean(axis=2)
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~mask
        darker.append(gray[mask].mean() < gray[ring].mean())
    assert np.mean(darker) >= 0.9


def test_image_without_mask_names_it(synthetic_root: Path, tmp_path: Path) -> None:
    root = _isic_copy(synthetic_root, tmp_path)
    victim = sorted((root / "ISIC2018_Task1_Test_GroundTruth").glob("*.png"))[0]
    victim.unlink()
    with pytest.raises(DataError, match=r"image without a mask .*" + victim.name.split("_seg")[0]):
        discover(root, "isic2018", "test")


def test_mask_without_image_names_it(synthetic_root: Path, tmp_path: Path) -> None:
    root = _isic_copy(synthetic_root, tmp_path)
    image = sorted((root / "ISIC2018_Task1-2_Test_Input").glob("ISIC_*.jpg"))[0]
    image.unlink()
    with pytest.raises(DataError, match=r"mask without an image .*" + image.stem):
        discover(root, "isic2018", "test")


def test_missing_folder_and_empty_set(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing data folder .*nowhere"):
        discover(tmp_path / "nowhere", "isic2018", "train")
    with pytest.raises(DataError, match=r"missing folder .*ISIC2018_Task1-2_Training_Input"):
        discover(tmp_path, "isic2018", "train")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"no images found in .*images"):
        discover(tmp_path, "generic")


def test_duplicate_ids_and_bad_names(tmp_path: Path) -> None:
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    pixel = Image.new("L", (4, 4))
    pixel.save(tmp_path / "images" / "a.png")
    pixel.save(tmp_path / "images" / "a.tif")
    pixel.save(tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match="share id 'a'"):
        discover(tmp_path, "generic")
    with pytest.raises(DataError, match="unknown data layout 'isic2019'"):
        discover(tmp_path, "isic2019")
    with pytest.raises(DataError, match="has splits"):
        discover(tmp_path, "isic2018", "holdout")
    with pytest.raises(DataError, match="no official splits"):
        discover(tmp_path, "generic", "train")


def test_generic_mask_suffix(tmp_path: Path) -> None:
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    Image.new("RGB", (8, 6)).save(tmp_path / "images" / "case1.png")
    Image.new("L", (8, 6)).save(tmp_path / "masks" / "case1_mask.png")
    samples = discover(tmp_path, "generic", mask_suffix="_mask")
    assert [(s.id, s.mask.name) for s in samples] == [("case1", "case1_mask.png")]


def test_every_layout_is_documented() -> None:
    import medis.data.layouts as module

    for name in LAYOUTS:
        assert f"``{name}``" in module.__doc__
