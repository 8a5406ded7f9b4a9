"""Benchmark: peak memory and time per image of ``attack.py`` against the image size.

    .venv/bin/python bench/attack_sizes.py --checkpoint outputs/demo/pranet_lite_demo.ckpt
        [--mpx 0.5,2,8,16] [--images 2] [--settings default,full_size_losses,before] [--quick]

For each size, a synthetic ISIC 2018 set (``python -m medis.data.synthetic --kind isic2018``) whose
``--images`` test images are resized (PIL, bicubic; masks nearest) to about that many megapixels at
4:3, each a few pixels wider than the one before (as in ISIC, no two share a size: each image is
attacked alone, with its six replicas). Then ``attack.py`` as a user runs it: ``data=isic2018``,
the demo victim (``make demo``'s pranet_lite, 160 px input), every other setting its default
(six paper losses, untargeted, clean mode, gallery, offline W&B), in its own process, timed, its
peak resident memory read from ``getrusage`` of a fresh wrapper process (the largest process: the
attack, or a data loader worker). Settings:

- ``default``: the defaults: ``engine.max_batch=auto`` (replicas per pass within
  ``engine.memory_limit=auto``), ``engine.loss_size=2048`` (clean mode: losses and step scores of
  images longer than 2048 px at 2048 px; verdicts at full size);
- ``full_size_losses``: the defaults but ``engine.loss_size=null`` (losses at full size, replicas
  still within the budget);
- ``before``: ``engine.max_batch=null engine.loss_size=null``, every replica in one pass at full size
  (the former defaults): the baseline, run only where its estimated peak (its largest
  run's GB per megapixel) fits in 80% of this machine's memory.

Reported per run: peak RSS (GB), seconds per image (``attack.log``: from the first batch's
``attacking`` line to the last batch's ``done:`` line, so process start-up and the reports after
the attack are excluded), and seconds per image per megapixel. Goals: with the defaults, peak RSS <= 8 GB at >= 12 Mpx, and seconds per image grow at most linearly with
the pixels (s/Mpx at the largest size <= s/Mpx at the smallest).

Prints a table and writes attack_sizes[_quick].json and a plot (.png) into bench/results/
(``--replot``: redraws the plot from the JSON).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"default": [], "full_size_losses": ["engine.loss_size=null"],
            "before": ["engine.max_batch=null", "engine.loss_size=null"]}
LABELS = {"default": "defaults (memory limit, losses at <= 2048 px)",
          "full_size_losses": "full-size losses (engine.loss_size=null)",
          "before": "former defaults (all replicas at once, full size)"}
GB = 1e9
BEFORE_GB_PER_REPLICA_MPX = 0.35
PEAK_GOAL_GB, PEAK_GOAL_MPX = 8.0, 12.0
WRAPPER = ("import resource, subprocess, sys, time; start = time.time(); "
           "code = subprocess.run(sys.argv[1:]).returncode; "
           "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, time.time() - start, code)")


def make_set(root: Path, mpx: float, images: int) -> list[tuple[int, int]]:
    """A synthetic ISIC 2018 set under ``root`` with ``images`` test images of about ``mpx`` megapixels."""
    from PIL import Image

    subprocess.run([sys.executable, "-m", "medis.data.synthetic", "--kind", "isic2018", "--out", str(root),
                    "--n", str(max(10, 5 * images)), "--size", "160"], check=True, cwd=REPO, capture_output=True)
    test_images = sorted((root / "ISIC2018_Task1-2_Test_Input").glob("*.jpg"))[:images]
    for extra in sorted((root / "ISIC2018_Task1-2_Test_Input").glob("*.jpg"))[images:]:
        extra.unlink()
        (root / "ISIC2018_Task1_Test_GroundTruth" / f"{extra.stem}_segmentation.png").unlink()
    height = int(round(math.sqrt(mpx * 1e6 * 3 / 4)))
    sizes = []
    for i, path in enumerate(test_images):
        size = (int(round(height * 4 / 3)) + 4 * i, height)  # (W, H)
        Image.open(path).convert("RGB").resize(size, Image.BICUBIC).save(path, quality=95)
        mask = root / "ISIC2018_Task1_Test_GroundTruth" / f"{path.stem}_segmentation.png"
        Image.open(mask).resize(size, Image.NEAREST).save(mask)
        sizes.append((size[1], size[0]))
    return sizes


STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")


def attack_seconds(log: Path) -> float | None:
    """Seconds from the first ``attacking`` line of ``attack.log`` to its last ``done:`` line (the
    attack of every batch, without the process's start-up and the reports after the test loop)."""
    start = end = None
    for line in log.read_text().splitlines():
        match = STAMP.match(line)
        if match is None:
            continue
        stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(match.group(2)) / 1e3
        if start is None and "attacking " in line:
            start = stamp
        if " - done: " in line:
            end = stamp
    return None if start is None or end is None else end - start


def run_attack(data: Path, run_dir: Path, checkpoint: Path, setting: str, quick: bool) -> dict:
    overrides = ["data=isic2018", f"data.root={data}", f"model.checkpoint={checkpoint}", "model.input_size=160",
                 f"hydra.run.dir={run_dir}", *SETTINGS[setting], *(["attack.budget.steps=2"] if quick else [])]
    done = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "attack.py", *overrides], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "WANDB_SILENT": "true"})
    match = re.search(r"^PEAK (\d+) ([\d.]+) (-?\d+)$", done.stdout, re.M)
    if match is None or int(match.group(3)) != 0:
        raise RuntimeError(f"attack.py ({setting}) failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return {"peak_gb": int(match.group(1)) / GB, "wall_s": float(match.group(2)),
            "attack_s": attack_seconds(run_dir / "attack.log")}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for setting in SETTINGS:
        mine = [r for r in rows if r["setting"] == setting]
        if not mine:
            continue
        mpx = [r["mpx"] for r in mine]
        left.plot(mpx, [r["peak_gb"] for r in mine], "o-", label=LABELS[setting])
        right.plot(mpx, [r["s_per_image"] for r in mine], "o-", label=LABELS[setting])
    left.axhline(PEAK_GOAL_GB, color="gray", ls="--", lw=1)
    left.text(0.5, PEAK_GOAL_GB * 1.03, f"goal: {PEAK_GOAL_GB:g} GB", color="gray", fontsize=8)
    left.set(xlabel="megapixels per image", ylabel="peak RSS (GB)", title="peak resident memory of attack.py")
    smallest = min((r for r in rows if r["setting"] == "default"), key=lambda r: r["mpx"], default=None)
    if smallest is not None:
        xs = sorted({r["mpx"] for r in rows})
        right.plot(xs, [smallest["s_per_image"] * x / smallest["mpx"] for x in xs], color="gray", ls="--", lw=1,
                   label="linear in pixels (from default's smallest)")
    right.set(xlabel="megapixels per image", ylabel="seconds per image", title="attack time per image",
              xscale="log", yscale="log")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    figure.suptitle("attack.py on synthetic ISIC 2018, 2 images per size (demo pranet_lite, six paper losses, "
                    "untargeted, 10 steps); 'before' not run at 16 Mpx, where it would need ~30 GB", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "outputs/demo/pranet_lite_demo.ckpt")
    parser.add_argument("--mpx", default="0.5,2,8,16")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--quick", action="store_true", help="0.25 and 1 Mpx, 2 steps: a smoke test")
    parser.add_argument("--replot", action="store_true", help="redraw the plot from the JSON, run nothing")
    args = parser.parse_args()
    if args.replot:
        name = "attack_sizes_quick" if args.quick else "attack_sizes"
        rows = json.loads((REPO / "bench" / "results" / f"{name}.json").read_text())["rows"]
        plot(rows, REPO / "bench" / "results" / f"{name}.png")
        return
    if not args.checkpoint.is_file():
        sys.exit(f"error: no checkpoint {args.checkpoint} (run make demo, or pass --checkpoint)")
    sizes = [0.25, 1.0] if args.quick else [float(v) for v in args.mpx.split(",")]
    settings = args.settings.split(",")
    total_gb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GB
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="attack_sizes_"))
    try:
        for mpx in sizes:
            data = work / f"isic_{mpx:g}mpx"
            shapes = make_set(data, mpx, args.images)
            pixels = sum(h * w for h, w in shapes) / len(shapes) / 1e6
            for setting in settings:
                if setting == "before" and rows:
                    largest = max((r for r in rows if r["setting"] == "before"), key=lambda r: r["mpx"], default=None)
                    estimate = (largest["peak_gb"] / largest["mpx"] if largest else BEFORE_GB_PER_REPLICA_MPX * 6) * pixels
                    if estimate > 0.8 * total_gb:
                        print(f"{mpx:g} Mpx, before: not run (about {estimate:.0f} GB of {total_gb:.0f} GB)")
                        continue
                result = run_attack(data, work / f"run_{mpx:g}_{setting}", args.checkpoint, setting, args.quick)
                seconds = result["attack_s"] if result["attack_s"] is not None else result["wall_s"]
                row = {"mpx": round(pixels, 3), "sizes": shapes, "setting": setting, **result,
                       "s_per_image": seconds / len(shapes), "s_per_image_mpx": seconds / len(shapes) / pixels}
                rows.append(row)
                print(f"{pixels:6.2f} Mpx  {setting:9s}  peak {row['peak_gb']:5.2f} GB  "
                      f"{row['s_per_image']:7.1f} s/image  {row['s_per_image_mpx']:6.2f} s/image/Mpx", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    default = sorted((r for r in rows if r["setting"] == "default"), key=lambda r: r["mpx"])
    big = [r for r in default if r["mpx"] >= PEAK_GOAL_MPX]
    goals = {"peak_gb_at_12mpx_or_more": max((r["peak_gb"] for r in big), default=None),
             "peak_ok": bool(big) and all(r["peak_gb"] <= PEAK_GOAL_GB for r in big),
             "time_linear_ok": len(default) > 1 and default[-1]["s_per_image_mpx"] <= default[0]["s_per_image_mpx"]}
    print(f"goal: peak <= {PEAK_GOAL_GB:g} GB at >= {PEAK_GOAL_MPX:g} Mpx: {'PASS' if goals['peak_ok'] else 'FAIL'}; "
          f"time per image at most linear in pixels: {'PASS' if goals['time_linear_ok'] else 'FAIL'}")
    name = "attack_sizes_quick" if args.quick else "attack_sizes"
    out = REPO / "bench" / "results"
    payload = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "memory_gb": round(total_gb, 1), "checkpoint": str(args.checkpoint),
               "images_per_size": args.images, "rows": rows, "goals": goals}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(rows, out / f"{name}.png")
    print(f"wrote {out / name}.json and .png")


if __name__ == "__main__":
    main()
