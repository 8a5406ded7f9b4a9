"""Options for the engine's fast path (GPU): lower precision, channels-last memory, ``torch.compile``
and an automatic replica batch size. All are off by default and all work WITHOUT touching the
engine: each option returns a victim that :func:`medis.attacks.engine.run_attack` calls like any
other (``victim(x)`` with x (R, 3, H, W) in [0, 1] -> :class:`~medis.models.frontend.VictimOutput`),
whose ``model`` (the network, frozen by the engine) and ``fusion`` stay reachable.

- :func:`with_precision`: ``bf16`` runs the victim under ``torch.autocast`` (bfloat16 matmuls and
  convolutions, float32 accumulation; https://pytorch.org/docs/stable/amp.html) and casts every map
  of the output back to float32, so that scores, losses and metrics stay float32. bfloat16 keeps
  float32's exponent range, so no loss scaling is needed (Kalamkar et al., "A Study of BFLOAT16 for
  Deep Learning Training", 2019). Its 8-bit mantissa moves the maps by ~1e-2: harmless for a trained
  network (a small U-Net fitted briefly to synthetic lesions, three sets of 4 images x 6 paper
  losses: all 72 paper-mode success decisions match float32, a few distortions differ by one step;
  in clean mode 71 of 72, the one flip a replica whose float32 score ended 0.002 from the threshold),
  not for maps that sit near 0.5 (an untrained network under the paper fusion, whose per-image
  min-max rescaling amplifies rounding).
- :func:`with_memory_format`: the network's weights and input in ``torch.channels_last`` (NHWC), the
  layout that tensor-core convolutions want
  (https://pytorch.org/tutorials/intermediate/memory_format_tutorial.html).
- :func:`compiled`: ``torch.compile`` of the network; TorchDynamo captures the forward and
  AOTAutograd traces the joint forward/backward graph, so the backward pass to the input is compiled
  too (https://pytorch.org/docs/stable/torch.compiler.html).
- :func:`fast_victim`: the three above in a fixed order (layout, then compile, then precision).
- :func:`search_max_batch` / :func:`auto_max_batch`: the largest replica batch whose forward, losses
  and input gradient fit in the GPU's memory (doubling, then bisection), with a safety margin,
  cached per model, image size, losses, precision and device.

The network-level options (layout, compile) need a victim with a ``model`` network, such as
:class:`~medis.models.frontend.Victim`; they return a shallow copy of the victim whose ``model`` is
the transformed network and leave the given victim as it was, except that channels-last converts the
SHARED weights in place (a layout change: the values stay, but the given victim may then pick
channels-last kernels too, with rounding-level differences; deep-copy it first to keep it apart).
"""

from __future__ import annotations

import contextlib
import copy
import gc
from typing import Any, Callable, Iterable, Mapping, MutableMapping, Sequence

import torch
from torch import nn

from medis.attacks.engine import frozen, replica_losses
from medis.errors import ConfigError, MedisError
from medis.losses import LossContext
from medis.models.frontend import VictimOutput

VictimFn = Callable[[torch.Tensor], VictimOutput]
LossFn = Callable[[VictimOutput, torch.Tensor, LossContext], torch.Tensor]
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
"""``attack.precision`` -> the autocast dtype (``None``: no autocast, plain float32)."""

MAX_BATCH_CACHE: dict[tuple, tuple[int, int]] = {}
"""(largest replica batch that ran, the ``upper`` it was searched up to) found by :func:`auto_max_batch`,
per :func:`max_batch_key`."""


class MaxBatchError(MedisError, RuntimeError):
    """Not even one replica's forward, loss and input gradient fit in the device's memory."""


# --------------------------------------------------------------------------- victim wrappers


class _VictimWrapper(nn.Module):
    """Base of the victim wrappers: an ``nn.Module`` (so that ``.to()``, ``train()``/``eval()`` and a
    Lightning module holding it reach the wrapped victim) whose every other attribute (``fusion``,
    ``size``, ``preprocess``, ...) is the wrapped victim's.

    ``model`` is the wrapped victim's network (the engine freezes it for the attack), or the wrapped
    victim itself when that is a bare ``nn.Module``; it is missing otherwise, as for the victim.
    """

    def __init__(self, victim: VictimFn) -> None:
        super().__init__()
        self.victim = victim  # a sub-module when the victim is a module

    @property
    def model(self) -> nn.Module:
        inner = getattr(self.victim, "model", None)
        if isinstance(inner, nn.Module):
            return inner
        if isinstance(self.victim, nn.Module):
            return self.victim
        raise AttributeError(f"{type(self.victim).__name__} has no network (model)")

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # parameters, buffers, sub-modules (``victim``)
        except AttributeError:
            if name == "victim":  # not set yet (copy, unpickling): no recursion
                raise
        return getattr(self.victim, name)

    def around(self, victim: VictimFn) -> "_VictimWrapper":
        """The same wrapper around another victim."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, *args: Any, **kwargs: Any) -> VictimOutput:
        return self.victim(images, *args, **kwargs)


def output_to(out: VictimOutput, dtype: torch.dtype) -> VictimOutput:
    """Every map of ``out`` (each (R, 1, H, W)) cast to ``dtype`` (differentiable casts)."""
    return VictimOutput(tuple(z.to(dtype) for z in out.side_logits), out.prob.to(dtype),
                        tuple(p.to(dtype) for p in out.side_probs))


class AutocastVictim(_VictimWrapper):
    """The victim run under ``torch.autocast(x.device.type, dtype)``, outputs back in float32.

    Args:
        victim: any victim, (R, 3, H, W) in [0, 1] -> :class:`VictimOutput` of (R, 1, H, W) maps.
        precision: the name of the setting (``bf16``), kept as ``self.precision`` (cache keys, reports).
        dtype: the autocast dtype (``torch.bfloat16``).

    Autocast runs convolutions and matrix products in ``dtype``; the input gradient comes back to the
    float32 input through autocast's differentiable casts. Only calls of the wrapper run under
    autocast: methods reached through it (``forward_list``, ``side_logits``) are the wrapped victim's.
    """

    def __init__(self, victim: VictimFn, precision: str, dtype: torch.dtype) -> None:
        super().__init__(victim)
        self.precision = precision
        self.dtype = dtype

    def around(self, victim: VictimFn) -> "AutocastVictim":
        return AutocastVictim(victim, self.precision, self.dtype)

    def forward(self, images: torch.Tensor, *args: Any, **kwargs: Any) -> VictimOutput:
        """(R, 3, H, W) float32 -> :class:`VictimOutput` of float32 (R, 1, H, W) maps."""
        with torch.autocast(device_type=images.device.type, dtype=self.dtype):
            out = self.victim(images, *args, **kwargs)
        return output_to(out, torch.float32)


def with_precision(victim: VictimFn, precision: str) -> VictimFn:
    """The victim at ``precision`` (``attack.precision``).

    Args:
        victim: (R, 3, H, W) in [0, 1] -> :class:`VictimOutput`.
        precision: ``fp32`` (the victim itself, unchanged) or ``bf16`` (an :class:`AutocastVictim`).

    Raises:
        ConfigError: any other value (one line naming ``attack.precision`` and the valid values).
    """
    dtype = autocast_dtype(precision)
    return victim if dtype is None else AutocastVictim(victim, precision, dtype)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """``attack.precision`` -> the autocast dtype (``None`` for fp32); ConfigError for other values."""
    if precision not in PRECISIONS:
        raise ConfigError(f"attack.precision={precision!r} must be one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def victim_precision(victim: VictimFn) -> str:
    """The precision a victim runs at: its ``precision`` attribute, else ``fp32``."""
    return str(getattr(victim, "precision", "fp32"))


class ChannelsLastNet(nn.Module):
    """``net`` with its weights and its input in ``torch.channels_last`` (NHWC strides).

    Args:
        net: (B, C, S, S) -> one logit map (B, 1, S, S) or a tuple of them; converted IN PLACE
            (``nn.Module.to(memory_format=...)`` re-strides the 4-D weights; values are unchanged).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)
        self.train(net.training)  # the net's mode (the engine restores the wrapper's mode, and so the net's)

    def forward(self, x: torch.Tensor) -> Any:
        """(B, C, S, S) in any layout -> the net's outputs (computed from a channels-last copy)."""
        return self.net(x.contiguous(memory_format=torch.channels_last))


def _network(victim: VictimFn) -> nn.Module:
    """The victim's ``model`` network; a clear error for victims without one."""
    net = getattr(victim, "model", None)
    if not isinstance(victim, nn.Module) or not isinstance(net, nn.Module):
        raise TypeError(f"this option needs a victim with a `model` network (medis.models.frontend.Victim), "
                        f"got {type(victim).__name__}")
    return net


def with_network(victim: nn.Module, net: nn.Module) -> nn.Module:
    """A shallow copy of ``victim`` whose ``model`` is ``net``; ``victim`` itself is left as it was.

    The copy shares every other sub-module, parameter and buffer (``mean``, ``std``) with ``victim``;
    only its own module/parameter/buffer tables are new, so that setting ``model`` on it does not
    reach the original. A wrapper of this module (:class:`AutocastVictim`) is rebuilt around a copy
    of the victim it wraps.
    """
    if isinstance(victim, _VictimWrapper):
        return victim.around(with_network(victim.victim, net))
    twin = copy.copy(victim)
    for table in ("_modules", "_parameters", "_buffers"):
        twin.__dict__[table] = dict(victim.__dict__[table])
    twin.model = net
    return twin


def with_memory_format(victim: VictimFn, channels_last: bool) -> VictimFn:
    """The victim with its network in channels-last layout (weights and input), or unchanged.

    Args:
        victim: a victim with a ``model`` network (:class:`~medis.models.frontend.Victim`).
        channels_last: ``False`` returns ``victim`` itself.

    Returns:
        A copy of the victim (see :func:`with_network`) whose ``model`` is a :class:`ChannelsLastNet`;
        the network's weights are converted in place, so the given victim runs on them too.
    """
    if not channels_last:
        return victim
    return with_network(victim, ChannelsLastNet(_network(victim)))


def compiled(victim: VictimFn, mode: str | None = None, backend: str | Callable = "inductor") -> VictimFn:
    """The victim with its network compiled by ``torch.compile`` (forward and input backward).

    Args:
        victim: a victim with a ``model`` network (:class:`~medis.models.frontend.Victim`).
        mode: ``torch.compile``'s mode (``None``/``default``, ``reduce-overhead`` (CUDA graphs),
            ``max-autotune``, ...).
        backend: ``torch.compile``'s backend (Inductor; tests pass an AOTAutograd backend that
            records the forward and backward graphs it is given).

    Returns:
        A copy of the victim (see :func:`with_network`) whose ``model`` is the compiled network.

    Only the network is compiled: it always sees (R, 3, S, S) at the network size S, whatever the
    images' sizes (the differentiable resize and the fusion stay eager), so shapes vary in the
    replica count R alone. R does vary: the active replicas shrink as they finish (compaction) and a
    last chunk is smaller than ``max_batch``. ``dynamic=True`` therefore compiles one graph with a
    symbolic batch instead of one per batch size (``dynamic=None`` would recompile once before turning
    dynamic; ``False`` would recompile per size and fall back to eager after
    ``torch._dynamo.config.recompile_limit`` sizes). Sizes 0 and 1 are still specialised (one more
    graph for R = 1), and some CPU convolution kernels split the batch into a few ranges; eval/train
    mode and the autocast state are guarded too (a bf16 call compiles its own graph). The first call
    compiles: seconds for a small net, about 5 minutes for ``pranet_lite`` on a 2-core CPU (and as
    long again for a recompilation); Inductor's cache (/tmp/torchinductor_<user>) serves later runs.
    """
    net = _network(victim)
    return with_network(victim, torch.compile(net, mode=mode, dynamic=True, backend=backend))


def fast_victim(victim: VictimFn, *, channels_last: bool = False, compile: bool = False,
                compile_mode: str | None = None, precision: str = "fp32") -> VictimFn:
    """The fast-path options applied to ``victim`` (all off: ``victim`` itself).

    Order: channels-last first (the layout change is inside what gets compiled), then
    ``torch.compile`` of the network, then autocast outermost (the compiled network is traced under
    the caller's autocast state, and the float32 cast of the outputs covers the resize and fusion).

    Args:
        victim: (R, 3, H, W) in [0, 1] -> :class:`VictimOutput`; a ``model`` network is needed for
            ``channels_last`` and ``compile``.
        channels_last, compile, compile_mode, precision: see :func:`with_memory_format`,
            :func:`compiled` and :func:`with_precision` (``precision`` is checked first).
    """
    autocast_dtype(precision)  # a bad value fails before any work
    victim = with_memory_format(victim, channels_last)
    if compile:
        victim = compiled(victim, compile_mode)
    return with_precision(victim, precision)


# --------------------------------------------------------------------------- automatic max_batch


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
                      device: torch.device | str) -> Callable[[int], None]:
    """One engine step at replica batch n, as a function of n (raises ``torch.OutOfMemoryError``).

    The step is the engine's chunk: a forward of n random (n, C, H, W) images with input gradient
    enabled, the K losses on consecutive blocks of about n/K rows each (the engine's loss-major
    replicas) against a random (n, 1, H, W) mask, one backward to the input.
    Call it with the network frozen (:func:`medis.attacks.engine.frozen`), as the engine does.
    """
    device = torch.device(device)

    def step(n: int) -> None:
        generator = torch.Generator().manual_seed(n)
        x = torch.rand(n, *image_shape, generator=generator).to(device).requires_grad_(True)
        reference = (torch.rand(n, 1, *image_shape[1:], generator=generator) > 0.5).float().to(device)
        loss_of = torch.arange(n) * len(loss_fns) // n
        losses = replica_losses(victim(x), reference, loss_of, loss_fns, LossContext())
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


def fits_in_memory(step: Callable[[int], None], device: torch.device | str) -> Callable[[int], bool]:
    """``fits(n)``: whether ``step(n)`` runs without ``torch.OutOfMemoryError``.

    The error (and with it its traceback's frames, which hold the step's tensors) is dropped before
    the device cache is emptied, after every try.
    """
    device = torch.device(device)

    def fits(n: int) -> bool:
        try:
            step(n)
            ok = True
        except torch.OutOfMemoryError:
            ok = False
        _release(device, failed=not ok)
        return ok

    return fits


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
                  device: torch.device | str) -> tuple:
    """The cache key of :func:`auto_max_batch`: (network signature (classes incl. the layout and
    compile wrappers, parameter count, weight dtype), network input size, image shape (C, H, W),
    loss names (so their number too), precision, device)."""
    model = getattr(victim, "model", victim)
    signature = _module_signature(model) if isinstance(model, nn.Module) else (type(victim).__qualname__,)
    size = getattr(victim, "size", None)
    return (signature, tuple(size) if isinstance(size, (tuple, list)) else size, tuple(int(s) for s in image_shape),
            tuple(loss_names), victim_precision(victim), str(torch.device(device)))


def auto_max_batch(victim: VictimFn, loss_fns: Mapping[str, LossFn], image_shape: Sequence[int],
                   device: torch.device | str, *, upper: int = 1024, margin: float = 0.9,
                   cache: MutableMapping[tuple, tuple[int, int]] | None = None,
                   probe_devices: Sequence[str] = ("cuda",), step: Callable[[int], None] | None = None) -> int | None:
    """The replica batch (``AttackConfig.max_batch``) that fits in the device's memory.

    On a device type outside ``probe_devices`` (by default anything but CUDA) returns ``None``
    without probing: all active replicas in one pass. On CUDA, :func:`search_max_batch` tries one
    engine step (:func:`attack_step_probe`: forward, per-replica losses, input gradient) at batch
    sizes up to ``upper``, the network frozen as in the engine, catching ``torch.OutOfMemoryError``
    and emptying the CUDA cache between tries. The largest batch that ran is cached under
    :func:`max_batch_key` (so the search runs once per model, image size, losses, precision and
    device; again only if it stopped at its ``upper`` and a larger one is asked for) and returned
    times ``margin`` (at least 1).

    The margin covers what the probe does not hold: the engine's per-replica state (start, current
    and chosen images, momentum: about four (3, H, W) float32 tensors per replica of the whole
    batch, not only of the chunk), the allocator's fragmentation, and other work on the device.

    Args:
        victim: (R, 3, H, W) in [0, 1] -> :class:`VictimOutput` (wrappers of this module included).
        loss_fns: ``{name: fn(VictimOutput, reference (R, 1, H, W), LossContext) -> (R,)}``
            (:func:`medis.losses.build_loss`).
        image_shape: (C, H, W) of the images (the original size, as the engine gets them).
        device: where the attack runs.
        upper: the largest batch tried.
        margin: fraction of the largest batch that ran which is returned (0 < margin <= 1).
        cache: ``{key: (found, upper searched)}`` (default: the module's :data:`MAX_BATCH_CACHE`).
        probe_devices: device types on which to probe (tests add ``cpu``).
        step: ``step(n)`` runs one step at batch n and raises ``torch.OutOfMemoryError`` if it does not
            fit (default: :func:`attack_step_probe` of this victim and these losses).

    Raises:
        ValueError: ``margin`` outside (0, 1] or ``upper`` < 1.
        MaxBatchError: not even one replica fits.
    """
    device = torch.device(device)
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    if device.type not in probe_devices:
        return None
    cache = MAX_BATCH_CACHE if cache is None else cache
    key = max_batch_key(victim, loss_fns, image_shape, device)
    found, searched = cache.get(key, (0, 0))
    if found == searched < upper:  # never searched, or capped by a smaller upper: the limit is unknown
        step = step or attack_step_probe(victim, loss_fns, image_shape, device)
        with _frozen(getattr(victim, "model", victim)):
            try:
                found, searched = search_max_batch(fits_in_memory(step, device), upper), upper
            except MaxBatchError as err:
                raise MaxBatchError(f"not even 1 replica of a {'x'.join(map(str, image_shape))} image with losses "
                                    f"{', '.join(loss_fns)} fits in {device}'s memory "
                                    f"(precision {victim_precision(victim)})") from err
        cache[key] = (found, searched)
    return max(1, int(min(found, upper) * margin))


def _frozen(model: Any) -> contextlib.AbstractContextManager:
    """The engine's :func:`~medis.attacks.engine.frozen` for a network, a no-op for anything else."""
    return frozen(model) if isinstance(model, nn.Module) else contextlib.nullcontext()
