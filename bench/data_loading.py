"""Benchmark: data loading throughput against a plain PIL loop, and synthetic generation rate.

    .venv/bin/python bench/data_loading.py --n 200 --size 352

Prints a table and writes bench/results/data_loading.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medis.data.datamodule import SegmentationDataModule
from medis.data.synthetic import generate


def plain_loop(samples, size: int) -> None:
    """Baseline: what a hand-written loader does (PIL read, resize, to tensor), no augmentation."""
    for sample in samples:
        image = Image.open(sample.image).convert("RGB").resize((size, size), Image.BILINEAR)
        mask = Image.open(sample.mask).convert("L").resize((size, size), Image.NEAREST)
        torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
        torch.from_numpy(np.asarray(mask) > 127).float()


def rate(fn, count: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` items per second of ``fn()`` which processes ``count`` items."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=352, help="synthetic image height and network size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "isic"
        start = time.perf_counter()
        generate("isic2018", root, n=args.n, size=args.size, progress=False)
        gen_rate = args.n / (time.perf_counter() - start)
        dm = SegmentationDataModule(str(root), "isic2018", "train", "val", "test", image_size=args.size,
                                    batch_size=16, num_workers=0)
        dm.setup()
        train = dm.samples["train"]
        train_loader, test_loader = dm.train_dataloader(), dm.test_dataloader()
        plain_loop(train[:10], args.size)  # warm-up
        baseline = rate(lambda: plain_loop(train, args.size), len(train))
        ours = rate(lambda: [None for _ in train_loader], len(train))
        attack = rate(lambda: [None for _ in test_loader], len(dm.samples["test"]))
    rows = [
        ("synthetic generation (isic2018)", gen_rate, None),
        ("plain PIL loop (baseline)", baseline, 1.0),
        ("train loader (augmented)", ours, ours / baseline),
        ("attack-mode test loader", attack, attack / baseline),
    ]
    print(f"{'what':36s} {'samples/s':>10s} {'vs baseline':>12s}")
    for name, value, ratio in rows:
        print(f"{name:36s} {value:10.1f} {('' if ratio is None else f'{ratio:.2f}x'):>12s}")
    out = Path(__file__).parent / "results" / "data_loading.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "n": args.n, "size": args.size, "machine": platform.machine(), "threads": torch.get_num_threads(),
        "rows": [{"what": n, "samples_per_s": v, "ratio_vs_baseline": r} for n, v, r in rows]}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
