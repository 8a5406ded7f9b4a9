"""How many replicas one forward/backward pass takes: ``engine.max_batch`` resolved for one
same-size batch of images.

- an integer: that many; ``null``: all active replicas at once;
- ``auto``: the most that keep the attack's tensors within ``engine.memory_limit``
  (:mod:`medis.attacks.batching.memory`: the state of all replicas plus one step of n), and on CUDA
  also no more than the largest batch that ran beside the replicas' state
  (:mod:`medis.attacks.batching.device_probe`). On a CPU
  with the ``auto`` limit, small images (:func:`small_step`) skip the measurement: all replicas at once.

The memory of one replica's step is measured once per victim, losses, precision and device
(:data:`STEP_COST_CACHE`): one replica per loss at small sizes, the costliest loss, as a cost per
pixel of the image, per pixel of the losses' maps, and a fixed part (:func:`measure_step_cost`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence

import torch

from medis.attacks.batching.device_probe import (
    AUTO,
    PROBE_MARGIN,
    attack_step_probe,
    auto_max_batch,
    max_batch_key,
)
from medis.attacks.batching.loss_size import MIN_LOSS_SIZE, loss_shape
from medis.attacks.batching.memory import (
    StepCost,
    auto_memory_limit,
    fit_step_cost,
    format_bytes,
    limit_max_batch,
    line_through,
    parse_memory_limit,
    peak_allocated,
    state_bytes,
)
from medis.attacks.composition import Attack
from medis.attacks.engine.replicas import LossFn
from medis.attacks.rules import StepInfo
from medis.models.frontend import VictimOutput

__all__ = ["STEP_COST_CACHE", "measure_step_cost", "replica_batch"]

log = logging.getLogger(__name__)
VictimFn = Callable[[torch.Tensor], VictimOutput]
STEP_COST_CACHE: dict[tuple, StepCost] = {}
"""The measured :class:`~medis.attacks.batching.memory.StepCost` per victim, losses, precision and device."""
DEFAULT_NETWORK_SIDE = 352
SMALL_STEP_PIXELS = 1 << 19
"""Network-input pixels of all replicas below which a step of small images runs at once, unmeasured
(:func:`small_step`). A step costs PraNet about 2.6 KB per input pixel (measured on CPU), so 0.5 Mpx
is about 1.4 GB; the demo's 48 replicas at 160 px (1.2 Mpx) are measured."""


def update_cost(attack: Attack, channels: int, sizes: Sequence[tuple[int, int]], dtype: torch.dtype) -> float:
    """Bytes per pixel of one update of ``attack``'s rule on one replica and its projection (the new
    image and state, and their temporaries; the inputs are made beforehand and not counted), from two
    image ``sizes``."""
    peaks = []
    for size in sizes:
        x0 = torch.rand(1, channels, *size, dtype=dtype)
        x, grad, direction = x0.clone(), torch.randn_like(x0), torch.ones(1, dtype=dtype)
        state = attack.rule.init(x0, attack.budget)
        zero = torch.zeros(1, dtype=dtype)
        info = StepInfo(zero, zero, 0, attack.budget.steps, zero)
        peaks.append(peak_allocated(lambda: attack.budget.project(
            attack.rule.step(x, grad, x0, direction, state, info, attack.budget)[0], x0), "cpu"))
    return line_through(sizes, peaks).per_pixel


def measure_step_cost(victim: VictimFn, loss_fns: Mapping[str, LossFn], channels: int, device: torch.device,
                      cache: MutableMapping[tuple, StepCost] | None = None,
                      dtype: torch.dtype = torch.float32, attack: Attack | None = None) -> StepCost:
    """The memory of one replica's step as a :class:`~medis.attacks.batching.memory.StepCost` (the
    costliest loss of ``loss_fns``).

    Each loss steps one replica at two square image sizes, the network's input side s and 2s: once
    with its losses at the image's size (the slope is what every pixel costs, image and losses
    together; the intercept the network's activations), once with its losses at a side of s/2 for
    both (the slope is what a pixel of the image alone costs). ``attack``: its rule's update
    (:func:`update_cost`) and the engine's bookkeeping (two image copies) are added per pixel of the
    image. All sizes stay small (s = 352: 0.5 Mpx at most), so measuring costs a few steps, once per
    victim, losses, precision, device and rule. Call it with the network frozen, as the engine does.
    """
    cache = STEP_COST_CACHE if cache is None else cache
    key = (*max_batch_key(victim, loss_fns, (channels,), device), str(dtype),
           None if attack is None else type(attack.rule).__qualname__)
    if key not in cache:
        network = getattr(victim, "size", None)
        side = max(network) if isinstance(network, (tuple, list)) else DEFAULT_NETWORK_SIDE
        sizes = ((side, side), (2 * side, 2 * side))

        def fit(name: str, fn: LossFn, loss_size: int | None) -> StepCost:
            probe = (lambda size: attack_step_probe(victim, {name: fn}, (channels, *size), device, loss_size, dtype)(1))
            return fit_step_cost(probe, sizes, device)

        full = [fit(name, fn, None) for name, fn in loss_fns.items()]
        image_only = [fit(name, fn, max(MIN_LOSS_SIZE, side // 2)) for name, fn in loss_fns.items()]
        per_pixel = max(c.per_pixel for c in image_only)
        # the update and the engine's bookkeeping (the chosen and moved images, torch.where) come on
        # top of the gradient: counted as if they coincided with the graph's peak (a bound)
        if attack is not None:
            per_pixel += update_cost(attack, channels, sizes, dtype) + 2 * channels * dtype.itemsize
        cache[key] = StepCost(per_pixel, max(c.fixed for c in full),
                              max(0.0, max(c.per_pixel for c in full) - per_pixel))
        log.debug("one replica's step: %s", cache[key])
    return cache[key]


def small_step(victim: VictimFn, shape: Sequence[int], replicas: int) -> bool:
    """Whether a step of all ``replicas`` replicas of ``shape`` (C, H, W) images is small enough to run
    at once without measuring it: each image no larger than the network's input, and all of them
    together sending at most :data:`SMALL_STEP_PIXELS` pixels through the network."""
    size = getattr(victim, "size", None)
    if not isinstance(size, (tuple, list)):
        return False
    network = int(size[0]) * int(size[1])
    return int(shape[1]) * int(shape[2]) <= network and replicas * network <= SMALL_STEP_PIXELS


def replica_batch(victim: VictimFn, loss_fns: Mapping[str, LossFn], attack: Attack, shape: Sequence[int],
                  images: int, *, max_batch: int | str | None, memory_limit: int | str, loss_size: int | None,
                  device: torch.device | str, dtype: torch.dtype = torch.float32) -> int | None:
    """Replicas per pass for ``images`` same-size images of ``shape`` (C, H, W), each attacked with
    every loss of ``loss_fns`` (module docstring).

    Raises:
        medis.attacks.batching.memory.MemoryLimitError: a limit the user gave cannot hold one replica.
        medis.attacks.batching.device_probe.MaxBatchError: (CUDA) not even one replica fits in the device.
    """
    if max_batch != AUTO:
        return max_batch  # type: ignore[return-value]
    device = torch.device(device)
    replicas = images * len(loss_fns)
    limit = parse_memory_limit(memory_limit)
    if limit is None and device.type != "cuda" and small_step(victim, shape, replicas):
        return None
    rule_state = attack.rule.init(torch.zeros(1, int(shape[0]), 2, 2, dtype=dtype), attack.budget)
    state = state_bytes(shape, images, replicas, rule_state, track_best=True, element=dtype.itemsize)
    # the probe tries no batch larger than the replicas there are (after its margin, all of them in one
    # pass), and holds their state on the device meanwhile
    probed = auto_max_batch(victim, loss_fns, shape, device, loss_size=loss_size,
                            upper=max(1, math.ceil(replicas / PROBE_MARGIN)), reserve=state)
    if device.type == "cuda" and limit is None:
        return probed
    cost = measure_step_cost(victim, loss_fns, int(shape[0]), device, dtype=dtype, attack=attack)
    height, width = loss_shape((int(shape[1]), int(shape[2])), loss_size)
    step = cost(int(shape[1]) * int(shape[2]), height * width)
    total = auto_memory_limit() if limit is None else limit
    allowed = limit_max_batch(total, state, step, replicas, strict=limit is not None,
                               describe=f"a {shape[1]}x{shape[2]} image with losses {', '.join(loss_fns)}")
    if state + step > total:
        log.warning("a %sx%s image needs %s of state and %s for one replica's step, more than the automatic memory "
                    "limit of %s: it runs one replica per pass (engine.loss_size bounds the step)", shape[1], shape[2],
                    format_bytes(state), format_bytes(step), format_bytes(total))
    return allowed if probed is None else min(allowed, probed)
