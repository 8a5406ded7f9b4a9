"""Benchmark: the share of verdicts that bf16 (``engine.precision=bf16``) flips against fp32.

    .venv/bin/python bench/bf16_verdicts.py [--images 32] [--epochs 15] [--threads 2] [--device cuda]
        [--checkpoint A.ckpt --transfer B.ckpt]

Two ``pranet_lite`` victims are trained by ``train.py`` as a user trains them (64 px input, 15 epochs
on 60 synthetic ISIC images, float32, seeds 0 and 1; some 20 s each on 2 cores; ``--checkpoint``
and ``--transfer`` skip that), the second serving as the transfer victim. ``--images`` test images of
another synthetic ISIC set (generator seed 1, about 64 px high) are attacked at original size (MedIS: 10 sign steps of 1/255, the six paper
losses, untargeted and toward all-white) in paper and in clean mode, three times each, in the same
process:

- ``fp32``: victim, real pipeline and transfer victim in float32;
- ``bf16``: every verdict in bf16 (this project: the steps, the real pipeline and the transfer
  victim under bf16 autocast);
- ``bf16, real and transfer in fp32``: the same bf16 attack whose real-pipeline and transfer verdicts
  run in float32 (how this project judged them before). Its steps, and so its adversarial images,
  are the ``bf16`` run's (the same bf16 computation), so the verdicts it differs in are flips of
  precision alone on the same images: what "real ASR - ASR" mixed into the 8-bit saving.

Counted per (image, target, loss) record: the success decisions, the real-pipeline successes
(``real_success``, among records both runs judged) and the transfer successes that differ; and the
per-image parallel-fusion success decisions (an image succeeds when any loss does). Prints a table and
writes bench/results/bf16_verdicts.json and bench/results/bf16_verdicts.md (``--device cuda``: the
attacks under CUDA's autocast, whose operator lists differ from the CPU's, into ``bf16_verdicts_cuda.*``).
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

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import medis.config.resolvers  # noqa: F401  (the config resolvers)
from medis.attacks import Attack, EngineOptions, run_attack
from medis.models.wrappers import AutocastVictim, with_precision
from medis.losses import PAPER_LOSSES

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("untargeted", "white")
LOSSES = list(PAPER_LOSSES)
COLUMNS = ("success", "real_success", "transfer_success")


class FloatVerdictsAutocast(AutocastVictim):
    """bf16 steps and verdicts, but the real pipeline in float32 (the wrapped victim's own, without
    autocast): how this project judged them before."""

    @property
    def real_pipeline(self):
        return self.victim.real_pipeline


def train(out: Path, seed: int, epochs: int) -> Path:
    """A pranet_lite checkpoint trained by train.py (64 px, float32, 60 synthetic ISIC images)."""
    run_dir = out / f"train_seed{seed}"
    command = [sys.executable, "train.py", "experiment=demo_train", "model.input_size=64",
               f"trainer.max_epochs={epochs}", "trainer.precision=32-true", "data.batch_size=8",
               "module.scales=[1.0]", "logger=csv", "callbacks.val_predictions=null", f"seed={seed}",
               f"data.root={out / 'synthetic_isic'}", "data.synthetic.n=60", "data.synthetic.size=64",
               "data.num_workers=0", f"hydra.run.dir={run_dir}"]
    print("$", " ".join(command[1:]), flush=True)
    with (out / f"train_seed{seed}.log").open("w") as log:
        done = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    found = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
    if done.returncode != 0 or not found:
        raise SystemExit(f"error: training failed (exit {done.returncode}); see {out / f'train_seed{seed}.log'}")
    return found[-1]


def load(checkpoint: Path, mode: str, data_root: Path, images: int):
    """The victim of ``checkpoint`` read for ``mode`` (attack.py's reading), and the composed config of
    a synthetic set with at least ``images`` test images (a fifth of the set is its test split)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("attack", overrides=[f"model.checkpoint={checkpoint}", f"attack.mode={mode}",
                                           f"data.root={data_root}", f"data.synthetic.n={5 * images}",
                                           "data.synthetic.size=64", "data.synthetic.seed=1", "data.num_workers=0"])
    victim = instantiate(cfg.model, explicit=[])
    if mode == "paper":
        victim.fusion, victim.antialias = "paper", False
    return victim.eval(), cfg


def attack_all(victim, transfer, images, masks, ids, mode: str) -> list:
    """Records of MedIS (six paper losses) untargeted and toward white."""
    attack = Attack(mode=mode)
    records = []
    for target in TARGETS:
        references = masks if target == "untargeted" else [torch.ones_like(m) for m in masks]
        records += run_attack(victim, images, references, attack, target=target, losses=LOSSES,
                              options=EngineOptions(), ids=ids, dataset="synthetic_isic", seed=0,
                              transfer_to=transfer).records
    return records


def differing(a: list, b: list, column: str) -> tuple[int, int]:
    """(records whose ``column`` differs, records both judged) of two runs over the same work."""
    pairs = [(getattr(x, column), getattr(y, column)) for x, y in zip(a, b)
             if getattr(x, column) is not None and getattr(y, column) is not None]
    return sum(x != y for x, y in pairs), len(pairs)


def fused_differing(a: list, b: list) -> tuple[int, int]:
    """(per-image parallel-fusion success decisions that differ, decisions) of two runs: an image
    (per target) is a success of the fusion when any of its attacked losses succeeded."""
    def fused(records: list) -> dict[tuple[str, str], bool]:
        decisions: dict[tuple[str, str], bool] = {}
        for r in records:
            if not r.set_aside:
                decisions[(r.target, r.image_id)] = decisions.get((r.target, r.image_id), False) or bool(r.success)
        return decisions

    first, second = fused(a), fused(b)
    keys = sorted(set(first) & set(second))
    return sum(first[k] != second[k] for k in keys), len(keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the attacks run (training stays on the CPU)")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--transfer", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bf16_verdicts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    source = args.checkpoint or train(out, 0, args.epochs)
    other = args.transfer or train(out, 1, args.epochs)
    trained = time.perf_counter() - start
    data_root = out / "attacked_isic"
    results: dict[str, dict] = {}
    for mode in ("paper", "clean"):
        victim, cfg = load(source, mode, data_root, args.images)
        victim, transfer = victim.to(args.device), load(other, mode, data_root, args.images)[0].to(args.device)
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()  # generates the synthetic set on first use
        datamodule.setup("test")
        dataset = datamodule.dataset("test", sharded=False)
        samples = [dataset[i] for i in range(min(args.images, len(dataset)))]
        images, masks = [s["image"].to(args.device) for s in samples], [s["mask"].to(args.device) for s in samples]
        ids = [s["id"] for s in samples]
        runs = {
            "fp32": attack_all(victim, transfer, images, masks, ids, mode),
            "bf16": attack_all(with_precision(victim, "bf16"), with_precision(transfer, "bf16"), images, masks, ids,
                               mode),
            "bf16_fp32_verdicts": attack_all(FloatVerdictsAutocast(victim, "bf16", torch.bfloat16), transfer, images,
                                             masks, ids, mode),
        }
        same_steps = all(a.trajectory == b.trajectory for a, b in zip(runs["bf16"], runs["bf16_fp32_verdicts"]))
        comparisons = {}
        for name, (a, b) in {"fp32 vs bf16": ("fp32", "bf16"),
                             "bf16 vs bf16 with fp32 real/transfer": ("bf16", "bf16_fp32_verdicts")}.items():
            counts = {column: differing(runs[a], runs[b], column) for column in COLUMNS}
            counts["fused success"] = fused_differing(runs[a], runs[b])
            comparisons[name] = counts
        results[mode] = {"records": len(runs["fp32"]), "images": ids, "same_bf16_steps": same_steps,
                         "comparisons": comparisons,
                         "asr": {run: asr(records) for run, records in runs.items()}}
    seconds = time.perf_counter() - start
    text = table(results)
    print(text)
    payload = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
               "threads": args.threads, "device": args.device, "torch": torch.__version__, "images": args.images, "targets": list(TARGETS),
               "losses": LOSSES, "epochs": args.epochs, "train_seconds": trained, "seconds": seconds,
               "command": " ".join(sys.argv), "results": results}
    results_dir = REPO / "bench" / "results"
    name = "bf16_verdicts" if args.device == "cpu" else f"bf16_verdicts_{torch.device(args.device).type}"
    (results_dir / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    (results_dir / f"{name}.md").write_text(
        f"# bf16 verdict flips (`{' '.join(['bench/bf16_verdicts.py', *sys.argv[1:]])}`, "
        f"{payload['date']}, {args.threads} threads, {seconds / 60:.1f} min)\n\n" + text)
    print(f"wrote {results_dir / name}.json and .md ({seconds / 60:.1f} min)")


def asr(records: list) -> dict[str, float]:
    """Per-record ASR and real ASR (%) over the attacked records (set-aside ones excluded)."""
    attacked = [r for r in records if not r.set_aside]
    real = [r for r in attacked if r.real_success is not None]
    return {"asr": 100 * sum(r.success for r in attacked) / max(len(attacked), 1),
            "real_asr": 100 * sum(bool(r.real_success) for r in real) / max(len(real), 1)}


def table(results: dict) -> str:
    lines = ["| mode | comparison | success | real_success | transfer_success | fused success (per image) |",
             "|---|---|---|---|---|---|"]
    for mode, result in results.items():
        for name, counts in result["comparisons"].items():
            cells = [f"{k} of {n} differ" for k, n in (counts[c] for c in (*COLUMNS, "fused success"))]
            lines.append(f"| {mode} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "| mode | run | ASR % (records) | real ASR % |", "|---|---|---|---|"]
    for mode, result in results.items():
        for run, values in result["asr"].items():
            lines.append(f"| {mode} | {run} | {values['asr']:.1f} | {values['real_asr']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
