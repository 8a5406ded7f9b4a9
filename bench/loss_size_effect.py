"""Benchmark: how much ``engine.loss_size`` changes the demo's fused table.

    .venv/bin/python bench/loss_size_effect.py --checkpoint outputs/demo/pranet_lite_demo.ckpt
        [--data data/synthetic_isic] [--sizes 160,112] [--pin]

Runs ``attack.py experiment=demo`` (32 synthetic ISIC test images of about 220x165 px, six paper
losses, untargeted and four targets, clean mode) once with the losses at full size
(``engine.loss_size=null``, the baseline) and once per ``--sizes`` value, each in its own process
and, with ``--pin``, with ``make demo``'s pinned CPU kernels (AVX2, 2 threads). The demo's images
are small, so the caps are set below them: 160 px (the network's input side; about 0.7 of the
image's side) and 112 px (about half the side, a quarter of the pixels: the ratio of a 4k image's
losses at 2048 px, the default).

Per cap and target: the fused ASR (points) and distortion (mean steps) against the baseline, the
share of images whose fused verdict (success or not) differs, and over all records the mean and
largest absolute change of the recorded score (full size in both runs). Writes
bench/results/loss_size_effect.json and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from medis.results.fusion import summary_table  # noqa: E402
from medis.reporting import read_records  # noqa: E402

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "2"}


def run_demo(checkpoint: Path, data: Path | None, run_dir: Path, loss_size: str, pin: bool) -> list:
    overrides = ["experiment=demo", f"model.checkpoint={checkpoint}", f"hydra.run.dir={run_dir}",
                 f"engine.loss_size={loss_size}", "logger=csv", *([f"data.root={data}"] if data else [])]
    env = {**os.environ, **(PINNED if pin else {})}
    done = subprocess.run([sys.executable, "attack.py", *overrides], cwd=REPO, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"attack.py engine.loss_size={loss_size} failed:\n{done.stderr[-3000:]}")
    return read_records(run_dir / "records.csv")


def fused(records: list) -> dict[str, dict]:
    return {row["target"]: row for row in summary_table(records) if row["loss"] == "parallel fusion"}


def compare(base: list, other: list) -> dict:
    base_rows, other_rows = fused(base), fused(other)
    by_key = {(r.target, r.image_id, r.loss): r for r in base}
    changes = [abs(r.metric - by_key[(r.target, r.image_id, r.loss)].metric) for r in other
               if (r.target, r.image_id, r.loss) in by_key and not r.set_aside]
    per_image = {}
    for records, label in ((base, "base"), (other, "other")):
        for r in records:
            key = (r.target, r.image_id)
            per_image.setdefault(key, {}).setdefault(label, False)
            per_image[key][label] |= bool(r.success)
    flips = {target: sum(v.get("base") != v.get("other") for k, v in per_image.items() if k[0] == target)
             / max(1, sum(k[0] == target for k in per_image)) for target in base_rows}
    return {"targets": {t: {"asr_base": base_rows[t]["asr"], "asr": other_rows[t]["asr"],
                            "asr_change": other_rows[t]["asr"] - base_rows[t]["asr"],
                            "distortion_base": base_rows[t]["distortion"], "distortion": other_rows[t]["distortion"],
                            "verdicts_changed": flips[t]} for t in base_rows},
            "metric_change_mean": sum(changes) / max(1, len(changes)), "metric_change_max": max(changes, default=0.0),
            "records": len(changes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "outputs/demo/pranet_lite_demo.ckpt")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--sizes", default="160,112")
    parser.add_argument("--pin", action="store_true", help="make demo's pinned kernels (AVX2, 2 threads)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loss_size_"))
    base = run_demo(args.checkpoint, args.data, work / "full", "null", args.pin)
    results = {}
    for size in args.sizes.split(","):
        result = compare(base, run_demo(args.checkpoint, args.data, work / f"cap{size}", size, args.pin))
        results[size] = result
        for target, row in result["targets"].items():
            print(f"loss_size={size:>4}  {target:13s} ASR {row['asr_base']:5.1f} -> {row['asr']:5.1f} "
                  f"({row['asr_change']:+5.1f})  distortion {row['distortion_base']} -> {row['distortion']}  "
                  f"verdicts changed {row['verdicts_changed']:.1%}")
        print(f"loss_size={size:>4}  recorded score change: mean {result['metric_change_mean']:.4f}, "
              f"max {result['metric_change_max']:.4f} over {result['records']} records")
    out = REPO / "bench" / "results" / "loss_size_effect.json"
    out.write_text(json.dumps({"date": datetime.date.today().isoformat(), "checkpoint": str(args.checkpoint),
                               "pinned": args.pin, "runs": str(work), "sizes": results}, indent=2) + "\n")
    print(f"wrote {out} (runs kept in {work})")


if __name__ == "__main__":
    main()
