"""Wrappers of a victim for the fast path (GPU): lower precision, channels-last memory and
``torch.compile``. All are off by default and all work WITHOUT touching the engine: each returns a
victim that :func:`medis.attacks.engine.run_attack` calls like any other (``victim(x)`` with x (R, 3, H, W) in [0, 1] -> :class:`~medis.models.frontend.VictimOutput`),
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
  min-max rescaling amplifies rounding). bf16 everywhere or nowhere: the real-pipeline verdicts
  (:attr:`AutocastVictim.real_pipeline`) and the transfer victim (the attack module wraps it with
  :func:`with_precision` too) run under the same autocast as the verdicts they are compared with, so
  "real ASR - ASR" measures the 8-bit saving alone (bench/bf16_verdicts.py counts the flips).
- :func:`with_memory_format`: the network's weights and input in ``torch.channels_last`` (NHWC), the
  layout that tensor-core convolutions want
  (https://pytorch.org/tutorials/intermediate/memory_format_tutorial.html).
- :func:`compiled`: ``torch.compile`` of the network; TorchDynamo captures the forward and
  AOTAutograd traces the joint forward/backward graph, so the backward pass to the input is compiled
  too (https://pytorch.org/docs/stable/torch.compiler.html); every call in one canonical form
  (:class:`~medis.models.compiled_net.CompiledNet`), so a run compiles one graph per victim and dtype.
- :func:`fast_victim`: the three above in a fixed order (layout, then compile, then precision).
- :class:`FastPath`: the ``engine`` config node's victim options, applied by :meth:`FastPath.wrap`.

The automatic replica batch (``engine.max_batch=auto``) is in :mod:`medis.attacks.batching.device_probe`.

The network-level options (layout, compile) need a victim with a ``model`` network, such as
:class:`~medis.models.frontend.Victim`; they return a shallow copy of the victim whose ``model`` is
the transformed network and leave the given victim as it was, except that channels-last converts the
SHARED weights in place (a layout change: the values stay, but the given victim may then pick
channels-last kernels too, with rounding-level differences; deep-copy it first to keep it apart).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from medis.errors import ConfigError
from medis.models.compiled_net import CompiledNet
from medis.models.frontend import VictimOutput

__all__ = ["AutocastVictim", "COMPILE_BACKENDS", "ChannelsLastNet", "FastPath", "PRECISIONS", "autocast_dtype", "compiled", "fast_victim",
           "output_to", "victim_precision", "with_memory_format", "with_network", "with_precision"]

VictimFn = Callable[[torch.Tensor], VictimOutput]
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp64": None}
"""``engine.precision`` -> the autocast dtype (``None``: no autocast). ``fp64`` runs no autocast: the
victim and the images are float64 throughout (:data:`FLOAT64`)."""
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")
"""``engine.compile_backend`` values (Dynamo's backends by name): ``inductor`` (the default: compiled
kernels), ``aot_eager`` (the same Dynamo and AOTAutograd graphs run by eager kernels: checks the
graphs cheaply, e.g. their count on a CPU), ``eager`` (Dynamo's graph only), ``cudagraphs``."""
FLOAT64 = "fp64"
"""The precision whose attack runs in float64: a victim converted to float64 and float64 images (the
attack module casts them), so that no result depends on the CPU's kernels (docs/performance.md)."""


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
                        tuple(p.to(dtype) for p in out.side_probs),
                        None if out.logit is None else out.logit.to(dtype))


class AutocastVictim(_VictimWrapper):
    """The victim run under ``torch.autocast(x.device.type, dtype)``, outputs back in float32.

    Args:
        victim: any victim, (R, 3, H, W) in [0, 1] -> :class:`VictimOutput` of (R, 1, H, W) maps.
        precision: the name of the setting (``bf16``), kept as ``self.precision`` (cache keys, reports).
        dtype: the autocast dtype (``torch.bfloat16``).

    Autocast runs convolutions and matrix products in ``dtype``; the input gradient comes back to the
    float32 input through autocast's differentiable casts. Calls of the wrapper and its
    :attr:`real_pipeline` (the engine's real-pipeline verdicts) run under autocast, so every verdict
    of a bf16 attack is a bf16 one; other methods reached through it (``forward_list``,
    ``side_logits``) are the wrapped victim's, in float32.
    """

    def __init__(self, victim: VictimFn, precision: str, dtype: torch.dtype) -> None:
        super().__init__(victim)
        self.precision = precision
        self.dtype = dtype

    def around(self, victim: VictimFn) -> "AutocastVictim":
        return AutocastVictim(victim, self.precision, self.dtype)

    def forward(self, images: torch.Tensor, *args: Any, **kwargs: Any) -> VictimOutput:
        """(R, 3, H, W) float32 -> :class:`VictimOutput` of float32 (R, 1, H, W) maps."""
        return self._under_autocast(self.victim, images, *args, **kwargs)

    @property
    def real_pipeline(self) -> Callable[..., VictimOutput]:
        """The wrapped victim's ``real_pipeline`` ((B, 3, H, W) in [0, 1] -> :class:`VictimOutput`,
        :meth:`~medis.models.frontend.Victim.real_pipeline`) under this autocast, maps in float32;
        missing (``AttributeError``) where the wrapped victim has none."""
        pipeline = getattr(self.victim, "real_pipeline")
        return lambda images, *args, **kwargs: self._under_autocast(pipeline, images, *args, **kwargs)

    def _under_autocast(self, call: Callable[..., VictimOutput], images: torch.Tensor, *args: Any,
                        **kwargs: Any) -> VictimOutput:
        with torch.autocast(device_type=images.device.type, dtype=self.dtype):
            out = call(images, *args, **kwargs)
        return output_to(out, torch.float32)


def with_precision(victim: VictimFn, precision: str) -> VictimFn:
    """The victim at ``precision`` (``engine.precision``).

    Args:
        victim: (R, 3, H, W) in [0, 1] -> :class:`VictimOutput`.
        precision: ``fp32`` (the victim itself, unchanged), ``bf16`` (an :class:`AutocastVictim`) or
            ``fp64`` (the victim converted to float64: give it float64 images).

    Raises:
        ConfigError: any other value (one line naming ``engine.precision`` and the valid values).
    """
    dtype = autocast_dtype(precision)
    if precision == FLOAT64:
        if not isinstance(victim, nn.Module):
            raise ConfigError(f"engine.precision={FLOAT64} needs a victim that is a network (nn.Module)")
        return victim.double()
    return victim if dtype is None else AutocastVictim(victim, precision, dtype)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """``engine.precision`` -> the autocast dtype (``None`` for fp32); ConfigError for other values."""
    if precision not in PRECISIONS:
        raise ConfigError(f"engine.precision={precision!r} must be one of {', '.join(PRECISIONS)}")
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
        victim: a victim with a ``model`` network (:class:`~medis.models.frontend.Victim`); the
            network is frozen in place (eval mode, no parameter gradients).
        mode: ``torch.compile``'s mode (``None``/``default``, ``reduce-overhead`` (CUDA graphs),
            ``max-autotune``, ...).
        backend: ``torch.compile``'s backend (``engine.compile_backend``: Inductor; ``aot_eager``
            traces the same graphs and compiles no kernels; tests pass an AOTAutograd backend that
            records the forward and backward graphs it is given).

    Returns:
        A copy of the victim (see :func:`with_network`) whose ``model`` is a
        :class:`~medis.models.compiled_net.CompiledNet`.

    Only the network is compiled: it always sees (R, 3, S, S) at the network size S, whatever the
    images' sizes (the differentiable resize and the fusion stay eager), so shapes vary in the
    replica count R alone. R does vary: the active replicas shrink as they finish (compaction) and a
    last chunk is smaller than ``max_batch``. The batch dimension is marked dynamic, so one graph
    with a symbolic batch serves every size (static shapes would recompile per size and fall back
    to eager after ``torch._dynamo.config.recompile_limit`` sizes; ``dynamic=True`` would make every
    dimension symbolic and tie a batch equal to another dimension to it). Every other difference
    between the network's calls (grad mode, the input's ``requires_grad`` and layout, a batch of
    one, the weights' ``requires_grad``) is removed by
    :class:`~medis.models.compiled_net.CompiledNet`, so a whole
    ``attack.py`` run compiles ONE graph per victim and dtype (a test counts Dynamo's graphs over a
    run, fp32 and bf16). The autocast state is part of the graph: under ``engine.precision=bf16``
    every call of the victim runs under autocast (:class:`AutocastVictim`), so the one graph is the
    bf16 one. The first call compiles: seconds for a small net, about 5 minutes for ``pranet_lite``
    on a 2-core CPU; Inductor's cache (/tmp/torchinductor_<user>) serves later runs.
    """
    net = _network(victim)
    layout = torch.channels_last if isinstance(net, ChannelsLastNet) else torch.contiguous_format
    return with_network(victim, CompiledNet(net, mode, backend, memory_format=layout))


def fast_victim(victim: VictimFn, *, channels_last: bool = False, compile: bool = False,
                compile_mode: str | None = None, precision: str = "fp32",
                compile_backend: str | Callable = "inductor") -> VictimFn:
    """The fast-path options applied to ``victim`` (all off: ``victim`` itself).

    Order: channels-last first (the layout change is inside what gets compiled), then
    ``torch.compile`` of the network, then autocast outermost (the compiled network is traced under
    the caller's autocast state, and the float32 cast of the outputs covers the resize and fusion).

    Args:
        victim: (R, 3, H, W) in [0, 1] -> :class:`VictimOutput`; a ``model`` network is needed for
            ``channels_last`` and ``compile``.
        channels_last, compile, compile_mode, compile_backend, precision: see
            :func:`with_memory_format`, :func:`compiled` and :func:`with_precision` (``precision`` is
            checked first).
    """
    autocast_dtype(precision)  # a bad value fails before any work
    victim = with_memory_format(victim, channels_last)
    if compile:
        victim = compiled(victim, compile_mode, compile_backend)
    return with_precision(victim, precision)


@dataclass(frozen=True)
class FastPath:
    """The victim options of the ``engine`` config node (all off by default).

    Attributes:
        precision: ``fp32`` or ``bf16`` (:func:`with_precision`).
        channels_last: the network in channels-last memory format (:func:`with_memory_format`).
        compile: ``torch.compile`` the network (:func:`compiled`), with ``compile_mode`` and
            ``compile_backend`` (one of :data:`COMPILE_BACKENDS`).
    """

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        autocast_dtype(self.precision)  # a bad value fails before any work
        for key in ("channels_last", "compile"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"engine.{key} must be true or false, got {getattr(self, key)!r}")
        if self.compile_backend not in COMPILE_BACKENDS:
            raise ConfigError(f"engine.compile_backend={self.compile_backend!r} must be one of "
                              f"{', '.join(COMPILE_BACKENDS)}")

    def wrap(self, victim: VictimFn) -> VictimFn:
        """``victim`` with these options (:func:`fast_victim`); itself when all are off."""
        return fast_victim(victim, channels_last=self.channels_last, compile=self.compile,
                           compile_mode=self.compile_mode, precision=self.precision,
                           compile_backend=self.compile_backend)
