"""Benchmark: the batched engine against the MedIS notebooks' loop, and against its own floor.

    .venv/bin/python bench/attack_engine.py [--model pranet_lite|pranet] [--images 4] [--size 192] [--threads 1]

Same victim, images and the six paper losses, paper mode, 10 steps, thresholds that never trigger
(equal work: no early success or stop). The notebook-style loop attacks one image with one loss at
a time (batch of 1), reads the prediction back to the CPU to score it with NumPy each step, and
calls ``loss.backward()`` with the weights NOT frozen (so parameter gradients are computed too), as
the notebooks do. The engine's floor is the number of replica forward/backward passes it ran times
the forward and forward+backward time per replica measured at the engine's batch size (the last
record of each replica needs no backward pass), each timed over as many consecutive passes as the
engine runs. The floor's backward pass carries the six losses' own gradients w.r.t. the victim's
outputs (taken once, at the first step), since on a CPU its cost depends on the values (denormal
floats); the floor with the gradient of ``prob.sum()`` instead, and the looser replica floor (every
replica-step times the forward+backward time), are printed too.

As ``attack.py`` does, the run first tunes glibc's allocator (:mod:`medis.runtime.cpu_allocator`); run with
``MEDIS_CPU_ALLOCATOR=default`` to measure without it (the JSON's ``allocator`` says which).

Prints a table and writes bench/results/attack_engine_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from medis.attacks import Attack, EngineOptions, run_attack
from medis.attacks.engine.replicas import replica_losses
from medis.models.frontend import frozen
from medis.runtime.cpu_allocator import tune_cpu_allocator
from medis.data.synthetic import render_dermoscopy
from medis.losses import PAPER_LOSSES, LossContext, build_loss
from medis.models.frontend import Victim
from medis.models.pranet import PraNet, pranet_lite

NEVER = {"stop": "never"}  # every replica runs all its steps (equal work for the engine and the loop)


def numpy_miou(pred: np.ndarray, gt: np.ndarray) -> float:
    """The notebooks' per-image two-class mean IoU on the CPU."""
    scores = []
    for cls in (0, 1):
        p, t = pred == cls, gt == cls
        union = np.logical_or(p, t).sum()
        if union:
            scores.append(np.logical_and(p, t).sum() / union)
    return round(float(np.mean(scores)), 3)


def notebook_loop(victim: Victim, images: torch.Tensor, masks: torch.Tensor, steps: int) -> int:
    """One image, one loss at a time; returns the number of forward passes run."""
    victim.model.eval()
    for p in victim.model.parameters():
        p.requires_grad_(True)
    passes = 0
    for name in PAPER_LOSSES:
        loss_fn = build_loss(name, "paper")
        for image, mask in zip(images, masks):
            x = image.unsqueeze(0).clone()
            gt = mask.unsqueeze(0)
            for t in range(steps):
                x.requires_grad_(True)
                out = victim(x)
                score = numpy_miou((out.prob.detach().cpu().numpy() > 0.5).astype(np.uint8),
                                   gt.cpu().numpy().astype(np.uint8))
                passes += 1
                if score < 0.0:  # the notebooks' stop check (never true: both sides do equal work)
                    break
                loss = loss_fn(out, gt, LossContext(step=t, total_steps=steps)).sum()
                victim.model.zero_grad(set_to_none=True)
                loss.backward()
                x = (x + (1 / 255) * x.grad.sign()).clamp(0, 1).detach()
    return passes


def output_gradients(victim: Victim, batch: torch.Tensor, reference: torch.Tensor, steps: int
                     ) -> dict[int, torch.Tensor]:
    """The six losses' gradients w.r.t. the victim's outputs on the engine's first step.

    ``batch`` and ``reference`` are loss-major replicas (as in the engine: loss k owns rows
    k·B .. k·B + B - 1). Returns ``{i: dL/d outputs[i]}`` over ``(prob, *side_probs, *side_logits)``,
    for the outputs the losses read.
    """
    loss_fns = {name: build_loss(name, "paper") for name in PAPER_LOSSES}
    loss_of = torch.arange(batch.shape[0]) * len(loss_fns) // batch.shape[0]
    with frozen(victim.model):
        out = victim(batch.clone().requires_grad_(True))
        outputs = _outputs(out)
        losses = replica_losses(out, reference, loss_of, loss_fns, LossContext(step=0, total_steps=steps))
        grads = torch.autograd.grad(losses.sum(), outputs, allow_unused=True)
    return {i: g.detach() for i, g in enumerate(grads) if g is not None}


def _outputs(out) -> list[torch.Tensor]:
    return [out.prob, *out.side_probs, *out.side_logits]


def pass_times(victim: Victim, batch: torch.Tensor, repeats: int = 3, block: int = 1,
               grads: dict[int, torch.Tensor] | None = None) -> tuple[float, float]:
    """(forward, forward+backward) seconds per replica at this batch size, weights frozen.

    The backward pass starts from ``grads`` (:func:`output_gradients`: the values the engine's
    backward really carries) or, without them, from the gradient of ``prob.sum()``. The values
    matter on a CPU: tiny loss gradients become denormal floats deep in the backward pass, and
    denormal arithmetic is many times slower (for PraNet at 352 px about 8% of a backward pass).
    Each measurement times ``block`` consecutive passes as one (as the engine runs its steps back to
    back, so that the floor pays the same pass-to-pass jitter); the best of ``repeats`` blocks is
    divided by ``block`` and the batch size.
    """
    def forward_only() -> None:
        x = batch.clone().requires_grad_(True)
        victim(x).prob.sum()

    def forward_backward() -> None:
        x = batch.clone().requires_grad_(True)
        out = victim(x)
        if grads is None:
            torch.autograd.grad(out.prob.sum(), x)
        else:
            outputs = _outputs(out)
            torch.autograd.grad([outputs[i] for i in grads], x, grad_outputs=list(grads.values()))

    with frozen(victim.model):
        timings = []
        for fn in (forward_only, forward_backward):
            fn()
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in range(block):
                    fn()
                best = min(best, time.perf_counter() - start)
            timings.append(best / (block * batch.shape[0]))
    return timings[0], timings[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("pranet_lite", "pranet"), default="pranet_lite")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=192, help="image height (width = 4/3 of it); network size too")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating engine runs and floor measurements; the best of each is kept")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: two threads oversubscribe this shared 2-core VM)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator = "tuned" if tune_cpu_allocator() else "default"
    torch.manual_seed(0)
    device = torch.device(args.device)
    net = pranet_lite() if args.model == "pranet_lite" else PraNet()
    net_size = args.size // 32 * 32
    victim = Victim(net, net_size, fusion="paper").to(device).eval()
    width = args.size * 4 // 3
    pairs = [render_dermoscopy(np.random.default_rng([0, i]), args.size, width) for i in range(args.images)]
    images = torch.stack([torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255 for img, _ in pairs]).to(device)
    masks = torch.stack([torch.from_numpy(m).float()[None] for _, m in pairs]).to(device)
    attack = Attack(mode="paper", losses=PAPER_LOSSES, budget={"steps": args.steps}, criteria=NEVER)
    options = EngineOptions(max_batch=args.max_batch)

    replicas = images.shape[0] * len(PAPER_LOSSES)
    batch = min(args.max_batch or replicas, replicas)
    replica_batch = images.repeat(len(PAPER_LOSSES), 1, 1, 1)[:batch]  # loss-major, as in the engine
    grads = output_gradients(victim, replica_batch, masks.repeat(len(PAPER_LOSSES), 1, 1, 1)[:batch], args.steps)
    # warm-up at the full replica batch (first use of memory is slow on fresh VMs); then engine runs
    # and floor measurements alternate, so that drifts of this shared machine's speed hit both
    run_attack(victim, images, masks, Attack(mode="paper", losses=PAPER_LOSSES, budget={"steps": 2}, criteria=NEVER))
    engine_s = float("inf")
    t_forward, t_forward_backward, t_sum_backward = float("inf"), float("inf"), float("inf")
    for _ in range(args.rounds):
        start = time.perf_counter()
        result = run_attack(victim, images, masks, attack, options=options)
        engine_s = min(engine_s, time.perf_counter() - start)
        forward, forward_backward = pass_times(victim, replica_batch, repeats=1, block=args.steps, grads=grads)
        _, sum_backward = pass_times(victim, replica_batch, repeats=1, block=args.steps)
        t_forward, t_forward_backward = min(t_forward, forward), min(t_forward_backward, forward_backward)
        t_sum_backward = min(t_sum_backward, sum_backward)
    notebook_loop(victim, images[:1], masks[:1], 2)  # warm-up
    start = time.perf_counter()
    notebook_passes = notebook_loop(victim, images, masks, args.steps)
    notebook_s = time.perf_counter() - start

    def floor(forward_backward: float) -> float:
        return (result.backward_replicas * forward_backward
                + (result.forward_replicas - result.backward_replicas) * t_forward)

    floor_s = floor(t_forward_backward)
    rows = {
        "notebook loop: s per image": notebook_s / args.images,
        "engine: s per image": engine_s / args.images,
        "speed-up (notebook / engine)": notebook_s / engine_s,
        "engine floor: s per image": floor_s / args.images,
        "engine / floor": engine_s / floor_s,
        "engine / (replica-steps x f+b)": engine_s / (result.forward_replicas * t_forward_backward),
        "engine / floor, backward of sum(P)": engine_s / floor(t_sum_backward),
    }
    print(f"{args.model} at {net_size}px, {args.images} images {args.size}x{width}, 6 paper losses x {args.steps} "
          f"steps, {device}, replica batch {batch}, {allocator} allocator")
    for name, value in rows.items():
        print(f"  {name:34s} {value:8.3f}")
    out = Path(__file__).parent / "results" / f"attack_engine_{args.model}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "model": args.model, "network_size": net_size, "images": args.images, "image_size": [args.size, width],
        "steps": args.steps, "rounds": args.rounds, "device": str(device), "replica_batch": batch, "threads": torch.get_num_threads(), "allocator": allocator,
        "machine": platform.machine(), "engine_forward_replicas": result.forward_replicas,
        "engine_backward_replicas": result.backward_replicas, "notebook_forward_passes": notebook_passes,
        "forward_s_per_replica": t_forward, "forward_backward_s_per_replica": t_forward_backward,
        "forward_backward_of_sum_s_per_replica": t_sum_backward,
        **{k.replace(" ", "_").replace(":", "").replace("/", "over"): v for k, v in rows.items()}}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
