"""A map-style dataset of (image, mask) pairs found by :mod:`medis.data.layouts`.

Each item is a *sample* (the contract of docs/architecture.md)::

    {"image": float32 (3, H, W) in [0, 1], "mask": float32 (1, H, W) in {0, 1},
     "id": str, "dataset": str}

at the network size when a transform resizes (training, evaluation) and at the ORIGINAL size
without one (attack mode).
"""

from __future__ import annotations

from typing import Any, Sequence

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from medis.data.io import read_pair
from medis.data.layouts import SamplePaths
from medis.runtime.stop_signals import quiet_worker_signals

Sample = dict[str, Any]


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (H,W,3) image and bool/uint8 (H,W) mask -> float32 (3,H,W) in [0,1], float32 (1,H,W)."""
    image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mask_t = torch.from_numpy(np.ascontiguousarray(mask) > 0).float().unsqueeze(0)
    return image_t, mask_t


class SegmentationDataset(Dataset):
    """Images and masks from disk, optionally through an albumentations pipeline.

    Args:
        samples: what :func:`medis.data.layouts.discover` found.
        transform: applied to ``image`` (uint8 H,W,3) and ``mask`` (uint8 H,W); ``None`` keeps
            the original size (attack mode).
        dataset_name: names the samples' ``dataset`` field (e.g. ``synthetic_isic``) instead of the
            layout's set name; when the split holds several sets (``subsets``: PraNet's five test
            sets) it is ``<dataset_name>/<set>``, so that equal file names of two sets stay two images.
        subsets: the set names of the whole split (default: those of ``samples``; a shard passes the
            whole split's, so every shard names its samples alike).
    """

    def __init__(self, samples: Sequence[SamplePaths], transform: A.Compose | None = None,
                 dataset_name: str | None = None, subsets: Sequence[str] | None = None) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.dataset_name = dataset_name
        self.several_sets = len(set(subsets if subsets is not None else (s.dataset for s in self.samples))) > 1

    def dataset_of(self, entry: SamplePaths) -> str:
        """The ``dataset`` field of ``entry``'s sample (see the class's arguments)."""
        if not self.dataset_name:
            return entry.dataset
        return f"{self.dataset_name}/{entry.dataset}" if self.several_sets else self.dataset_name

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        entry = self.samples[index]
        image, mask = read_pair(entry.image, entry.mask)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask.astype(np.uint8))
            image, mask = out["image"], out["mask"]
        image_t, mask_t = to_tensors(image, mask)
        return {"image": image_t, "mask": mask_t, "id": entry.id, "dataset": self.dataset_of(entry)}

    def reseed(self, seed: int) -> None:
        """Reseed the augmentation pipeline (called once per data loader worker)."""
        if self.transform is not None:
            self.transform.set_random_seed(seed)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: give each worker's augmentation pipeline its own seed, and let SIGTERM and
    SIGINT sent to the whole process group go to the main process alone, which ends its workers
    (:func:`medis.runtime.stop_signals.quiet_worker_signals`).

    PyTorch seeds worker ``i`` with ``base + i`` where ``base`` comes from the main process's RNG
    (so it follows ``seed_everything`` and changes every epoch); albumentations keeps a separate
    random state, which we derive from it.
    """
    quiet_worker_signals()  # a SIGTERM or Ctrl-C to the process group is the main process's to handle
    info = get_worker_info()
    dataset = info.dataset if info is not None else None
    while dataset is not None and not hasattr(dataset, "reseed"):
        dataset = getattr(dataset, "dataset", None)  # unwrap Subset and similar wrappers
    if dataset is not None:
        dataset.reseed(int(torch.initial_seed() % 2**32))


def collate_samples(batch: list[Sample]) -> dict[str, Any]:
    """Collate samples: images and masks are stacked when all sizes agree, else kept as lists.

    Returns:
        ``{"image": (B,3,H,W) tensor or list of (3,H_i,W_i), "mask": (B,1,H,W) or list of
        (1,H_i,W_i), "id": list[str], "dataset": list[str]}``. Attack mode never resizes, so a
        batch of mixed sizes stays a list.
    """
    images = [s["image"] for s in batch]
    masks = [s["mask"] for s in batch]
    same = all(img.shape == images[0].shape for img in images)
    return {
        "image": torch.stack(images) if same else images,
        "mask": torch.stack(masks) if same else masks,
        "id": [s["id"] for s in batch],
        "dataset": [s["dataset"] for s in batch],
    }
