"""The Lightning data module: one per data config (``conf/data/*.yaml``).

Splits come from the layout's official folders where it has them (ISIC train/val/test, PraNet's
TrainDataset and TestDataset/<set>) and are otherwise held out of the training pool by a seeded
permutation of the ids (``val_fraction``, ``test_fraction``), so a split never depends on file
order. Training and validation resize to ``image_size`` (albumentations); the test loader serves
the attack and yields images at their ORIGINAL size (``test_mode: attack``), or resized ones for
plain evaluation (``test_mode: eval``).

A synthetic config (``synthetic: {kind, n, size, seed}``) writes its data set on first use in
``prepare_data``, so the demo needs no manual step.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from medis.data.dataset import SegmentationDataset, collate_samples, seed_worker
from medis.data.layouts import LAYOUTS, SamplePaths, discover
from medis.data.synthetic import MARKER, generate
from medis.data.transforms import AugmentConfig, eval_transform, train_transform
from medis.data.worker_context import worker_context
from medis.errors import ConfigError, DataError


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> ``(i, n)`` with 0 <= i < n; ``None`` -> ``None``; ConfigError otherwise."""
    if shard is None:
        return None
    try:
        index, count = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise ConfigError(f"data.shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    if not 0 <= index < count:
        raise ConfigError(f"data.shard={shard}: need 0 <= i < n")
    return index, count


def holdout(samples: list[SamplePaths], fractions: dict[str, float], seed: int) -> dict[str, list[SamplePaths]]:
    """Split ``samples`` into ``rest`` and one part per fraction by a seeded permutation.

    Returns:
        ``{"rest": [...], name: [...] for name in fractions}``, each in the input order.
    """
    order = np.random.default_rng(seed).permutation(len(samples))
    parts: dict[str, list[SamplePaths]] = {}
    start = 0
    for name, fraction in fractions.items():
        count = int(round(fraction * len(samples)))
        if fraction > 0 and count == 0:
            count = 1
        parts[name] = [samples[i] for i in sorted(order[start:start + count])]
        start += count
    parts["rest"] = [samples[i] for i in sorted(order[start:])]
    return parts


class SegmentationDataModule(pl.LightningDataModule):
    """Data module of one segmentation data set in a real layout.

    Args:
        root: folder holding the layout (see :mod:`medis.data.layouts`).
        layout: a key of :data:`medis.data.layouts.LAYOUTS`.
        train_split, val_split, test_split: layout split names (``None``: the whole set for
            unsplit layouts as the training pool; no official val/test split otherwise).
        val_fraction, test_fraction: share of the training pool held out as validation / test set
            when ``val_split`` / ``test_split`` is ``None``.
        image_size: network input size for training and evaluation (a multiple of 32 for PraNet).
        batch_size: training batch size; ``eval_batch_size`` for validation and test (default: same).
        num_workers: data loader worker processes.
        augment: :class:`medis.data.transforms.AugmentConfig` fields as a dict.
        test_mode: ``attack`` (original size, no resize) or ``eval`` (resized to ``image_size``).
        dataset_name: name carried by every sample (default: the layout's set name).
        mask_suffix: ``generic`` layout only: masks named ``<stem><suffix>.<ext>``.
        synthetic: ``{kind, n, size, seed}``: generate this synthetic set at ``root`` when missing.
        seed: seed of the held-out splits and of the augmentation pipeline.
        shard: ``"i/n"``: the test split keeps every n-th sample from the i-th (0-based, natural
            order), so n independent jobs attack disjoint parts of one set; ``None``: all.
            Targets drawn from the set (random, most similar) still come from the whole split.
    """

    def __init__(
        self,
        root: str,
        layout: str,
        train_split: str | None = None,
        val_split: str | None = None,
        test_split: str | None = None,
        val_fraction: float = 0.0,
        test_fraction: float = 0.0,
        image_size: int = 352,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        augment: dict[str, Any] | None = None,
        test_mode: Literal["attack", "eval"] = "attack",
        dataset_name: str | None = None,
        mask_suffix: str = "",
        synthetic: dict[str, Any] | None = None,
        seed: int = 0,
        pin_memory: bool = False,
        shard: str | None = None,
    ) -> None:
        super().__init__()
        self.shard = parse_shard(shard)
        if layout not in LAYOUTS:
            raise ConfigError(f"data.layout={layout!r} is not a known layout; choose one of {sorted(LAYOUTS)}")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"data.{name} must be in [0, 1), got {value}")
        if val_fraction + test_fraction >= 1.0:
            raise ConfigError(f"data.val_fraction + data.test_fraction must be < 1, got {val_fraction + test_fraction}")
        if image_size < 32 or batch_size < 1 or num_workers < 0:
            raise ConfigError(f"need data.image_size >= 32, data.batch_size >= 1, data.num_workers >= 0; got "
                              f"{image_size}, {batch_size}, {num_workers}")
        if test_mode not in ("attack", "eval"):
            raise ConfigError(f"data.test_mode must be 'attack' or 'eval', got {test_mode!r}")
        self.root = Path(root).expanduser()
        self.layout = layout
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.image_size = image_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.augment = AugmentConfig.from_dict(augment)
        self.test_mode = test_mode
        self.dataset_name = dataset_name
        self.mask_suffix = mask_suffix
        self.synthetic = dict(synthetic) if synthetic else None
        self.seed = seed
        self.pin_memory = pin_memory
        self.samples: dict[str, list[SamplePaths]] | None = None

    # ------------------------------------------------------------------ data on disk
    def prepare_data(self) -> None:
        """Generate the synthetic set at ``root`` if this config has one and it is missing or stale.

        Parallel jobs (a joblib or SLURM sweep) that share ``root`` take turns through a lock file
        next to it: the first generates, the others then find the set ready and leave it alone.
        """
        if self.synthetic is None:
            return
        wanted = {k: self.synthetic[k] for k in ("kind", "n", "size", "seed") if k in self.synthetic}
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with open(self.root.parent / f".{self.root.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            marker = self.root / MARKER
            if self.root.exists():
                if not marker.is_file():
                    return  # a folder we did not write: never touch it
                found = json.loads(marker.read_text())
                if all(found.get(k) == v for k, v in wanted.items()):
                    return
            generate(wanted["kind"], self.root, wanted.get("n", 300), wanted.get("size", 192), wanted.get("seed", 0),
                     overwrite=True)

    def discover_splits(self) -> dict[str, list[SamplePaths]]:
        """Find the train/val/test samples (official folders or seeded hold-out)."""
        def find(split: str | None) -> list[SamplePaths]:
            return discover(self.root, self.layout, split, mask_suffix=self.mask_suffix)

        unsplit = not LAYOUTS[self.layout].splits
        pool = find(self.splits["train"])
        carve = {name: self.fractions[name] for name in ("val", "test") if self.splits[name] is None}
        parts = holdout(pool, carve, self.seed)
        samples = {"train": parts["rest"]}
        for name in ("val", "test"):
            if self.splits[name] is not None:
                if unsplit:
                    raise ConfigError(f"data.{name}_split={self.splits[name]!r}: layout {self.layout!r} has no "
                                      f"official splits; use data.{name}_fraction")
                samples[name] = find(self.splits[name])
            else:
                samples[name] = parts[name]
        return samples

    def setup(self, stage: str | None = None) -> None:
        """Discover the samples of every split (once)."""
        if self.samples is None:
            self.samples = self.discover_splits()

    # ------------------------------------------------------------------ datasets and loaders
    def dataset(self, split: Literal["train", "val", "test"], sharded: bool = True) -> SegmentationDataset:
        """The dataset of one split with the transform its role calls for (the test split restricted
        to ``shard`` unless ``sharded=False``)."""
        self.setup()
        assert self.samples is not None
        samples = self.samples[split]
        if not samples:
            raise DataError(f"data set at {self.root} has no {split} samples (set data.{split}_split or "
                            f"data.{split}_fraction)")
        if split == "test" and sharded and self.shard is not None:
            index, count = self.shard
            samples = samples[index::count]
            if not samples:
                raise DataError(f"data.shard={index}/{count}: no test samples left of {len(self.samples[split])} "
                                f"at {self.root}")
        if split == "train":
            transform = train_transform(self.image_size, self.augment, seed=self.seed)
        elif split == "test" and self.test_mode == "attack":
            transform = None
        else:
            transform = eval_transform(self.image_size)
        return SegmentationDataset(samples, transform, self.dataset_name,
                                   subsets=[entry.dataset for entry in self.samples[split]])

    def _loader(self, split: Literal["train", "val", "test"], batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            worker_init_fn=seed_worker,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            multiprocessing_context=worker_context(self.num_workers),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)
