"""A CPU stand-in for an accelerator's host-device boundary, to count what would synchronise.

On a CUDA device, every read of a device tensor's values by the host (``.item()``, ``bool(t)``,
``.tolist()``, ``.cpu()``, ``torch.equal``, and ops whose output size depends on the values:
``nonzero``, boolean-mask indexing, ``masked_select``, ``unique``, ``bincount``) waits for the device
to finish its queued work; so does a blocking copy of a host tensor to the device (``.to(device)``
without ``non_blocking``, an index tensor on the host used on a device tensor). On a CPU-only machine
every tensor is on the host, so nothing can be measured directly.

:class:`SimulatedDevice` is a ``TorchFunctionMode`` that keeps the distinction itself: a tensor is
"on the host" when it was made by a factory without a ``device`` argument (``torch.arange(n)``,
``torch.tensor(list)``), by ``.cpu()``, or by an op on host tensors only (``.to(device)`` of any
device, the CPU included, stands for an upload: on this machine the engine's device IS the CPU); every other
tensor (the images given to the engine, a model's weights, factories given ``device=``, anything
computed from one of them) is "on the device". It records each device-to-host read and each blocking
host-to-device copy with its call site, so a test can count them per engine step.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

Tensor = torch.Tensor

READS = {Tensor.item, Tensor.tolist, Tensor.__bool__, Tensor.__int__, Tensor.__float__, Tensor.__index__,
         Tensor.numpy, Tensor.__array__, Tensor.cpu, torch.equal, Tensor.equal, torch.allclose, Tensor.allclose,
         Tensor.__contains__, Tensor.nonzero, torch.nonzero, torch.masked_select, Tensor.masked_select, torch.unique,
         Tensor.unique, torch.unique_consecutive, Tensor.unique_consecutive, torch.bincount, Tensor.bincount,
         torch.argwhere, Tensor.argwhere, torch.is_nonzero, Tensor.is_nonzero, Tensor.__format__, Tensor.__repr__}
"""Functions that read a device tensor's values on the host (or size their output by them)."""
MOVES = {Tensor.to, Tensor.cuda, Tensor.type_as}
INDEXING = {Tensor.__getitem__, Tensor.__setitem__, Tensor.index_put_, Tensor.index_put, torch.index_put}
FACTORIES_FROM_DATA = {torch.tensor, torch.as_tensor}


@dataclass
class Event:
    """One synchronising call: ``kind`` ("read" or "upload"), the function's name, where it was called."""

    kind: str
    name: str
    site: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name} at {self.site}"


@dataclass
class SimulatedDevice(TorchFunctionMode):
    """Records the calls that would synchronise a real accelerator (module docstring).

    Attributes:
        events: every read and blocking upload, in call order.
        source: only call sites in files whose path contains this string are recorded (the code
            under test), so that the test's own checks are not counted.
    """

    source: str = "medis"
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self._host = WeakIdKeyDictionary()

    def on_host(self, tensor: torch.Tensor) -> bool:
        return tensor in self._host

    def _record(self, kind: str, func) -> None:
        frames = [frame for frame in traceback.extract_stack()[:-2] if self.source in frame.filename
                  and "simulated_device" not in frame.filename]
        if frames:
            frame = frames[-1]
            self.events.append(Event(kind, getattr(func, "__name__", str(func)), f"{frame.filename}:{frame.lineno}"))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [leaf for leaf in tree_flatten((args, kwargs))[0] if isinstance(leaf, torch.Tensor)]
        device_inputs = [t for t in inputs if not self.on_host(t)]
        host_inputs = [t for t in inputs if self.on_host(t) and t.dim() > 0]
        if device_inputs and (func in READS or _sized_by_values(func, args, kwargs)
                              or (func in INDEXING and _masks(args[1:2]))):
            self._record("read", func)
        out = func(*args, **kwargs)
        if func in MOVES and inputs and self.on_host(inputs[0]):
            target = _target_device(args[1:], kwargs, self)
            if target == "device":
                if not kwargs.get("non_blocking", False):
                    self._record("upload", func)
                return _fresh(out, inputs[0])
            return self._mark(out, True)
        if func in MOVES and inputs and _target_device(args[1:], kwargs, self) == "host":
            if not self.on_host(inputs[0]):
                self._record("read", func)
            return self._mark(_fresh(out, inputs[0]), True)
        if func is Tensor.cpu:
            return self._mark(_fresh(out, inputs[0]), True)
        device = kwargs.get("device")
        if not inputs:  # a factory: on the device only where it is told so
            if device is not None and func in FACTORIES_FROM_DATA:
                self._record("upload", func)
            return self._mark(out, device is None)
        if device is not None:  # as_tensor(t, device=...), zeros_like(t, device=...), t.new_zeros(..., device=...)
            if host_inputs and func in FACTORIES_FROM_DATA:
                self._record("upload", func)
            return self._mark(out, False)
        if device_inputs and host_inputs and func not in MOVES:
            self._record("upload", func)  # a host tensor used with device tensors is copied first
        return self._mark(out, not device_inputs)

    def _mark(self, out, host: bool):
        if host:
            for leaf in tree_flatten(out)[0]:
                if isinstance(leaf, torch.Tensor):
                    self._host[leaf] = True
        return out


def _target_device(args, kwargs, mode: SimulatedDevice) -> str | None:
    """"host", "device" or ``None`` (a dtype-only conversion) for the arguments of ``Tensor.to``."""
    for value in (*args, kwargs.get("device"), kwargs.get("other")):
        if isinstance(value, torch.Tensor):
            return "host" if mode.on_host(value) else "device"
        if isinstance(value, (torch.device, str)):
            return "host" if str(value) == "host" else "device"
    return None


def _sized_by_values(func, args, kwargs) -> bool:
    """Whether ``func`` is called in a form whose output size depends on the input's values:
    ``torch.where(cond)``, ``repeat_interleave`` with tensor repeats (no ``output_size``),
    ``one_hot`` without ``num_classes``."""
    if func is torch.where:
        return len(args) + len(kwargs) == 1
    if func in (torch.repeat_interleave, Tensor.repeat_interleave):
        repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
        return isinstance(repeats, torch.Tensor) and repeats.numel() > 1 and "output_size" not in kwargs
    if func is torch.nn.functional.one_hot:
        return kwargs.get("num_classes", args[1] if len(args) > 1 else -1) in (-1, None)
    return False


def _masks(index) -> bool:
    """Whether an indexing argument holds a boolean tensor (a mask: the output's size is its count)."""
    return any(isinstance(leaf, torch.Tensor) and leaf.dtype == torch.bool for leaf in tree_flatten(index)[0])


def _fresh(out: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``out`` as a tensor object of its own (``.to`` on the CPU returns its input itself, which
    stays on the host)."""
    return out.view(out.shape) if out is source else out
