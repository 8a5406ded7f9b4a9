"""Benchmark: replica-steps per second of the batched engine at several replica batch sizes.

    .venv/bin/python bench/attack_throughput.py [--model pranet_lite|pranet] [--batches 1,6,24]
        [--images 4] [--size 192] [--rounds 2] [--device cpu|cuda] [--threads N]
        [--channels-last] [--compile [--compile-mode MODE]] [--precision fp32|bf16]

One replica is one (image, loss) pair, one replica-step one forward(+backward) pass of a replica.
The engine (:func:`medis.attacks.engine.run_attack`, paper mode, the six paper losses, 10 steps,
thresholds that never trigger so every replica runs every step) is timed at each replica batch
size (``EngineOptions.max_batch``) against the notebook-style loop of ``attack_engine.py`` (one
image, one loss, batch 1, NumPy scoring, weights not frozen) on the same victim and images.

Per batch size: replica-steps/s, images/s, speed-up in images/s over the notebook loop, and engine
time over its floor, floor = replica-steps x the forward+backward time per replica measured at that
batch size (``pass_times``, over as many consecutive passes as the attack has steps; a last,
smaller chunk is timed at its own size). The paper-mode engine
skips the backward pass at the last record, so this floor is a little loose and the ratio may dip
below 1; the tight floor (forward-only time for those passes) is printed too.

Rounds alternate notebook loop, engine and floor measurements (the shared VM's speed drifts); the
best of the rounds is kept. The notebook loop is per image, so it runs on ``--notebook-images``
images and is scaled per image. On CUDA every clock read is preceded by ``torch.cuda.synchronize()``
(``pass_times`` included). Goals (GPU only; n.a. on CPU), at the batch size with the most
replica-steps/s: >= 10x the notebook loop's images/s, and engine <= 1.10 x floor.

On CPU the default is ONE torch thread: on this shared 2-core VM two threads oversubscribe the
cores, spin in OpenMP barriers and stall for seconds at random (the default run took 11 minutes
instead of 2, with batch sizes' times off by 3x); ``--threads 2`` to measure them anyway.

Fast-path options (:func:`medis.models.wrappers.fast_victim`, all off by default): ``--channels-last``
(NHWC weights and network input), ``--compile`` (``torch.compile`` of the network, forward and input
backward; ``--compile-mode``), ``--precision bf16`` (autocast, float32 outputs). They apply to the
engine and to its floor (``pass_times``); the notebook loop stays the plain float32 victim, so its
speed-up includes theirs. With ``--compile`` every batch size is warmed up first on any device (the
compilations are not timed).

Prints a table and writes bench/results/attack_throughput_<model>_<device>.json, with the options
as a suffix when any is on (e.g. ``..._cuda_bf16_cl_compile.json``), so a baseline is not overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import platform
import time
import types
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

import attack_engine
from attack_engine import NEVER, notebook_loop, pass_times
from medis.attacks import Attack, EngineOptions, run_attack
from medis.models.wrappers import PRECISIONS, fast_victim
from medis.runtime.cpu_allocator import tune_cpu_allocator
from medis.data.synthetic import render_dermoscopy
from medis.losses import PAPER_LOSSES
from medis.models.frontend import Victim
from medis.models.pranet import PraNet, pranet_lite

DEFAULTS = {"pranet_lite": {"images": 4, "size": 192, "rounds": 2},
            "pranet": {"images": 1, "size": 352, "rounds": 1}}
GOAL_SPEEDUP, GOAL_FLOOR = 10.0, 1.10


def default_batches(replicas: int) -> list[int]:
    """1, 6, 12, 24, ... (doubling) below ``replicas``, then all replicas."""
    sizes, b = [1], 6
    while b < replicas:
        sizes.append(b)
        b *= 2
    return sorted(set(sizes + [replicas]))


def make_clock(device: torch.device):
    """``time.perf_counter`` that first waits for the device's queued work (CUDA kernels are async)."""
    if device.type != "cuda":
        return time.perf_counter

    def clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return clock


@contextlib.contextmanager
def synced_pass_times(clock) -> Iterator[None]:
    """Make ``attack_engine.pass_times`` read ``clock`` instead of the bare ``time.perf_counter``
    (it reads ``time.perf_counter`` through its module's global ``time``); restored afterwards."""
    original = attack_engine.time
    attack_engine.time = types.SimpleNamespace(perf_counter=clock)
    try:
        yield
    finally:
        attack_engine.time = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("pranet_lite", "pranet"), default="pranet_lite")
    parser.add_argument("--images", type=int, default=None, help="images attacked by the engine (4; pranet: 1)")
    parser.add_argument("--size", type=int, default=None,
                        help="image height (width = 4/3 of it); network size too (192; pranet: 352)")
    parser.add_argument("--batches", default=None,
                        help="comma-separated replica batch sizes (default 1,6,12,24,... up to all replicas)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=None, help="alternating measurement rounds (2; pranet: 1)")
    parser.add_argument("--notebook-images", type=int, default=1, help="images the notebook loop attacks per round")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default on CPU: 1, see the docstring; on CUDA: torch's own)")
    parser.add_argument("--channels-last", action="store_true", help="network weights and input in channels-last")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (forward and backward)")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode (default, reduce-overhead, ...)")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                        help="fp32, or bf16 autocast with float32 outputs")
    args = parser.parse_args()
    options = {"channels_last": args.channels_last, "compile": args.compile, "compile_mode": args.compile_mode,
               "precision": args.precision}
    allocator = "tuned" if tune_cpu_allocator() else "default"  # as attack.py does
    threads = args.threads or (1 if args.device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    defaults = DEFAULTS[args.model]
    n_images = args.images or defaults["images"]
    size = args.size or defaults["size"]
    rounds = args.rounds or defaults["rounds"]
    torch.manual_seed(0)
    device = torch.device(args.device)
    clock = make_clock(device)
    net = pranet_lite() if args.model == "pranet_lite" else PraNet()
    net_size = size // 32 * 32
    plain = Victim(net, net_size, fusion="paper").to(device).eval()  # the notebook loop's victim
    # channels-last re-strides the weights in place: the fast victim gets its own copy of the network
    victim = fast_victim(copy.deepcopy(plain) if args.channels_last else plain, channels_last=args.channels_last,
                         compile=args.compile, compile_mode=args.compile_mode, precision=args.precision)
    width = size * 4 // 3
    pairs = [render_dermoscopy(np.random.default_rng([0, i]), size, width) for i in range(n_images)]
    images = torch.stack([torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255 for img, _ in pairs]).to(device)
    masks = torch.stack([torch.from_numpy(m).float()[None] for _, m in pairs]).to(device)
    losses = list(PAPER_LOSSES)
    replicas = n_images * len(losses)
    batches = ([int(b) for b in args.batches.split(",")] if args.batches else default_batches(replicas))
    batches = sorted({min(b, replicas) for b in batches if b >= 1})
    nb_images = min(args.notebook_images, n_images)

    # chunk sizes the engine runs at each batch size (no replica ever stops: every record is full)
    chunk_sizes = {b: [b] * (replicas // b) + ([replicas % b] if replicas % b else []) for b in batches}
    timed_sizes = sorted({c for sizes in chunk_sizes.values() for c in sizes})

    # warm-up at the full replica batch (first use of memory is slow on fresh VMs), then the loop
    run_attack(victim, images, masks, Attack(mode="paper", losses=losses, budget={"steps": 2}, criteria=NEVER))
    if device.type == "cuda" or args.compile:  # every batch size's kernels chosen (compiled) before timing
        for b in batches:
            run_attack(victim, images, masks, Attack(mode="paper", losses=losses, budget={"steps": 2}, criteria=NEVER),
                       options=EngineOptions(max_batch=b))
    notebook_loop(plain, images[:1], masks[:1], 2)
    engine_s = {b: float("inf") for b in batches}
    forward_s = {c: float("inf") for c in timed_sizes}
    forward_backward_s = {c: float("inf") for c in timed_sizes}
    notebook_s, counts = float("inf"), {}
    notebook_passes = 0
    with synced_pass_times(clock):
        for _ in range(rounds):
            timed: set[int] = set()
            start = clock()
            notebook_passes = notebook_loop(plain, images[:nb_images], masks[:nb_images], args.steps)
            notebook_s = min(notebook_s, clock() - start)
            for b in batches:
                attack = Attack(mode="paper", losses=losses, budget={"steps": args.steps}, criteria=NEVER)
                start = clock()
                result = run_attack(victim, images, masks, attack, options=EngineOptions(max_batch=b))
                engine_s[b] = min(engine_s[b], clock() - start)
                counts[b] = (result.forward_replicas, result.backward_replicas)
                for c in sorted(set(chunk_sizes[b]) - timed):  # each size once a round, right after its engine run
                    timed.add(c)
                    batch = images[:1].expand(c, -1, -1, -1).contiguous()
                    forward, forward_backward = pass_times(victim, batch, repeats=1, block=args.steps)
                    forward_s[c] = min(forward_s[c], forward)
                    forward_backward_s[c] = min(forward_backward_s[c], forward_backward)

    notebook_rate = notebook_passes / notebook_s
    notebook_images_s = nb_images / notebook_s
    rows = []
    for b in batches:
        forward_replicas, backward_replicas = counts[b]
        records = forward_replicas // replicas
        # per record position the engine runs the chunks of chunk_sizes[b]; no backward at the last one
        loose = records * sum(c * forward_backward_s[c] for c in chunk_sizes[b])
        tight = ((records - 1) * sum(c * forward_backward_s[c] for c in chunk_sizes[b])
                 + sum(c * forward_s[c] for c in chunk_sizes[b])) if backward_replicas < forward_replicas else loose
        images_s = n_images / engine_s[b]
        rows.append({
            "max_batch": b, "chunks": chunk_sizes[b], "engine_s": engine_s[b],
            "forward_replicas": forward_replicas, "backward_replicas": backward_replicas,
            "replica_steps_per_s": forward_replicas / engine_s[b], "images_per_s": images_s,
            "speedup_images_per_s": images_s / notebook_images_s,
            "forward_s_per_replica": forward_s[b], "forward_backward_s_per_replica": forward_backward_s[b],
            "floor_s": loose, "engine_over_floor": engine_s[b] / loose,
            "tight_floor_s": tight, "engine_over_tight_floor": engine_s[b] / tight})
    best = max(rows, key=lambda r: r["replica_steps_per_s"])
    on_gpu = device.type == "cuda"
    goals = {
        f"images/s >= {GOAL_SPEEDUP:g}x notebook loop": best["speedup_images_per_s"] >= GOAL_SPEEDUP,
        f"engine <= {GOAL_FLOOR:.2f} x floor": best["engine_over_floor"] <= GOAL_FLOOR,
    }
    verdicts = {name: ("PASS" if ok else "FAIL") if on_gpu else "n.a." for name, ok in goals.items()}

    print(f"{args.model} at {net_size}px, {n_images} images {size}x{width}, {len(losses)} paper losses x "
          f"{args.steps} steps = {replicas} replicas, {device}, {torch.get_num_threads()} threads, best of {rounds}")
    print(f"fast path: precision {args.precision}, channels-last {'on' if args.channels_last else 'off'}, "
          f"compile {('on (mode ' + (args.compile_mode or 'default') + ')') if args.compile else 'off'}")
    print(f"notebook loop ({nb_images} image(s), batch 1): {notebook_rate:8.2f} replica-steps/s, "
          f"{notebook_images_s:8.4f} images/s")
    header = (f"{'max_batch':>9s} {'replica-steps/s':>15s} {'images/s':>9s} {'speed-up':>8s} "
              f"{'f+b s/replica':>13s} {'engine/floor':>12s} {'engine/tight':>12s}")
    print(header)
    for r in rows:
        mark = " *" if r is best else ""
        print(f"{r['max_batch']:9d} {r['replica_steps_per_s']:15.2f} {r['images_per_s']:9.4f} "
              f"{r['speedup_images_per_s']:7.2f}x {r['forward_backward_s_per_replica']:13.4f} "
              f"{r['engine_over_floor']:12.3f} {r['engine_over_tight_floor']:12.3f}{mark}")
    print(f"goals at the best batch size (*, max_batch={best['max_batch']}), GPU only:")
    for name, verdict in verdicts.items():
        print(f"  {name:36s} {verdict}")

    suffix = "".join(tag for tag, on in (("_bf16", args.precision == "bf16"), ("_cl", args.channels_last),
                                         ("_compile", args.compile)) if on)
    out = Path(__file__).parent / "results" / f"attack_throughput_{args.model}_{device.type}{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "model": args.model, "network_size": net_size, "images": n_images, "image_size": [size, width],
        "losses": losses, "steps": args.steps, "replicas": replicas, "device": str(device), "fast_path": options,
        "device_name": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "allocator": allocator, "machine": platform.machine(), "torch": torch.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "rounds": rounds,
        "notebook": {"images": nb_images, "seconds": notebook_s, "forward_passes": notebook_passes,
                     "replica_steps_per_s": notebook_rate, "images_per_s": notebook_images_s},
        "rows": rows, "best_max_batch": best["max_batch"],
        "goals": {name: verdicts[name] for name in goals}}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
