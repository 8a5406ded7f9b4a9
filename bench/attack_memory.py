"""Benchmark: the process's memory stays flat over an attack of many images.

    .venv/bin/python bench/attack_memory.py [--n 1000] [--size 64] [--batch 8] [--losses bce_dice,structure]
        [--steps 2] [--threads 1] [--trim]

Drives the real :class:`medis.lightning.attack_module.AttackModule` with a real Lightning
``Trainer`` (CPU, ``inference_mode=False``) and ``trainer.test`` over a synthetic ISIC 2018 set
generated into a temporary folder (images ``--size`` px high, mixed sizes as the generator makes
them). The attacked split is the set's training split (its largest, 70%), so ``--n`` attacked
images need only ~``n / 0.7`` generated ones. A cheap setting: ``pranet_lite`` victim at
``--size`` px, untargeted, paper mode, ``--steps`` steps, ``gallery_size=0``.

A callback reads the process RSS (``VmRSS`` of /proc/self/status) after every test batch. Reported:
RSS after 10% and 50% of the batches and at the end, the growth per 100 batches (least-squares slope
over the second half), the peak (``VmHWM``: whole process, set generation included), and what the
module keeps in memory by design: ``module.records`` (every record, for the fusion callback),
measured as a deep ``sys.getsizeof`` per record and as MB per 100 batches, to compare with the
slope. The records also stream to ``records.csv`` (checked: one row per (image, loss)).

The plain RSS also counts free memory that glibc's allocator keeps in its heap instead of handing
back: tensors of many different sizes (the images' mixed sizes) fragment it, so the plain RSS creeps
up although nothing live grows. The RSS after one ``malloc_trim(0)`` at the end shows how much of it
was such free memory; ``--trim`` calls ``malloc_trim(0)`` before every sample, so that the curve
follows live memory only (an intervention: the default measures the untouched process).

The allocator is tuned first, as ``attack.py`` tunes it (:mod:`medis.runtime.cpu_allocator`: freed large
blocks stay in the heap for reuse); ``MEDIS_CPU_ALLOCATOR=default`` measures glibc's defaults.

Goal: growth over the second half (slope x its batches) < 5% of the RSS at 10% (PASS/FAIL).

Prints a table and writes bench/results/attack_memory.json (``--trim``: attack_memory_trim.json).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from medis.runtime.cpu_allocator import tune_cpu_allocator
from medis.data.datamodule import SegmentationDataModule
from medis.data.synthetic import generate
from medis.lightning.attack_module import AttackModule
from medis.models.build import build_victim
from medis.models.pranet import pranet_lite

GOAL_GROWTH = 0.05
ISIC2018_FRACTIONS = (0.7, 0.1, 0.2)  # train, val, test shares of the generator's ISIC 2018 layout


def status_mb(field: str) -> float:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def malloc_trim() -> bool:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim(0)``); False where
    there is no glibc. What it gives back was free memory that the allocator kept, not live data."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def total_for_train_split(n: int) -> int:
    """Smallest set size whose ISIC 2018 training split holds at least ``n`` images (the writer's
    rounding: val and test get ``round(share x total)``, training the rest)."""
    total = n
    while total - sum(max(1, int(round(total * f))) for f in ISIC2018_FRACTIONS[1:]) < n:
        total += 1
    return total


def deep_size(obj, seen: set[int] | None = None) -> int:
    """``sys.getsizeof`` of ``obj`` and everything it holds (dicts, lists, tuples, sets; shared
    objects such as interned strings counted once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        size += sum(deep_size(v, seen) for v in obj)
    return size


class RssSampler(pl.Callback):
    """RSS, records held and time after every test batch (after ``malloc_trim`` with ``trim``)."""

    def __init__(self, trim: bool = False) -> None:
        self.trim = trim
        self.samples: list[tuple[int, float, int, float]] = []  # (batch, rss MB, len(records), seconds)
        self.start = time.perf_counter()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.trim:
            malloc_trim()
        self.samples.append((batch_idx + 1, status_mb("VmRSS"), len(pl_module.records), time.perf_counter() - self.start))


def slope_per_100(batches: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``values`` against ``batches``, per 100 batches."""
    return float(np.polyfit(batches, values, 1)[0]) * 100 if len(batches) >= 2 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="images attacked")
    parser.add_argument("--size", type=int, default=64, help="image height and network size (multiple of 32)")
    parser.add_argument("--batch", type=int, default=8, help="images per test batch")
    parser.add_argument("--losses", default="bce_dice,structure")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (memory, not speed, is measured: one thread keeps the run short and "
                             "steady on a shared machine, where two oversubscribed threads stall)")
    parser.add_argument("--trim", action="store_true",
                        help="malloc_trim(0) before every sample: RSS then counts live memory, not the free "
                             "memory glibc keeps in its heap (default: the plain RSS, no intervention)")
    args = parser.parse_args()
    losses = args.losses.split(",")
    allocator = "tuned" if tune_cpu_allocator() else "default"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    rss_start = status_mb("VmRSS")
    with tempfile.TemporaryDirectory(prefix="medis-bench-memory-") as tmp:
        root, out_dir = Path(tmp) / "synthetic_isic", Path(tmp) / "run"
        total = total_for_train_split(args.n)
        start = time.perf_counter()
        generate("isic2018", root, n=total, size=args.size, seed=0, progress=False)
        generation_s = time.perf_counter() - start
        datamodule = SegmentationDataModule(str(root), "isic2018", train_split="train", val_split="val",
                                            test_split="train", image_size=args.size, batch_size=args.batch,
                                            num_workers=0, dataset_name="synthetic_isic")
        datamodule.setup()
        attacked = len(datamodule.samples["test"])
        victim = build_victim(pranet_lite(), args.size // 32 * 32, fusion="paper")
        module = AttackModule(victim, {"mode": "paper", "steps": args.steps}, losses, ["untargeted"],
                              str(out_dir), seed=0, gallery_size=0)
        sampler = RssSampler(args.trim)
        trainer = pl.Trainer(accelerator="cpu", devices=1, inference_mode=False, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             callbacks=[sampler])
        rss_before = status_mb("VmRSS")
        start = time.perf_counter()
        trainer.test(module, datamodule=datamodule, verbose=False)
        attack_s = time.perf_counter() - start
        csv_path = out_dir / "records.csv"
        csv_rows = sum(1 for _ in csv_path.open()) - 1
        csv_bytes = csv_path.stat().st_size
        held = len(module.records)
        records_bytes = deep_size(module.records)
        rss_untrimmed = status_mb("VmRSS")
        trimmed = malloc_trim()
        rss_trimmed = status_mb("VmRSS") if trimmed else None
    peak = status_mb("VmHWM")

    samples = np.array(sampler.samples, dtype=float)
    batches, rss = samples[:, 0], samples[:, 1]
    count = len(batches)
    at = {share: float(rss[max(0, int(round(share * count)) - 1)]) for share in (0.1, 0.5, 1.0)}
    half = batches >= batches[count // 2]
    growth_100 = slope_per_100(batches[half], rss[half])
    span = float(batches[half][-1] - batches[half][0])
    growth_half = growth_100 * span / 100
    ratio = growth_half / at[0.1]
    per_record = records_bytes / max(held, 1)
    records_per_batch = held / count
    records_100_mb = per_record * records_per_batch * 100 / 2**20
    ok = ratio < GOAL_GROWTH

    print(f"AttackModule + Trainer.test: {attacked} synthetic ISIC images (~{args.size}px high, {total} generated in "
          f"{generation_s:.1f} s), pranet_lite at {args.size // 32 * 32}px, losses {','.join(losses)}, "
          f"{args.steps} steps, untargeted, batch {args.batch}: {count} batches in {attack_s:.1f} s, "
          f"{torch.get_num_threads()} thread(s), {allocator} allocator; RSS sampled after every batch"
          f"{', after malloc_trim(0)' if args.trim else ''}")
    rows = [
        ("RSS at start of the script", rss_start, "MB"),
        ("RSS before trainer.test", rss_before, "MB"),
        (f"RSS after 10% of batches ({max(1, int(round(0.1 * count)))})", at[0.1], "MB"),
        (f"RSS after 50% of batches ({max(1, int(round(0.5 * count)))})", at[0.5], "MB"),
        (f"RSS at the end ({count})", at[1.0], "MB"),
        ("growth per 100 batches (2nd half, LSQ)", growth_100, "MB"),
        (f"growth over the 2nd half ({span:.0f} batches)", growth_half, "MB"),
        ("  as a share of the RSS at 10%", 100 * ratio, "%"),
        ("peak RSS (VmHWM, whole process)", peak, "MB"),
        ("peak RSS sampled during the attack", float(rss.max()), "MB"),
        ("RSS after the run, before malloc_trim(0)", rss_untrimmed, "MB"),
        *([("RSS after the run, after malloc_trim(0)", rss_trimmed, "MB")] if trimmed else []),
        (f"module.records held ({held} records)", records_bytes / 2**20, "MB"),
        ("  bytes per record (deep sizeof)", per_record, "B"),
        ("  records growth per 100 batches", records_100_mb, "MB"),
        (f"records.csv on disk ({csv_rows} rows)", csv_bytes / 2**20, "MB"),
    ]
    for name, value, unit in rows:
        print(f"  {name:42s} {value:10.2f} {unit}")
    print(f"goal: growth over the 2nd half < {100 * GOAL_GROWTH:.0f}% of the RSS at 10%: {'PASS' if ok else 'FAIL'}")
    if csv_rows != attacked * len(losses):
        print(f"WARNING: records.csv holds {csv_rows} rows, expected {attacked * len(losses)}")

    out = Path(__file__).parent / "results" / f"attack_memory{'_trim' if args.trim else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "n": attacked, "generated": total, "size": args.size, "batch": args.batch, "losses": losses,
        "steps": args.steps, "batches": count, "device": "cpu", "threads": torch.get_num_threads(), "allocator": allocator,
        "machine": platform.machine(), "torch": torch.__version__, "lightning": pl.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "generation_s": generation_s, "attack_s": attack_s,
        "rss_start_mb": rss_start, "rss_before_test_mb": rss_before, "rss_at_10pct_mb": at[0.1],
        "rss_at_50pct_mb": at[0.5], "rss_end_mb": at[1.0], "growth_per_100_batches_mb": growth_100,
        "growth_second_half_mb": growth_half, "growth_second_half_over_rss_10pct": ratio,
        "peak_rss_mb": peak, "peak_rss_sampled_mb": float(rss.max()),
        "records_held": held, "records_mb": records_bytes / 2**20, "bytes_per_record": per_record,
        "records_growth_per_100_batches_mb": records_100_mb, "records_csv_rows": csv_rows,
        "records_csv_mb": csv_bytes / 2**20, "goal": "PASS" if ok else "FAIL",
        "trim_every_batch": args.trim, "rss_after_run_mb": rss_untrimmed, "rss_after_run_trimmed_mb": rss_trimmed,
        "samples": [{"batch": int(b), "rss_mb": r, "records": int(k), "seconds": s} for b, r, k, s in sampler.samples],
    }, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
