"""Benchmark: SegmentationModule's training step under a Lightning Trainer against a plain PyTorch loop.

    .venv/bin/python bench/training_step.py [--model pranet_lite|pranet] [--batch 16] [--size 160]
                                            [--steps 1] [--rounds 6]

The module is built as ``train.py`` builds it: ``hydra.utils.instantiate`` of the ``module`` node
of conf/train.yaml (Adam lr 1e-4 and StepLR as partials, scales [0.75, 1, 1.25], gradient
clipping at 0.5 by value) with the network as ``net``. Both sides start from the SAME weights and
see the same batches in the same order: ``--steps`` batches per measurement, cycling over two
fixed random batches (images uniform in [0, 1], lesion-like binary masks) held in memory.

Plain loop (baseline), per batch and per scale: resize images and masks (bilinear,
``align_corners=True``, to ``multiscale_size``), ImageNet-normalise, forward, structure loss
(``medis.losses.structure_loss``, batch mean) summed over the side outputs, ``zero_grad``,
backward, clamp every gradient entry to [-0.5, 0.5] (PraNet's ``clip_gradient``), Adam step.

Module (candidate): ``SegmentationModule.training_step`` driven by a real
``pytorch_lightning.Trainer(accelerator='cpu', logger=False, enable_checkpointing=False,
enable_progress_bar=False, enable_model_summary=False)``, one ``fit`` per measurement over an
in-memory DataLoader (``batch_size=None``, no workers) of the same batches. ``max_steps`` is
``steps x len(scales)``: under manual optimisation Lightning's global step counts optimiser steps.
The time of a step is taken by a callback, from one ``on_train_batch_start`` to the next (to
``on_train_batch_end`` for the last batch), so it holds everything Lightning does per batch
(fetching the in-memory batch, hooks, ``self.log``, the optimiser wrapper, ``clip_gradients``) but
not the per-``fit`` set-up and tear-down, which are paid once per training run, not per step.
The plain loop's steps are timed the same way (batch to batch, over the same kind of DataLoader).

Threads: 1 by default (``--threads``). This VM's 2 cores are shared with other work; when they
are oversubscribed, two OpenMP threads wait on each other at every barrier and a step takes 10 to
100 times longer and varies wildly (measured: 0.26 s vs 2 to 40 s per batch of 2 at 64 px), which
would drown the ratio in noise. Both sides always run with the same thread count.

Each measurement (a ``fit`` on the module's side) starts a fresh Adam, as Lightning's
``configure_optimizers`` does at every ``fit``, so the plain loop makes a fresh one too.

Warm-up: one batch on each side (first use of memory is slow on fresh VMs); it also checks the
math: after it, and again at the end, the two networks' parameters and buffers must agree
(printed: max absolute difference). Then ``--rounds`` rounds alternate plain and module
measurements (this shared machine's speed drifts; by default one batch each, six times, the
finest alternation); the figures are the MINIMUM per-step time over all timed steps of each side
(other work on the machine only adds time); medians are printed and saved too.
Goal: module / plain <= 1.05 (on the minima).

Prints a table and writes bench/results/training_step_<model>.json (training_step.json for
the default pranet_lite).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from medis.data.synthetic.shapes import StarShape
from medis.lightning.segmentation_module import SegmentationModule, multiscale_size, rescaled_batch
from medis.losses.structure import structure_loss
from medis.models.frontend import IMAGENET_MEAN, IMAGENET_STD
from medis.models.pranet import PraNet, pranet_lite

GOAL_RATIO = 1.05
ROOT = Path(__file__).resolve().parents[1]


def make_batches(count: int, batch: int, size: int) -> list[dict[str, torch.Tensor]]:
    """``count`` fixed random batches: images uniform in [0, 1], one star-shaped lesion per mask."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        masks = np.stack([StarShape.random(rng, rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size,
                                           rng.uniform(0.15, 0.4) * size, rng.uniform(0.05, 0.4), 0.0).field(size, size)
                          < 1.0 for _ in range(batch)])
        out.append({"image": torch.from_numpy(rng.random((batch, 3, size, size), dtype=np.float32)),
                    "mask": torch.from_numpy(masks[:, None].astype(np.float32))})
    return out


def loader(batches: list[dict[str, torch.Tensor]], steps: int) -> DataLoader:
    """``steps`` batches cycling over ``batches``, as an in-memory DataLoader (no collation, no workers)."""
    return DataLoader([batches[i % len(batches)] for i in range(steps)], batch_size=None, shuffle=False)


class PlainLoop:
    """The same math as SegmentationModule.training_step, written by hand."""

    def __init__(self, net: torch.nn.Module, lr: float, scales: list[float], clip: float) -> None:
        self.net = net.train()
        self.lr, self.scales, self.clip = lr, scales, clip
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def batch(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        for rate in self.scales:
            x, m = rescaled_batch(images, masks, rate)
            side = self.net((x - self.mean) / self.std)
            loss = sum(structure_loss(z, m).mean() for z in side)
            self.optimizer.zero_grad()
            loss.backward()
            for group in self.optimizer.param_groups:  # PraNet's clip_gradient
                for param in group["params"]:
                    if param.grad is not None:
                        param.grad.data.clamp_(-self.clip, self.clip)
            self.optimizer.step()

    def run(self, data: DataLoader) -> list[float]:
        """One measurement, a fresh Adam as each Lightning ``fit`` makes (configure_optimizers);
        seconds per batch, batch start to batch start (to the end for the last one)."""
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        stamps = []
        for batch in data:
            stamps.append(time.perf_counter())
            self.batch(batch["image"], batch["mask"])
        stamps.append(time.perf_counter())
        return [b - a for a, b in zip(stamps, stamps[1:])]


class StepTimer(pl.Callback):
    """Per-batch wall time inside a fit: from one on_train_batch_start to the next."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.last_end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.last_end = time.perf_counter()

    def steps(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:] + [self.last_end])]


def fit(module: SegmentationModule, data: DataLoader, steps: int) -> list[float]:
    timer = StepTimer()
    trainer = pl.Trainer(max_steps=steps * len(module.scales), max_epochs=1, accelerator="cpu", devices=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(module, train_dataloaders=data)
    if len(timer.starts) != steps:
        raise RuntimeError(f"the trainer ran {len(timer.starts)} batches, expected {steps}")
    return timer.steps()


def max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Largest absolute difference over all parameters and floating buffers of two networks."""
    pairs = list(zip(a.parameters(), b.parameters()))
    pairs += [(x, y) for x, y in zip(a.buffers(), b.buffers()) if x.is_floating_point()]
    return max(float((x.detach() - y.detach()).abs().max()) for x, y in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("pranet_lite", "pranet"), default="pranet_lite")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=160, help="training size (a multiple of 32)")
    parser.add_argument("--steps", type=int, default=1, help="timed batches per measurement")
    parser.add_argument("--rounds", type=int, default=6, help="alternating plain/module measurements")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", ".*no `val_dataloader`.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    load_start = os.getloadavg()

    torch.manual_seed(0)
    net = pranet_lite() if args.model == "pranet_lite" else PraNet()
    plain_net = copy.deepcopy(net)  # same initial weights on both sides
    cfg = OmegaConf.load(ROOT / "conf" / "train.yaml").module
    module: SegmentationModule = instantiate(cfg, net=net)
    plain = PlainLoop(plain_net, lr=float(cfg.optimizer.lr), scales=[float(r) for r in cfg.scales],
                      clip=float(cfg.grad_clip))
    if cfg.grad_clip_algorithm != "value" or cfg.paper_bce or list(module.scales) != plain.scales:
        raise RuntimeError("conf/train.yaml's module no longer matches the plain loop (clipping, BCE or scales)")
    batches = make_batches(2, args.batch, args.size)

    # warm-up, one batch each from the same weights: also checks that both do the same math
    plain.run(loader(batches, 1))
    fit(module, loader(batches, 1), 1)
    diff_warmup = max_difference(plain.net, module.model)

    plain_steps: list[float] = []
    module_steps: list[float] = []
    for _ in range(args.rounds):
        plain_steps += plain.run(loader(batches, args.steps))
        module_steps += fit(module, loader(batches, args.steps), args.steps)
    diff_end = max_difference(plain.net, module.model)
    load_end = os.getloadavg()

    plain_min, module_min = min(plain_steps), min(module_steps)
    plain_med, module_med = statistics.median(plain_steps), statistics.median(module_steps)
    ratio_min, ratio_med = module_min / plain_min, module_med / plain_med
    verdict = "PASS" if ratio_min <= GOAL_RATIO else "FAIL"
    sizes = [multiscale_size(args.size, r) for r in plain.scales]
    print(f"{args.model}, batch {args.batch} at {args.size}px, scales {plain.scales} -> {sizes}px "
          f"({len(sizes)} optimiser steps per batch), {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.steps} batches per side; load average {load_start[0]:.1f} -> {load_end[0]:.1f}")
    print(f"  {'what':40s} {'min s/step':>11s} {'median s/step':>14s}")
    print(f"  {'plain PyTorch loop (baseline)':40s} {plain_min:11.3f} {plain_med:14.3f}")
    print(f"  {'SegmentationModule + Trainer':40s} {module_min:11.3f} {module_med:14.3f}")
    print(f"  {'ratio module / plain':40s} {ratio_min:11.3f} {ratio_med:14.3f}")
    print(f"  {'max |weights plain - module|':40s} {diff_warmup:11.2e} after warm-up, {diff_end:.2e} at the end")
    print(f"  goal: module / plain <= {GOAL_RATIO} (minima) {verdict}")

    name = "training_step.json" if args.model == "pranet_lite" else f"training_step_{args.model}.json"
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "model": args.model, "batch": args.batch, "size": args.size, "scales": plain.scales, "scale_sizes": sizes,
        "steps_per_measurement": args.steps, "rounds": args.rounds, "step": "one batch (all scales)",
        "statistic": "minimum (median also given)", "machine": platform.machine(), "processor": platform.processor(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "pytorch_lightning": pl.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_start": load_start[0], "load_average_end": load_end[0],
        "plain_s_per_step": plain_min, "module_s_per_step": module_min, "ratio_module_over_plain": ratio_min,
        "plain_median_s_per_step": plain_med, "module_median_s_per_step": module_med,
        "ratio_module_over_plain_median": ratio_med, "plain_steps_s": plain_steps, "module_steps_s": module_steps,
        "max_abs_weight_diff_after_warmup": diff_warmup, "max_abs_weight_diff_end": diff_end,
        "goal": f"module/plain <= {GOAL_RATIO}", "verdict": verdict,
    }, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
