"""The data module and its Hydra configs, on synthetic sets written in the real layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from medis.data.datamodule import SegmentationDataModule, holdout
from medis.data.layouts import discover
from medis.errors import ConfigError, DataError

from ..conftest import CONF_DIR

# data config -> (synthetic kind folder, overrides)
CONFIGS = {
    "isic2016": ("isic2016", []),
    "isic2017": ("isic2017", []),
    "isic2018": ("isic2018", []),
    "kvasir": ("kvasir", []),
    "cvc_clinicdb": ("cvc_clinicdb", []),
    "pranet_cvc300": ("pranet", []),
    "pranet_clinicdb": ("pranet", []),
    "pranet_colondb": ("pranet", []),
    "pranet_etis": ("pranet", []),
    "pranet_kvasir": ("pranet", []),
    "synthetic_isic": ("isic2018", ["data.synthetic=null"]),
    "synthetic_polyp": ("pranet", ["data.synthetic=null"]),
}


def compose_data(name: str, root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=None, overrides=[f"+data={name}", "+paths=default", f"data.root={root}",
                                                   "data.num_workers=0", *overrides])
    return cfg.data


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_data_config_loads_its_layout(synthetic_root: Path, name: str) -> None:
    kind, overrides = CONFIGS[name]
    dm: SegmentationDataModule = instantiate(compose_data(name, synthetic_root / kind, "data.image_size=64",
                                                          "data.batch_size=4", *overrides))
    dm.prepare_data()
    dm.setup("fit")
    counts = {split: len(dm.samples[split]) for split in ("train", "val", "test")}
    assert all(c > 0 for c in counts.values()), counts
    ids = [(s.dataset, s.id) for split in dm.samples.values() for s in split]
    assert len(ids) == len(set(ids)), "a sample is in two splits"

    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["mask"].shape == (4, 1, 64, 64)
    assert batch["image"].dtype == torch.float32 and 0.0 <= batch["image"].min() <= batch["image"].max() <= 1.0
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}

    test_batch = next(iter(dm.test_dataloader()))
    for image, mask in zip(test_batch["image"], test_batch["mask"]):
        assert image.shape[1:] == mask.shape[1:] and image.shape[0] == 3  # original size, not 64x64
        assert image.shape[1:] != (64, 64)


def test_split_counts_follow_the_config(synthetic_root: Path) -> None:
    dm = instantiate(compose_data("kvasir", synthetic_root / "kvasir"))
    dm.setup()
    assert [len(dm.samples[s]) for s in ("train", "val", "test")] == [9, 1, 2]  # 12 images: round(1.2) val, round(2.4) test
    dm = instantiate(compose_data("pranet_etis", synthetic_root / "pranet"))
    dm.setup()
    assert {s.dataset for s in dm.samples["test"]} == {"ETIS-LaribPolypDB"}
    assert len(dm.samples["train"]) + len(dm.samples["val"]) == 21
    dm = instantiate(compose_data("synthetic_polyp", synthetic_root / "pranet", "data.synthetic=null"))
    dm.setup()
    assert len({s.dataset for s in dm.samples["test"]}) == 5


def test_attack_mode_keeps_original_sizes(synthetic_root: Path) -> None:
    dm = instantiate(compose_data("isic2018", synthetic_root / "isic2018", "data.eval_batch_size=4"))
    batch = next(iter(dm.test_dataloader()))
    expected = [discover(synthetic_root / "isic2018", "isic2018", "test")[i] for i in range(4)]
    assert batch["id"] == [s.id for s in expected]
    from PIL import Image

    for image, sample in zip(batch["image"], expected):
        width, height = Image.open(sample.image).size
        assert tuple(image.shape) == (3, height, width)
    assert isinstance(batch["image"], list)  # mixed sizes stay a list, never resized
    dm_eval = instantiate(compose_data("isic2018", synthetic_root / "isic2018", "data.test_mode=eval",
                                       "data.image_size=64"))
    assert next(iter(dm_eval.test_dataloader()))["image"].shape[-2:] == (64, 64)


def test_holdout_is_seeded_disjoint_and_order_free(synthetic_root: Path) -> None:
    samples = discover(synthetic_root / "pranet", "pranet", "train")
    a = holdout(samples, {"val": 0.2, "test": 0.1}, seed=3)
    b = holdout(list(reversed(samples)), {"val": 0.2, "test": 0.1}, seed=3)
    assert sum(len(p) for p in a.values()) == len(samples)
    assert not {s.id for s in a["val"]} & {s.id for s in a["test"]}
    assert len(a["val"]) == 4 and len(a["test"]) == 2
    assert a == holdout(samples, {"val": 0.2, "test": 0.1}, seed=3)
    assert holdout(samples, {"val": 0.2}, seed=4)["val"] != a["val"]
    assert len(b["val"]) == len(a["val"])


def test_augmentations_vary_across_workers(synthetic_root: Path) -> None:
    """Each data loader worker reseeds the albumentations pipeline; workers must not repeat each other."""
    dm = instantiate(compose_data("isic2018", synthetic_root / "isic2018", "data.image_size=64",
                                  "data.batch_size=1", "data.num_workers=2",
                                  "data.augment.hflip=0.5", "data.augment.rotate_p=1.0"))
    dataset = dm.dataset("train")
    single = torch.utils.data.Subset(dataset, [0, 0, 0, 0, 0, 0])
    loader = torch.utils.data.DataLoader(single, batch_size=1, num_workers=2,
                                         worker_init_fn=dm.train_dataloader().worker_init_fn)
    images = [batch["image"] for batch in loader]
    distinct = {tuple(img.flatten()[:200].tolist()) for img in images}
    assert len(distinct) == len(images)


def test_synthetic_generated_on_first_use(tmp_path: Path) -> None:
    root = tmp_path / "synthetic_isic"
    dm = instantiate(compose_data("synthetic_isic", root, "data.synthetic.n=10", "data.synthetic.size=48"))
    dm.prepare_data()
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    dm.prepare_data()  # second call: already there, nothing rewritten
    assert (root / "synthetic.json").stat().st_mtime_ns == stamp
    dm.setup()
    assert [len(dm.samples[s]) for s in ("train", "val", "test")] == [7, 1, 2]
    user = tmp_path / "mine"
    user.mkdir()
    dm = instantiate(compose_data("synthetic_isic", user, "data.synthetic.n=10"))
    dm.prepare_data()  # a folder we did not write is never touched
    assert list(user.iterdir()) == []


def test_bad_configs_fail_with_the_key(synthetic_root: Path) -> None:
    with pytest.raises(ConfigError, match="data.layout='isic2099'"):
        SegmentationDataModule(root=".", layout="isic2099")
    with pytest.raises(ConfigError, match="data.val_fraction"):
        SegmentationDataModule(root=".", layout="kvasir", val_fraction=1.5)
    with pytest.raises(ConfigError, match=r"augment\.hflip"):
        SegmentationDataModule(root=".", layout="kvasir", augment={"hflip": 2})
    with pytest.raises(ConfigError, match="unknown augment key"):
        SegmentationDataModule(root=".", layout="kvasir", augment={"hflop": 0.5})
    dm = SegmentationDataModule(root=str(synthetic_root / "kvasir"), layout="kvasir")
    with pytest.raises(DataError, match="no val samples"):
        dm.val_dataloader()
    dm = SegmentationDataModule(root=str(synthetic_root / "kvasir"), layout="kvasir", test_split="test")
    with pytest.raises(ConfigError, match="no official splits"):
        dm.setup()


def test_shards_partition_the_test_split(synthetic_root: Path) -> None:
    def test_ids(shard: str | None, sharded: bool = True) -> list[str]:
        dm = instantiate(compose_data("synthetic_polyp", synthetic_root / "pranet", "data.synthetic=null",
                                      f"data.shard={shard}" if shard else "data.shard=null"))
        return [s.id for s in dm.dataset("test", sharded=sharded).samples]

    everything = test_ids(None)
    parts = [test_ids(f"{i}/3") for i in range(3)]
    assert sorted(i for part in parts for i in part) == sorted(everything)  # disjoint, complete
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert test_ids("1/3", sharded=False) == everything  # the target pool stays whole


@pytest.mark.parametrize("shard", ["3/3", "-1/2", "a/b", "1"])
def test_bad_shard_names_the_key(shard: str) -> None:
    with pytest.raises(ConfigError, match="data.shard"):
        SegmentationDataModule(root=".", layout="kvasir", shard=shard)


def test_parallel_jobs_share_one_synthetic_generation(tmp_path: Path) -> None:
    """Two jobs of a parallel sweep prepare the same synthetic root at once: both end with the
    complete set (the lock makes the second wait and reuse it instead of replacing it mid-read)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from medis.data.datamodule import SegmentationDataModule\n"
        "dm = SegmentationDataModule(root=sys.argv[1], layout='isic2018', train_split='train', val_split='val',\n"
        "    test_split='test', synthetic={'kind': 'isic2018', 'n': 120, 'size': 48, 'seed': 0})\n"
        "dm.prepare_data(); dm.setup()\n"
        "import os; print(sum(len(v) for v in dm.samples.values()), os.stat(sys.argv[1]).st_ino)\n"
    )
    root = tmp_path / "synthetic_isic"
    jobs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [job.communicate(timeout=300) for job in jobs]
    final = str(root.stat().st_ino)
    for job, (out, err) in zip(jobs, outputs):
        assert job.returncode == 0, err[-2000:]
        assert out.split() == ["120", final]  # generated once: nobody replaced the set another job read


def test_one_name_for_several_sets_keeps_each_set_apart(synthetic_root: Path, tmp_path: Path) -> None:
    """data=pranet_testsets data.dataset_name=polyp: the five sets share one name, but a sample's
    ``dataset`` is ``polyp/<set>``, so the same file name in two sets stays two records (and every shard
    names its samples alike); a single set keeps the plain name."""
    import shutil

    root = tmp_path / "pranet"
    shutil.copytree(synthetic_root / "pranet", root)
    test_sets = sorted(p for p in (root / "TestDataset").iterdir() if p.is_dir())
    donor, twin = test_sets[0], test_sets[1]
    name = sorted((donor / "images").iterdir())[0].name  # the same file name in a second set
    shutil.copy(donor / "images" / name, twin / "images" / name)
    shutil.copy(donor / "masks" / name, twin / "masks" / name)
    dm = instantiate(compose_data("pranet_testsets", root, "data.dataset_name=polyp", "data.shard=1/2"))
    dm.setup()
    whole = dm.dataset("test", sharded=False)
    keys = [(whole.dataset_of(s), s.id) for s in whole.samples]
    assert len(keys) == len(set(keys))
    assert {k[0] for k in keys} == {f"polyp/{p.name}" for p in test_sets}
    shard = dm.dataset("test")
    assert all(shard[i]["dataset"].startswith("polyp/") for i in range(len(shard)))
    single = instantiate(compose_data("pranet_etis", root, "data.dataset_name=etis"))
    assert single.dataset("test")[0]["dataset"] == "etis"
