"""The automatic replica batch (``engine.max_batch=auto``): the largest batch of replicas whose
forward pass, losses and input gradient fit in the GPU's memory.

Doubling, then bisection (:func:`search_max_batch`), catching ``torch.OutOfMemoryError``, with a
safety margin, cached per model, image size, losses, precision and device (:func:`auto_max_batch`).
On a CPU (or any device but CUDA) all active replicas go at once.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Callable, ContextManager, Iterable, Iterator, Mapping, MutableMapping, Sequence

import torch
from torch import nn

from medis.attacks.batching.loss_size import loss_shape
from medis.attacks.engine.replicas import LossFn, replica_losses
from medis.errors import MedisError
from medis.losses import LossContext
from medis.models.frontend import VictimOutput, frozen
from medis.models.wrappers import ChannelsLastNet, victim_precision

__all__ = ["ALLOCATION_FAILURES", "AUTO", "MAX_BATCH_CACHE", "MaxBatchError", "PROBE_MARGIN", "auto_max_batch",
           "does_not_fit", "fits_in_memory", "held_on_device", "max_batch_key", "search_max_batch"]

VictimFn = Callable[[torch.Tensor], VictimOutput]
PROBE_MARGIN = 0.9
"""Share of the largest probed batch that :func:`auto_max_batch` returns (room for the allocator's
fragmentation and other work on the device; the replicas' state is held during the probe)."""
AUTO = "auto"
"""``engine.max_batch`` value: the largest replica batch that fits (CUDA; all replicas on CPU)."""
MAX_BATCH_CACHE: dict[tuple, tuple[int, int, int]] = {}
"""(largest replica batch that ran, the ``upper`` it was searched up to, the bytes held beside it)
found by :func:`auto_max_batch`, per :func:`max_batch_key`."""


class MaxBatchError(MedisError, RuntimeError):
    """Not even one replica's forward, loss and input gradient fit in the device's memory."""


def search_max_batch(fits: Callable[[int], bool], upper: int) -> int:
    """The largest n in [1, upper] with ``fits(n)``, for a ``fits`` that holds up to a threshold.

    Doubles n from 1 until ``fits`` fails or n reaches ``upper`` (n = upper is tried), then bisects
    between the last success and the first failure: about 2·log2(answer) calls.

    Raises:
        ValueError: ``upper`` < 1.
        MaxBatchError: even ``fits(1)`` fails.
    """
    if upper < 1:
        raise ValueError(f"upper must be >= 1, got {upper}")
    if not fits(1):
        raise MaxBatchError("not even a batch of 1 replica fits in memory")
    good, bad = 1, None
    while good < upper:
        n = min(2 * good, upper)
        if not fits(n):
            bad = n
            break
        good = n
    if bad is None:
        return good
    while bad - good > 1:
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good


def attack_step_probe(victim: VictimFn, loss_fns: Mapping[str, LossFn], image_shape: Sequence[int],
                      device: torch.device | str, loss_size: int | None = None,
                      dtype: torch.dtype = torch.float32) -> Callable[[int], None]:
    """One engine step at replica batch n, as a function of n (raises ``torch.OutOfMemoryError``).

    The step is the engine's chunk: a forward of n random (n, C, H, W) images, drawn on ``device``, with input gradient
    enabled, the K losses on consecutive blocks of about n/K rows each (the engine's loss-major
    replicas) against a random (n, 1, h, w) mask (h, w: the loss resolution,
    :func:`~medis.attacks.batching.loss_size.loss_shape` of ``loss_size``), one backward to the input.
    The images are of ``dtype`` (the attacked images').
    Call it with the network frozen (:func:`medis.models.frontend.frozen`), as the engine does.
    """
    device = torch.device(device)
    full = (int(image_shape[1]), int(image_shape[2]))
    size = loss_shape(full, loss_size)

    def step(n: int) -> None:
        # drawn on the device: a trial batch never passes through host memory (at 16 Mpx, n = 256
        # would be 51 GB there)
        generator = torch.Generator(device=device).manual_seed(n)
        x = torch.rand(n, *image_shape, generator=generator, dtype=dtype, device=device).requires_grad_(True)
        reference = (torch.rand(n, 1, *size, generator=generator, device=device) > 0.5).to(dtype)
        loss_of = torch.arange(n) * len(loss_fns) // n
        with torch.enable_grad():  # as the engine: also inside a test loop's no_grad
            out = victim(x) if size == full else victim(x, size)
            losses = replica_losses(out, reference, loss_of, loss_fns, LossContext())
            torch.autograd.grad(losses.sum(), x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def _release(device: torch.device, failed: bool) -> None:
    """Give cached, now unused blocks back to the device (CUDA), so the next try starts clean; after a
    failure, first collect whatever the failed step left in reference cycles."""
    if device.type == "cuda":
        if failed:
            gc.collect()
        torch.cuda.empty_cache()


ALLOCATION_FAILURES = ("out of memory", "ALLOC_FAILED", "canUse32BitIndexMath", "32-bit index",
                       "CUDNN_STATUS_NOT_SUPPORTED", "CUBLAS_STATUS_NOT_SUPPORTED", "too large to fit")
"""Words of the ``RuntimeError`` s by which CUDA libraries say a batch is too big: cuBLAS and cuDNN
workspace allocation failures (``CUBLAS_STATUS_ALLOC_FAILED``, ``CUDNN_STATUS_ALLOC_FAILED``), the
32-bit index limit of some kernels, cuDNN's refusal of an input too large for any algorithm."""


def does_not_fit(err: BaseException) -> bool:
    """Whether ``err`` says the step was too big for the device (``torch.OutOfMemoryError``, or a
    ``RuntimeError`` of :data:`ALLOCATION_FAILURES`), rather than that the code is wrong."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and not isinstance(err, MedisError) and any(
        words in str(err) for words in ALLOCATION_FAILURES)


def fits_in_memory(step: Callable[[int], None], device: torch.device | str) -> Callable[[int], bool]:
    """``fits(n)``: whether ``step(n)`` runs without an allocation failure (:func:`does_not_fit`);
    any other error propagates.

    The error (and with it its traceback's frames, which hold the step's tensors) is dropped before
    the device cache is emptied, after every try.
    """
    device = torch.device(device)

    def fits(n: int) -> bool:
        try:
            step(n)
            ok = True
        except RuntimeError as err:  # torch.OutOfMemoryError is one
            if not does_not_fit(err):
                raise
            ok = False
        _release(device, failed=not ok)
        return ok

    return fits


@contextlib.contextmanager
def held_on_device(nbytes: int, device: torch.device) -> Iterator[None]:
    """``nbytes`` bytes allocated on ``device`` for the duration of the block (the replicas' state,
    which the engine allocates before its first step, so that the probe measures what is left).

    Raises:
        MaxBatchError: the block alone does not fit (an allocation failure, :func:`does_not_fit`).
    """
    try:
        block = torch.empty(max(int(nbytes), 0), dtype=torch.uint8, device=device)
    except RuntimeError as err:
        if not does_not_fit(err):
            raise
        _release(device, failed=True)
        raise MaxBatchError(f"the attack's state ({nbytes / 2**30:.2f} GiB) alone does not fit in {device}'s "
                            f"memory") from None
    try:
        yield
    finally:
        del block
        _release(device, failed=False)


def _module_signature(module: nn.Module) -> tuple:
    """What determines a network's memory: its wrappers' and its own class, parameter count, dtype."""
    names = []
    while True:
        names.append(type(module).__qualname__)
        inner = getattr(module, "_orig_mod", None)  # torch.compile's OptimizedModule
        if inner is None and isinstance(module, ChannelsLastNet):
            inner = module.net
        if not isinstance(inner, nn.Module):
            break
        module = inner
    params = list(module.parameters())
    return "/".join(names), sum(p.numel() for p in params), str(params[0].dtype) if params else None


def max_batch_key(victim: VictimFn, loss_names: Iterable[str], image_shape: Sequence[int],
                  device: torch.device | str, loss_size: int | None = None) -> tuple:
    """The cache key of :func:`auto_max_batch`: (network signature (classes incl. the layout and
    compile wrappers, parameter count, weight dtype), network input size, image shape (C, H, W),
    loss names (so their number too), precision, device, loss resolution)."""
    model = getattr(victim, "model", victim)
    signature = _module_signature(model) if isinstance(model, nn.Module) else (type(victim).__qualname__,)
    size = getattr(victim, "size", None)
    return (signature, tuple(size) if isinstance(size, (tuple, list)) else size, tuple(int(s) for s in image_shape),
            tuple(loss_names), victim_precision(victim), str(torch.device(device)), loss_size)


def auto_max_batch(victim: VictimFn, loss_fns: Mapping[str, LossFn], image_shape: Sequence[int],
                   device: torch.device | str, *, upper: int = 1024, margin: float = PROBE_MARGIN,
                   cache: MutableMapping[tuple, tuple[int, int, int]] | None = None,
                   probe_devices: Sequence[str] = ("cuda",), step: Callable[[int], None] | None = None,
                   loss_size: int | None = None, reserve: int = 0,
                   hold: Callable[[int, torch.device], ContextManager] = held_on_device) -> int | None:
    """The replica batch (``EngineOptions.max_batch``) that fits in the device's memory.

    On a device type outside ``probe_devices`` (by default anything but CUDA) returns ``None``
    without probing: all active replicas in one pass. On CUDA, :func:`search_max_batch` tries one
    engine step (:func:`attack_step_probe`: forward, per-replica losses, input gradient) at batch
    sizes up to ``upper``, the network frozen as in the engine, catching allocation failures
    (:func:`does_not_fit`) and emptying the CUDA cache between tries, while ``reserve`` bytes are
    held on the device (``hold``: the replicas' state, :func:`~medis.attacks.batching.memory.state_bytes`,
    which the engine allocates before its first step and keeps to its last: the probe measures the
    room left beside it, not the empty device's). The largest batch that ran is cached under
    :func:`max_batch_key` (so the search runs once per model, image size, losses, precision and
    device; again only if it stopped at its ``upper`` and a larger one is asked for, or if it held
    less than ``reserve``) and returned times ``margin`` (at least 1): the margin covers the
    allocator's fragmentation and other work on the device.

    Args:
        victim: (R, 3, H, W) in [0, 1] -> :class:`VictimOutput` (wrappers of this module included).
        loss_fns: ``{name: fn(VictimOutput, reference (R, 1, H, W), LossContext) -> (R,)}``
            (:func:`medis.losses.build_loss`).
        image_shape: (C, H, W) of the images (the original size, as the engine gets them).
        device: where the attack runs.
        upper: the largest batch tried.
        margin: fraction of the largest batch that ran which is returned (0 < margin <= 1).
        cache: ``{key: (found, upper searched, bytes held)}`` (default: the module's :data:`MAX_BATCH_CACHE`).
        probe_devices: device types on which to probe (tests add ``cpu``).
        step: ``step(n)`` runs one step at batch n and raises ``torch.OutOfMemoryError`` (or another
            allocation failure, :func:`does_not_fit`) if it does not fit (default:
            :func:`attack_step_probe` of this victim and these losses).
        loss_size: the engine's loss resolution (``engine.loss_size``).
        reserve: bytes to hold on the device while probing (the replicas' state).
        hold: ``hold(nbytes, device)``, a context manager holding them (default :func:`held_on_device`;
            tests pass a faked device memory).

    Raises:
        ValueError: ``margin`` outside (0, 1] or ``upper`` < 1.
        MaxBatchError: not even one replica fits (beside the reserve), or the reserve alone does not.
    """
    device = torch.device(device)
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    if device.type not in probe_devices:
        return None
    cache = MAX_BATCH_CACHE if cache is None else cache
    key = max_batch_key(victim, loss_fns, image_shape, device, loss_size)
    found, searched, held = cache.get(key, (0, 0, 0))
    if found == searched < upper or held < reserve:  # never searched, capped by a smaller upper, or with less held
        step = step or attack_step_probe(victim, loss_fns, image_shape, device, loss_size)
        with frozen(getattr(victim, "model", victim)), hold(reserve, device):
            try:
                found, searched, held = search_max_batch(fits_in_memory(step, device), upper), upper, reserve
            except MaxBatchError as err:
                raise MaxBatchError(f"not even 1 replica of a {'x'.join(map(str, image_shape))} image with losses "
                                    f"{', '.join(loss_fns)} fits in {device}'s memory "
                                    f"(precision {victim_precision(victim)}) beside the attack's state of "
                                    f"{reserve / 2**30:.2f} GiB") from err
        cache[key] = (found, searched, held)
    return max(1, int(min(found, upper) * margin))
