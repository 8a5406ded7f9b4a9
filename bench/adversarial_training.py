"""Benchmark: does adversarial training make a skin-lesion model robust, and is that robustness real?

    .venv/bin/python bench/adversarial_training.py [--epochs 16] [--images 8] [--out outputs/adversarial_training]
        [--quick]

Trains two ``pranet_lite`` at 160 px on synthetic ISIC from scratch, with the same recipe and epochs,
as a user runs them (``train.py experiment=adv_train``):

- clean: ``module.adversarial=null``, the best checkpoint by clean validation Dice;
- robust: the experiment's PIR-AT recipe (100% adversarial, PGD-2 on the cross-entropy at 4/255,
  step 0.01, random start, eval mode during the attack), the best checkpoint by robust validation Dice;

then runs the robustness curve on both side by side (``attack.py experiment=robustness_curve``: the
cascade at 1, 2, 4, 8/255 on the first ``--images`` test images at their original size, and the
checks, the transfer check from the clean model). Writes a table (clean Dice and mIoU, the worst
case at each radius, training time, the checks), the curve's plot and JSON to
bench/results/adversarial_training.md, bench/results/adversarial_training.png and
bench/results/adversarial_training.json (``--quick``: ``adversarial_training_quick.*``); the JSON names the robust checkpoint it
saved (``<out>/robust.ckpt``). Goal (issue "robust skin-lesion models"): the robust model's
worst-case mIoU >= 0.5 at 4/255 with clean validation Dice >= 0.85. ``--quick``: 2 epochs, 2 images,
every attack budget a tenth (a smoke test of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_MIOU, GOAL_DICE, GOAL_EPS = 0.5, 0.85, "4"


def run(command: list[str], log: Path) -> float:
    """Run ``command`` in the repository, its output to ``log``; returns the seconds it took."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[:3])} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - start


def best_checkpoint(run_dir: Path) -> Path:
    found = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
    if not found:
        raise SystemExit(f"error: {run_dir}/checkpoints holds no best-*.ckpt")
    return found[-1]


def best_validation(run_dir: Path, monitor: str) -> dict[str, float]:
    """The validation metrics of the epoch with the best ``monitor`` (the saved checkpoint's epoch)."""
    import csv

    rows = [r for r in csv.DictReader((run_dir / "csv" / "metrics.csv").open()) if r.get(monitor)]
    best = max(rows, key=lambda r: float(r[monitor]))
    return {key: float(value) for key, value in best.items() if key.startswith("val/") and value} | {
        "epoch": int(best["epoch"])}


def table(result: dict) -> str:
    radii = result["eps"]
    header = ["model", "val Dice (clean)", "val Dice (PGD-5)", "test mIoU (clean)", "test Dice (clean)",
              *(f"mIoU @{e}/255" for e in radii), *(f"Dice @{e}/255" for e in radii), "training (min)", "checks"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, model in result["models"].items():
        curve = model["curve"]
        checks = curve.get("checks") or []
        failed = [c["name"] for c in checks if c["passed"] is False]
        verdict = f"{sum(c['passed'] is True for c in checks)}/{len(checks)} pass" + (
            f"; FAIL: {', '.join(failed)}" if failed else "")
        cells = [label, f"{model['validation'].get('val/dice', float('nan')):.3f}",
                 f"{model['validation']['val/robust_dice']:.3f}" if "val/robust_dice" in model["validation"] else "-",
                 f"{curve['clean']['miou']:.3f}", f"{curve['clean']['dice']:.3f}",
                 *(f"{curve['eps'][e]['miou']:.3f}" for e in radii), *(f"{curve['eps'][e]['dice']:.3f}" for e in radii),
                 f"{model['train_seconds'] / 60:.1f}", verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "adversarial_training")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    epochs, images = (2, 2) if args.quick else (args.epochs, args.images)
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    python = sys.executable
    size = ["+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1"] if args.quick else []
    common = ["train.py", "experiment=adv_train", f"trainer.max_epochs={epochs}", "logger=csv", *size]
    models: dict[str, dict] = {}
    for label, extra, monitor in (
            ("clean", ["module.adversarial=null", "callbacks.model_checkpoint.monitor=val/dice",
                       "callbacks.model_checkpoint.filename=best-epoch{epoch:03d}-dice{val/dice:.4f}"], "val/dice"),
            ("robust", [], "val/robust_dice")):
        run_dir = out / f"train_{label}"
        seconds = run([python, *common, *extra, f"hydra.run.dir={run_dir}"], out / f"train_{label}.log")
        checkpoint = out / f"{label}.ckpt"
        shutil.copy(best_checkpoint(run_dir), checkpoint)
        models[label] = {"checkpoint": str(checkpoint.relative_to(REPO)) if checkpoint.is_relative_to(REPO)
                         else str(checkpoint), "train_seconds": seconds, "validation": best_validation(run_dir, monitor)}
        print(f"{label}: {seconds / 60:.1f} min, best {monitor} {models[label]['validation'][monitor]:.4f}", flush=True)
    quick_budget = ["attack.budget.steps=20", "attack.members.medis.budget.steps=2", "curve.checks.seeds=[1]"] \
        if args.quick else []
    curve_dir = out / "curve"
    curve_seconds = run([python, "attack.py", "experiment=robustness_curve",
                         f"curve.checkpoints=[{out / 'clean.ckpt'},{out / 'robust.ckpt'}]", "curve.labels=[clean,robust]",
                         f"curve.checks.transfer_from={out / 'clean.ckpt'}", f"curve.images={images}", "logger=csv",
                         *quick_budget, f"hydra.run.dir={curve_dir}"], out / "curve.log")
    curve = json.loads((curve_dir / "curve.json").read_text())
    for label in models:
        models[label]["curve"] = curve["models"][label]
    radii = list(curve["models"]["robust"]["eps"])
    robust = models["robust"]
    reached = robust["curve"]["eps"].get(GOAL_EPS, {}).get("miou")
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.processor() or platform.machine(),
        "quick": args.quick, "epochs": epochs, "images": images, "eps": radii, "curve_seconds": curve_seconds,
        "robust_checkpoint": robust["checkpoint"], "models": models,
        "goal": {"worst_miou_at_4": GOAL_MIOU, "clean_val_dice": GOAL_DICE, "reached_worst_miou_at_4": reached,
                 "reached_clean_val_dice": robust["validation"].get("val/dice"),
                 "met": reached is not None and reached >= GOAL_MIOU and robust["validation"].get("val/dice", 0) >= GOAL_DICE},
        "command": " ".join(sys.argv),
    }
    name = "adversarial_training_quick" if args.quick else "adversarial_training"
    results = REPO / "bench" / "results"
    (results / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = table(result)
    (results / f"{name}.md").write_text(text + "\n" + (curve_dir / "curve.md").read_text().split("\n\n", 1)[-1])
    shutil.copy(curve_dir / "curve.png", results / f"{name}.png")
    print(text)
    print(f"goal (worst-case mIoU >= {GOAL_MIOU} at 4/255, clean val Dice >= {GOAL_DICE}): "
          f"{'met' if result['goal']['met'] else 'NOT met'}; robust checkpoint: {robust['checkpoint']}")
    print(f"wrote {results / name}.{{json,md,png}}")


if __name__ == "__main__":
    main()
