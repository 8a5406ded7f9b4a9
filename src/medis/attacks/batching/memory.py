"""The engine's memory limit (``engine.memory_limit``) and the replica batch it allows.

An attack holds two kinds of memory per same-size batch of B images and R = B·K replicas:

- its *state*, for all R replicas at once (they step together): the current and chosen images (and
  the best ones when a cascade or a transfer model needs them), the rule's state (momentum,
  Adam's moments), each replica's reference mask; the B clean images and their clean predictions
  once per image. :func:`state_bytes` counts it from the shapes.
- one *step* of n replicas: the victim's forward pass with the side outputs brought back to the
  mask size, the losses, the input gradient. That is what ``engine.max_batch`` bounds.
  :func:`measure_step_cost` measures it: the peak of live tensor memory while one replica steps,
  at two image sizes, fitted as ``per_pixel·pixels + fixed`` (the network's own activations are
  the fixed part, at its input size), once per victim, losses and loss resolution.

:func:`limit_max_batch` gives the most replicas per step such that state + n steps stay within the
limit. ``auto`` is half the memory available when the attack starts, at most :data:`CPU_AUTO_CAP`:
on a CPU a step of more replicas is no faster once each step is large (the work grows with the
pixels, not with the number of calls), so there is no gain in holding more.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from medis.errors import ConfigError, MedisError
from medis.runtime.byte_sizes import format_bytes, parse_size

__all__ = ["AUTO_LIMIT", "CPU_AUTO_CAP", "MemoryLimitError", "StepCost", "auto_memory_limit", "available_memory", "limit_max_batch",
           "format_bytes", "line_through", "parse_memory_limit", "peak_allocated", "state_bytes"]

AUTO_LIMIT = "auto"
CPU_AUTO_CAP = 4 * 2**30
"""The most an ``auto`` limit takes (bytes): 4 GiB."""


class MemoryLimitError(MedisError, RuntimeError):
    """The memory limit cannot hold the state and one step of even one replica."""


def parse_memory_limit(value: object, key: str = "engine.memory_limit") -> int | None:
    """Bytes of a limit: ``auto`` (``None``), a number of bytes, or a size such as ``6GB``,
    ``6GiB``, ``512MB`` (:func:`medis.runtime.byte_sizes.parse_size`).

    Raises:
        ConfigError: (one line, naming ``key``) anything else, or a limit of zero bytes.
    """
    if value == AUTO_LIMIT:
        return None
    size = parse_size(value)
    if size is None:
        raise ConfigError(f"{key} must be auto or a size such as 6GB, 6GiB or 512MB (more than 0 bytes), "
                          f"got {value!r}")
    return size


def available_memory() -> int:
    """Bytes the system can give this process now without swapping (Linux: ``MemAvailable``;
    elsewhere: free physical pages)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@functools.cache
def auto_memory_limit() -> int:
    """The ``auto`` limit on a CPU, read once per process (when the first attack starts): half the
    available memory, at most :data:`CPU_AUTO_CAP`. (On CUDA ``auto`` is the probed batch,
    :mod:`medis.attacks.batching.device_probe`.)"""
    return min(CPU_AUTO_CAP, available_memory() // 2)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ start/stop lines) inside the block; a no-op where
    it cannot be duplicated."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_allocated(run: Callable[[], None], device: torch.device | str) -> int:
    """The peak of tensor memory allocated on ``device`` while ``run()`` runs, above what was
    allocated before (bytes): CUDA's allocator statistics, elsewhere the profiler's record of every
    CPU allocation and free (``profile_memory``)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recorder:
        run()
    cpu = torch.autograd.DeviceType.CPU
    events = sorted((event.start_ns(), event.nbytes()) for event in recorder.profiler.kineto_results.events()
                    if event.name() == "[memory]" and event.device_type() == cpu)
    live = peak = 0
    for _, change in events:
        live += change
        peak = max(peak, live)
    return peak


@dataclass(frozen=True)
class StepCost:
    """The memory of one replica's step (module docstring), in bytes: ``per_pixel`` for every pixel
    of the image (the image, its gradient, the downscaling), ``per_loss_pixel`` for every pixel of
    the maps the losses read (the side outputs brought back to that size, the losses, their
    gradients), and ``fixed`` (the network's activations at its input size)."""

    per_pixel: float
    fixed: float
    per_loss_pixel: float = 0.0

    def __call__(self, pixels: int, loss_pixels: int | None = None) -> float:
        """Bytes of a step on an image of ``pixels`` whose losses read ``loss_pixels`` (default: all)."""
        return self.per_pixel * pixels + self.per_loss_pixel * (pixels if loss_pixels is None else loss_pixels) \
            + self.fixed


def line_through(sizes: Sequence[tuple[int, int]], peaks: Sequence[float]) -> StepCost:
    """The :class:`StepCost` line through the ``peaks`` (bytes) measured at two image ``sizes`` (the
    larger second), never below either of them."""
    (small, large) = (h * w for h, w in sizes)
    per_pixel = max(0.0, (peaks[1] - peaks[0]) / (large - small))
    return StepCost(per_pixel, max(0.0, peaks[0] - per_pixel * small))


def fit_step_cost(step: Callable[[tuple[int, int]], None], sizes: Sequence[tuple[int, int]],
                  device: torch.device | str) -> StepCost:
    """The :class:`StepCost` of ``step((H, W))`` (one replica at that image size) measured at two
    ``sizes`` (the larger second): :func:`line_through` their peaks."""
    return line_through(sizes, [peak_allocated(lambda size=size: step(size), device) for size in sizes])


def state_bytes(shape: Sequence[int], images: int, replicas: int, rule_state: Mapping[str, torch.Tensor],
                track_best: bool, element: int = 4) -> int:
    """Bytes of the engine's state for ``images`` same-size images of ``shape`` (C, H, W) and
    ``replicas`` replicas: per replica the current and chosen images (and the best one when
    ``track_best``), the reference mask (one byte a pixel) and the rule's state (``rule_state``:
    what the rule's ``init`` gives ONE replica of a 2×2 image, scaled to the shape); per image the
    clean image and its clean prediction."""
    channels, pixels = int(shape[0]), int(shape[1]) * int(shape[2])
    per_image = channels * pixels * element + pixels
    per_replica = (2 + int(track_best)) * channels * pixels * element + pixels
    per_replica += sum(int(value.nbytes) * pixels // 4 for value in rule_state.values() if value.dim() == 4)
    return images * per_image + replicas * per_replica


def limit_max_batch(limit: int, state: int, step: float, replicas: int, *, strict: bool,
                     describe: str) -> int:
    """The most replicas per step (1 to ``replicas``) with ``state + n·step <= limit``.

    Raises:
        MemoryLimitError: (``strict``: a limit the user gave) not even one replica fits; the message
            names ``describe`` (the image size), the bytes needed and what to change.
    """
    room = int((limit - state) // max(step, 1.0))
    if room < 1 and strict:
        raise MemoryLimitError(f"engine.memory_limit={format_bytes(limit)} cannot hold one replica of {describe}: the "
                          f"attack's state needs {format_bytes(state)} and one step {format_bytes(step)} more; "
                          f"raise engine.memory_limit, or set engine.loss_size (clean mode)")
    return max(1, min(replicas, room))
