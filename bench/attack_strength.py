"""Benchmark: strength against cost of the cascade (``attack=ensemble``) and of the public protocol.

    .venv/bin/python bench/attack_strength.py [--checkpoint outputs/demo/pranet_lite_demo.ckpt]
        [--images 16] [--eps 4,8] [--quick] [--device cpu|cuda] [--threads 2]

On the demo victim (``pranet_lite`` trained by ``make demo``, clean mode, 160 px input) and the
first ``--images`` synthetic ISIC test images at their original size, untargeted, L∞ ball of each
``--eps`` (/255), the same scorer for every attack: the two-class mIoU of the prediction with the
ground truth, lower = stronger. Per attack: the mean over the images of the per-image worst case
(the lowest score any of its records reached) and the forward + backward passes spent per image.

Rows:

- the public protocol (``attack=padam_sea``: Halmosi, Mohos, Jelasity, ECCV 2024, with SEA's
  progressive radius, Croce, Singh, Hein, ECCV 2024): PAdam-CE and PAdam-Cos (200 steps) and APGD
  with SEA's four losses (300 iterations), every member on every image; its members' rows come
  from the same run (each loss is its own replica);
- MedIS alone (its six losses, 10 sign steps of 1/255, projected on the ball);
- the cascade (``attack=ensemble``), and its curve: the mean worst case and the passes after each
  member (an image that left earlier keeps its score).

Goal (issue: "the strongest protocol"): the cascade's mean worst-case mIoU <= the protocol's + 0.005
with <= 50% of its passes per image, at every eps. ``--quick``: 4 images, every budget a quarter
(not comparable with the full run; a smoke test of the script).

Prints a table and writes attack_strength[_quick][_cuda].json into bench/results/, and a strength-vs-cost
plot (.png, log passes): one point per attack, the cascade as a curve.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import medis.config.resolvers  # noqa: F401  (the config resolvers)
from medis.attacks import EngineOptions, run_attack
from medis.attacks.ensemble import Ensemble, run_ensemble, worst_score
from medis.runtime.cpu_allocator import tune_cpu_allocator

REPO = Path(__file__).resolve().parents[1]
GOAL_MARGIN, GOAL_SHARE = 0.005, 0.5
PROTOCOL, CASCADE, MEDIS = "padam_sea", "ensemble", "medis"
NAMES = {"padam/bce": "PAdam-CE", "padam/cosine": "PAdam-Cos", "sea/masked_bce": "APGD masked CE (SEA)",
         "sea/js": "APGD JS (SEA)", "sea/masked_logit": "APGD masked logit (SEA)", "sea/segpgd": "APGD SegPGD (SEA)"}


def compose_attack(name: str, eps: float, checkpoint: Path, quick: bool):
    """The composed attack.py config of ``attack=name`` at ``eps`` (demo victim and data)."""
    overrides = ["experiment=demo", f"model.checkpoint={checkpoint}", f"attack={name}", f"attack.budget.eps={eps}"]
    if name == MEDIS:
        overrides.append("attack.criteria.stop=exact")  # for strength, no early stop before every pixel is won
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("attack", overrides=overrides)
    attack = instantiate(cfg.attack, _convert_="all").with_losses(list(cfg.losses.names))
    if quick:
        attack = quartered(attack)
    return cfg, attack


def quartered(attack):
    """Every member's steps divided by four (``--quick``)."""
    import dataclasses

    def shorter(member):
        steps = max(member.budget.steps // 4, 2 * len(getattr(member.rule, "radii", (1,))) - 1)
        return dataclasses.replace(member, budget=dataclasses.replace(member.budget, steps=steps))

    if isinstance(attack, Ensemble):
        return dataclasses.replace(attack, members=tuple(shorter(m) for m in attack.members))
    return shorter(attack)


def summarise(records, group_of) -> dict[str, dict]:
    """``{group: {"miou": mean per-image worst case, "passes": mean passes per image, "per_image"}}``."""
    groups: dict[str, dict[str, list]] = {}
    for record in records:
        entry = groups.setdefault(group_of(record), {}).setdefault(record.image_id, [math.inf, 0])
        entry[0] = min(entry[0], worst_score(record, targeted=False))
        entry[1] += (record.forwards or 0) + (record.backwards or 0)
    return {group: {"miou": sum(v[0] for v in images.values()) / len(images),
                    "passes": sum(v[1] for v in images.values()) / len(images),
                    "per_image": {k: v[0] for k, v in images.items()}}
            for group, images in groups.items()}


def cascade_curve(records, members: list[str], images: list[str]) -> list[dict]:
    """After each member: the mean per-image worst case so far and the cumulative passes per image."""
    best, spent, curve = {image: math.inf for image in images}, 0.0, []
    for member in members:
        for record in (r for r in records if r.attack == member):
            best[record.image_id] = min(best[record.image_id], worst_score(record, targeted=False))
            spent += (record.forwards or 0) + (record.backwards or 0)
        curve.append({"member": member, "miou": sum(best.values()) / len(best), "passes": spent / len(images)})
    return curve


def run(victim, images, masks, ids, attack, device) -> tuple[list, float]:
    start = time.perf_counter()
    fn = run_ensemble if isinstance(attack, Ensemble) else run_attack
    result = fn(victim, images, masks, attack, ids=ids, seed=0, options=EngineOptions())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result.records, time.perf_counter() - start


def plot(results: dict, out: Path) -> None:
    """Mean worst-case mIoU against passes per image (log), one panel per eps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    figure = Figure(figsize=(5.2 * len(results), 4.2))
    FigureCanvasAgg(figure)
    for index, (eps, rows) in enumerate(results.items()):
        axes = figure.add_subplot(1, len(results), index + 1)
        span = max(row["miou"] for row in rows["attacks"].values()) or 1.0
        placed: list[tuple[float, float]] = []  # (x, label y) of the labels drawn so far
        for name, row in sorted(rows["attacks"].items(), key=lambda item: item[1]["miou"]):
            if name == "cascade":
                continue
            protocol = name == "public protocol"
            axes.scatter(row["passes"], row["miou"], s=40 if protocol else 18, marker="s" if protocol else "o",
                         color="k" if protocol else None)
            label_y = row["miou"]
            for x, y in placed:  # keep labels of neighbouring points apart, moving up
                if abs(math.log(x / row["passes"])) < 0.3 and label_y - y < 0.045 * span:
                    label_y = y + 0.045 * span
            placed.append((row["passes"], label_y))
            axes.annotate(name, (row["passes"], row["miou"]), (row["passes"] * 1.12, label_y), fontsize=7,
                          va="center", arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey"}
                          if label_y != row["miou"] else None)
        curve = rows["cascade_curve"]
        axes.plot([p["passes"] for p in curve], [p["miou"] for p in curve], "-o", color="crimson", label="cascade")
        shown = 0
        for before, point in zip([None, *curve], curve):
            if before is None or point["passes"] > 1.08 * before["passes"]:  # a member that spent something
                axes.annotate(point["member"], (point["passes"], point["miou"]), fontsize=6, color="crimson",
                              xytext=(2, -9 if shown % 2 == 0 else 5), textcoords="offset points")
                shown += 1
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(FixedLocator([10, 30, 100, 300, 1000, 3000, 10000]))
        axes.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
        axes.xaxis.set_minor_locator(NullLocator())
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("forward + backward passes per image")
        axes.set_ylabel("mean per-image worst-case mIoU (lower = stronger)")
        axes.set_title(f"eps = {eps}/255")
        axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=REPO / "outputs" / "demo" / "pranet_lite_demo.ckpt")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--eps", default="4,8", help="radii in /255, comma-separated")
    parser.add_argument("--quick", action="store_true", help="4 images, every budget a quarter")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        raise SystemExit(f"error: {args.checkpoint}: no demo checkpoint; run `make demo` first (or pass --checkpoint)")
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    device = torch.device(args.device)
    n_images = 4 if args.quick else args.images

    cfg, _ = compose_attack(MEDIS, 4 / 255, args.checkpoint, args.quick)
    victim = instantiate(cfg.model).to(device).eval()
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    dataset = datamodule.dataset("test", sharded=False)
    samples = [dataset[i] for i in range(min(n_images, len(dataset)))]
    images = [s["image"].to(device) for s in samples]
    masks = [s["mask"].to(device) for s in samples]
    ids = [s["id"] for s in samples]

    results: dict[str, dict] = {}
    for eps_255 in [float(e) for e in args.eps.split(",")]:
        eps = eps_255 / 255
        rows: dict[str, dict] = {}
        _, protocol = compose_attack(PROTOCOL, eps, args.checkpoint, args.quick)
        records, seconds = run(victim, images, masks, ids, protocol, device)
        for group, row in summarise(records, lambda r: NAMES.get(r.loss, r.loss)).items():
            rows[group] = row
        rows["public protocol"] = {**summarise(records, lambda r: "all")["all"], "seconds": seconds}
        _, medis = compose_attack(MEDIS, eps, args.checkpoint, args.quick)
        records, seconds = run(victim, images, masks, ids, medis, device)
        rows["MedIS"] = {**summarise(records, lambda r: "all")["all"], "seconds": seconds}
        _, cascade = compose_attack(CASCADE, eps, args.checkpoint, args.quick)
        records, seconds = run(victim, images, masks, ids, cascade, device)
        rows["cascade"] = {**summarise(records, lambda r: "all")["all"], "seconds": seconds}
        protocol_row, cascade_row = rows["public protocol"], rows["cascade"]
        goal = {"margin": cascade_row["miou"] - protocol_row["miou"],
                "pass_share": cascade_row["passes"] / protocol_row["passes"]}
        goal["met"] = goal["margin"] <= GOAL_MARGIN and goal["pass_share"] <= GOAL_SHARE
        results[f"{eps_255:g}"] = {"attacks": rows, "goal": goal,
                                   "cascade_curve": cascade_curve(records, [m.name for m in cascade.members], ids)}
        print(f"\neps = {eps_255:g}/255, {len(ids)} images")
        print(f"{'attack':28s} {'worst-case mIoU':>16s} {'passes/image':>13s}")
        for name, row in sorted(rows.items(), key=lambda item: item[1]["passes"]):
            print(f"{name:28s} {row['miou']:16.4f} {row['passes']:13.0f}")
        for point in results[f"{eps_255:g}"]["cascade_curve"]:
            print(f"  cascade after {point['member']:14s} {point['miou']:10.4f} {point['passes']:13.0f}")
        print(f"cascade - protocol = {goal['margin']:+.4f} (goal <= {GOAL_MARGIN}), passes {goal['pass_share']:.1%} of the "
              f"protocol's (goal <= {GOAL_SHARE:.0%}): {'met' if goal['met'] else 'NOT met'}")

    suffix = ("_quick" if args.quick else "") + ("_cuda" if device.type == "cuda" else "")
    out = REPO / "bench" / "results" / f"attack_strength{suffix}.json"
    out.write_text(json.dumps({
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
        "device": str(device), "threads": args.threads, "checkpoint": str(args.checkpoint), "images": ids,
        "quick": args.quick, "results": results}, indent=1) + "\n")
    plot(results, out.with_suffix(".png"))
    print(f"\nwrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
