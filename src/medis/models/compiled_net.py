"""A network compiled by ``torch.compile`` and always called in ONE canonical form, so that TorchDynamo
traces one graph per network and dtype over a whole attack run instead of one per calling context.

Dynamo guards every graph it compiles on the state it was traced in; a call that breaks a guard
compiles a new graph (minutes each for a real network, and near ``torch._dynamo.config.recompile_limit``
Dynamo silently falls back to eager). Over an ``attack.py`` run the network is called in several
contexts, each of which broke a guard (measured with ``TORCH_LOGS=recompiles`` on a CPU: 5 graphs
for a small U-Net, 7 for ``pranet_lite``):

- grad mode: the steps run with gradients, the predictions (clean and final verdicts, the real
  pipeline, the victim check, the gallery) under ``torch.no_grad``;
- whether the input requires grad (a prediction's input does not);
- batch size 1 (the victim check and the gallery run one image; a last chunk may hold one
  replica): a dynamic dimension is still specialised at sizes 0 and 1;
- a batch that equals another dimension: ``torch.compile(dynamic=True)`` makes every dimension
  symbolic and gives dimensions of equal size one symbol ("duck sizing"), so a first call with 3
  replicas of a 3-channel input (or R = S) tied the batch to the channels, which the weights fix;
- the input's memory layout: the real pipeline's images come from NHWC arrays (channels-last strides);
- the parameters' ``requires_grad``: the gallery predicted outside the attack's ``frozen`` block.

:class:`CompiledNet` removes each difference before the compiled network sees the input: the network
is frozen for good (eval mode, no parameter gradients: a compiled victim is an attack's victim), the
input takes the network's memory format, a batch of one is padded to two (the copy's outputs are
dropped, and so is their gradient), only the batch dimension is dynamic
(``torch._dynamo.mark_dynamic(x, 0)`` on each input; channels and the network size S stay static),
and every call runs with gradients enabled on an input that requires grad (a prediction's input is
a detached copy and its outputs are detached again). The
price of the last: a prediction's forward keeps its activations until the outputs are detached, as a
step's forward does. The autocast state is the caller's: :class:`~medis.models.wrappers.AutocastVictim`
runs every call of the victim, the real pipeline included, under the same autocast.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

__all__ = ["CompiledNet", "map_outputs"]


def map_outputs(out: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``fn`` applied to a network's output: one tensor, or each tensor of a tuple/list of them."""
    if isinstance(out, (tuple, list)):
        return type(out)(fn(z) for z in out)
    return fn(out)


class CompiledNet(nn.Module):
    """``torch.compile(net)`` with a dynamic batch, called in one canonical form (see the module docstring).

    Args:
        net: (B, C, S, S) -> one logit map (B, 1, S, S) or a tuple of them; frozen IN PLACE (eval
            mode, ``requires_grad=False`` on every parameter).
        mode, backend: ``torch.compile``'s mode and backend.
        memory_format: the layout the network wants its input in (``torch.channels_last`` for a
            :class:`~medis.models.wrappers.ChannelsLastNet`).
    """

    def __init__(self, net: nn.Module, mode: str | None = None, backend: str | Callable = "inductor",
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        super().__init__()
        net.eval().requires_grad_(False)
        self.compiled = torch.compile(net, mode=mode, backend=backend)  # the batch dim: dynamic per call
        self.memory_format = memory_format
        self.eval()

    def train(self, mode: bool = True) -> "CompiledNet":
        """Stays in eval mode whatever is asked (a compiled victim is an attack's: batch norm's running
        statistics, no dropout; a train-mode call would also compile another graph)."""
        return super().train(False)

    @property
    def _orig_mod(self) -> nn.Module:
        """The compiled module (``torch.compile``'s ``OptimizedModule``), for code that walks wrappers
        by this name (the replica-batch cache key, :mod:`medis.attacks.batching.device_probe`)."""
        return self.compiled

    def forward(self, x: torch.Tensor) -> Any:
        """(B, C, S, S), B >= 1, any layout, grad mode and ``requires_grad`` -> the network's outputs
        (each (B, 1, S, S)); differentiable w.r.t. ``x`` when gradients are enabled and ``x`` needs one."""
        differentiable = torch.is_grad_enabled() and x.requires_grad
        single = x.shape[0] == 1
        if single:
            x = torch.cat([x, x])  # sizes 0 and 1 are specialised: B = 1 runs as B = 2
        x = x.contiguous(memory_format=self.memory_format)
        if not differentiable:
            x = x.detach().requires_grad_(True)
        torch._dynamo.mark_dynamic(x, 0)
        if differentiable:
            out = self.compiled(x)
        else:
            with torch.enable_grad():
                out = self.compiled(x)
            out = map_outputs(out, torch.Tensor.detach)
        return map_outputs(out, lambda z: z[:1]) if single else out
