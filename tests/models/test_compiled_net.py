"""CompiledNet: the compiled network called in every context an attack calls it in (steps with input
gradients, predictions under no_grad, a batch of one, a channels-last input, weights that require
grad) gives the eager network's outputs and input gradients, and Dynamo compiles ONE graph for all."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

from medis.models.compiled_net import CompiledNet
from medis.models.wrappers import ChannelsLastNet

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


class TwoMaps(nn.Module):
    """(B, 3, S, S) -> two logit maps (B, 1, S, S), with batch norm (eval mode matters)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.a, self.b = nn.Conv2d(4, 1, 1), nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.stem(x)
        return self.a(features), self.b(features)


def fresh_graph_count() -> None:
    torch._dynamo.reset()
    counters.clear()


def graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


def every_context(net: nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """The net's outputs (and input gradients where taken) in each way an attack run calls it."""
    results = []
    for batch in (x, x[:1]):  # several replicas, then one (victim check, gallery, a last chunk)
        leaf = batch.clone().requires_grad_(True)
        out = net(leaf)
        (grad,) = torch.autograd.grad(sum(z.square().sum() for z in out), leaf)  # a step
        results.append((*(z.detach() for z in out), grad))
        with torch.no_grad():  # a prediction
            results.append(tuple(net(batch)))
        results.append(tuple(net(batch)))  # grad enabled, input needs none
        with torch.no_grad():  # the real pipeline's images come from NHWC arrays
            results.append(tuple(net(batch.contiguous(memory_format=torch.channels_last))))
    return results


@pytest.mark.parametrize("channels_last", [False, True])
def test_one_graph_for_every_calling_context_and_the_eager_values(channels_last: bool) -> None:
    torch.manual_seed(0)
    eager = TwoMaps().eval()
    x = torch.rand(3, 3, 16, 16)
    expected = every_context(eager, x)
    for p in eager.parameters():
        p.requires_grad_(True)  # as a victim's weights are outside the attack's frozen() block
    net = ChannelsLastNet(eager) if channels_last else eager
    fresh_graph_count()
    compiled = CompiledNet(net, backend="aot_eager",
                           memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert not any(p.requires_grad for p in compiled.parameters()) and not compiled.training
    compiled.train()  # e.g. a Lightning module put in train mode around it: it stays an attack's victim
    assert not compiled.training and not any(m.training for m in compiled.modules())
    got = every_context(compiled, x)
    got += every_context(compiled, torch.rand(5, 3, 16, 16))[:1]  # another replica count
    assert graphs() == 1
    assert not counters["graph_break"]
    for want, have in zip(expected, got):
        for a, b in zip(want, have):
            assert a.shape == b.shape
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_a_prediction_carries_no_graph() -> None:
    fresh_graph_count()
    compiled = CompiledNet(TwoMaps(), backend="aot_eager")
    x = torch.rand(2, 3, 16, 16)
    assert not any(z.requires_grad for z in compiled(x))  # grad enabled, input needs none
    with torch.no_grad():
        assert not any(z.requires_grad for z in compiled(x.requires_grad_(True)))
    assert all(z.requires_grad for z in compiled(x))  # a step's input: differentiable
    assert graphs() == 1


def test_without_the_canonical_form_dynamo_would_compile_more() -> None:
    """The count is able to fail: the bare compiled net, called the same ways, compiles several graphs."""
    fresh_graph_count()
    bare = torch.compile(TwoMaps().eval(), dynamic=True, backend="aot_eager")
    every_context(bare, torch.rand(3, 3, 16, 16))
    assert graphs() >= 3
