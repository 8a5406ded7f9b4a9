"""The engine's fast-path options: bf16 autocast (float32 outputs, same success decisions as float32 on
a small trained victim), channels-last and torch.compile (same outputs and input gradients as the
plain victim; the input backward goes through a compiled graph), and the automatic replica batch
(search, margin, cache, CPU default)."""

from __future__ import annotations

import contextlib
import shutil
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medis.attacks import Attack, EngineOptions, run_attack
from medis.attacks.batching import device_probe as max_batch_module
from medis.attacks.batching.device_probe import MaxBatchError, auto_max_batch, held_on_device, search_max_batch
from medis.data.synthetic import render_dermoscopy
from medis.errors import ConfigError, MedisError
from medis.losses import PAPER_LOSSES, build_loss
from medis.models.build import build_victim
from medis.models.compiled_net import CompiledNet
from medis.models.frontend import Victim, VictimOutput
from medis.models.pranet import pranet_lite
from medis.models.unet import UNet
from medis.models.wrappers import ChannelsLastNet, FastPath, compiled, fast_victim, with_memory_format, with_precision
from medis.results.fusion import fuse

# Inductor's CPU backend imports torch.jit-scripted MKLDNN helpers, which warn on import
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
needs_cxx = pytest.mark.skipif(not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++")),
                               reason="Inductor's CPU backend needs a C++ compiler")


def dermoscopy(seed: int, n: int, height: int = 48, width: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """n synthetic dermoscopy images (n, 3, H, W) in [0, 1] and their lesion masks (n, 1, H, W)."""
    pairs = [render_dermoscopy(np.random.default_rng([seed, i]), height, width) for i in range(n)]
    images = torch.stack([torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255 for image, _ in pairs])
    masks = torch.stack([torch.from_numpy(mask).float()[None] for _, mask in pairs])
    return images, masks


def trained_unet_victim() -> Victim:
    """A small U-Net fitted for 80 Adam steps to 32 synthetic lesions (~5 s): confident predictions,
    unlike random weights, whose near-constant maps the paper fusion's per-image min-max rescaling
    turns into noise that any rounding (bf16 included) reshuffles."""
    torch.manual_seed(0)
    images, masks = dermoscopy(1, 32)
    victim = build_victim(UNet(base_channels=8, depth=3), 64, fusion="paper")
    optimizer = torch.optim.Adam(victim.model.parameters(), 1e-2)
    for _ in range(80):
        batch = torch.randint(0, len(images), (8,))
        loss = F.binary_cross_entropy_with_logits(victim(images[batch]).side_logits[-1], masks[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return victim.eval()


def forward_and_input_grad(victim, x: torch.Tensor) -> tuple[VictimOutput, torch.Tensor]:
    """Outputs and the gradient of a paper loss w.r.t. the input x (R, 3, H, W), network frozen."""
    x = x.clone().requires_grad_(True)
    for p in victim.model.parameters():
        p.requires_grad_(False)
    out = victim(x)
    reference = torch.zeros_like(out.prob)
    reference[..., 8:24, 8:24] = 1
    (grad,) = torch.autograd.grad(build_loss("bce_dice", "paper")(out, reference).sum(), x)
    return out, grad


def assert_outputs_close(out: VictimOutput, expected: VictimOutput, atol: float) -> None:
    for got, want in zip((*out.side_logits, out.prob, *out.side_probs),
                         (*expected.side_logits, expected.prob, *expected.side_probs)):
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got, want, atol=atol, rtol=0)


# --------------------------------------------------------------------------- precision


def test_precision_rejects_unknown_value_with_one_line_naming_the_key() -> None:
    victim = build_victim(UNet(base_channels=4, depth=2), 32)
    for call in (lambda: with_precision(victim, "fp16x"), lambda: fast_victim(victim, precision="fp16x"),
                 lambda: FastPath(precision="fp16x")):
        with pytest.raises(ConfigError, match=r"engine\.precision='fp16x' must be one of fp32, bf16") as err:
            call()
        assert "\n" not in str(err.value)


def test_fp32_and_no_options_return_the_victim_itself() -> None:
    victim = build_victim(UNet(base_channels=4, depth=2), 32)
    assert with_precision(victim, "fp32") is victim
    assert fast_victim(victim) is victim
    assert with_memory_format(victim, False) is victim


def test_bf16_outputs_are_float32_and_the_wrapper_keeps_model_and_fusion() -> None:
    torch.manual_seed(0)
    victim = build_victim(pranet_lite(), 64, fusion="clean").eval()
    fast = with_precision(victim, "bf16")
    assert fast.model is victim.model and fast.fusion == "clean" and fast.precision == "bf16"
    x = torch.rand(2, 3, 48, 64)
    out, grad = forward_and_input_grad(fast, x)
    assert all(t.dtype == torch.float32 for t in (*out.side_logits, out.prob, *out.side_probs, grad))
    assert grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the network did run in bf16 inside
        assert victim.model(victim.preprocess(x))[0].dtype == torch.bfloat16
    expected, _ = forward_and_input_grad(victim, x)
    assert_outputs_close(fast(x), expected, atol=0.02)  # bf16: 8 bits of mantissa; the maps differ a little
    assert not torch.equal(fast(x).side_logits[0], expected.side_logits[0])


def test_bf16_gives_the_same_fused_success_decisions_as_fp32() -> None:
    victim = trained_unet_victim()
    images, masks = dermoscopy(7, 4)
    attack = Attack(mode="paper", losses=PAPER_LOSSES)
    plain = run_attack(victim, images, masks, attack).records
    fast = run_attack(with_precision(victim, "bf16"), images, masks, attack).records
    decisions = [r["success"] for r in plain]
    assert 0 < sum(decisions) < len(decisions)  # not degenerate: 17 of 24 succeed in float32
    assert [(r["image_id"], r["loss"]) for r in fast] == [(r["image_id"], r["loss"]) for r in plain]
    # the attack's decision per image (parallel fusion: some loss succeeded) is the same
    (fused_plain,), (fused_fast,) = fuse(plain), fuse(fast)
    assert set(fused_fast["chosen"]) == set(fused_plain["chosen"])
    # single losses: a sign-gradient trajectory can diverge after a rounding difference (with 2 threads
    # one of the 24 flips: bce_dice on image 3 ends at mIoU 0.525 instead of 0.365; float32 itself
    # decides image 0 differently with 1 and 2 threads), so at most 2 of 24 may differ
    agree = sum(a["success"] == b["success"] for a, b in zip(plain, fast))
    assert agree >= len(plain) - 2, agree


# --------------------------------------------------------------------------- channels-last


def test_channels_last_matches_plain_and_feeds_the_net_nhwc() -> None:
    torch.manual_seed(0)
    victim = build_victim(pranet_lite(), 64, fusion="paper").eval()
    net = victim.model
    x = torch.rand(3, 3, 48, 64)
    expected, expected_grad = forward_and_input_grad(victim, x)
    seen = []
    hook = net.resnet.conv1[0].register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    fast = with_memory_format(victim, True)
    out, grad = forward_and_input_grad(fast, x)
    hook.remove()
    assert seen == [True]
    assert isinstance(fast.model, ChannelsLastNet) and fast.model.net is net
    assert victim.model is net  # the given victim keeps its own network module
    assert net.resnet.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.fusion == victim.fusion and fast.size == victim.size
    assert_outputs_close(out, expected, atol=1e-4)
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-3)
    assert not fast.model.training  # the eval net's mode: no train-mode warning, eval again after the attack
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_attack(fast, x, torch.ones(3, 1, 48, 64), Attack(budget={"steps": 1}), losses=["bce"])
    assert not net.training and not any(module.training for module in net.modules())


def test_network_options_reach_through_the_precision_wrapper() -> None:
    victim = build_victim(UNet(base_channels=4, depth=2), 32).eval()
    half = with_precision(victim, "bf16")
    fast = with_memory_format(half, True)
    assert fast.precision == "bf16" and isinstance(fast.model, ChannelsLastNet) and fast.model.net is victim.model
    assert half.model is victim.model and fast.victim is not victim  # both given victims unchanged
    assert isinstance(half, nn.Module) and dict(half.named_children()) == {"victim": victim}
    half.train()
    assert victim.training and victim.model.training  # train()/eval()/to() reach the wrapped victim
    half.eval()
    assert not victim.model.training


def test_network_options_need_a_victim_with_a_model() -> None:
    with pytest.raises(TypeError, match="needs a victim with a `model` network"):
        with_memory_format(lambda x: x, True)


# --------------------------------------------------------------------------- torch.compile


def tiny_victim() -> Victim:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))
    return build_victim(net, 32, fusion="clean").eval()


def test_compile_traces_forward_and_input_backward_graphs() -> None:
    """An AOTAutograd backend that records what it compiles (no C++ build): the joint graph is split
    into a forward and a backward graph, and the input gradient is the compiled backward's."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs: list[str] = []

    def record(kind: str):
        def compiler(gm: torch.fx.GraphModule, example_inputs):
            graphs.append(kind)
            return make_boxed_func(gm.forward)
        return compiler

    torch._dynamo.reset()
    victim = tiny_victim()
    x = torch.rand(3, 3, 24, 32)
    expected, expected_grad = forward_and_input_grad(victim, x)
    fast = compiled(victim, backend=aot_autograd(fw_compiler=record("forward"), bw_compiler=record("backward")))
    assert fast.model is not victim.model and victim(x).prob.shape == (3, 1, 24, 32)  # the original stays eager
    out, grad = forward_and_input_grad(fast, x)
    assert "forward" in graphs and "backward" in graphs
    assert_outputs_close(out, expected, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-4)
    seen = len(graphs)
    forward_and_input_grad(fast, torch.rand(5, 3, 24, 32))  # another replica count: the dynamic graph serves
    forward_and_input_grad(fast, torch.rand(4, 3, 24, 32))
    forward_and_input_grad(fast, torch.rand(1, 3, 24, 32))  # one replica (padded to two)
    assert len(graphs) == seen  # the one graph (dynamic batch) serves every replica count


@pytest.mark.slow  # an inductor compile (~30 s); test_compile_traces_forward_and_input_backward_graphs stays fast
@needs_cxx
def test_compiled_inductor_matches_plain_in_the_engine() -> None:
    """Inductor on this CPU (needs a C++ compiler): same outputs, input gradients and attack records."""
    torch._dynamo.reset()
    victim = tiny_victim()
    x = torch.rand(3, 3, 24, 32)
    expected, expected_grad = forward_and_input_grad(victim, x)
    fast = fast_victim(victim, compile=True)
    out, grad = forward_and_input_grad(fast, x)
    assert_outputs_close(out, expected, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-4)
    images = torch.rand(3, 3, 24, 32)
    with torch.no_grad():
        masks = victim(images).mask  # the clean prediction: scores start at 1 and fall
    attack = Attack(budget={"steps": 3}, losses=["bce", "dice"])
    plain = run_attack(victim, images, masks, attack).records
    records = run_attack(fast, images, masks, attack).records
    assert [r["success"] for r in records] == [r["success"] for r in plain]
    trajectories = [score for r in records for score in r["trajectory"]]
    assert trajectories == pytest.approx([score for r in plain for score in r["trajectory"]], abs=1e-6)
    assert min(trajectories) < 1.0


# --------------------------------------------------------------------------- max_batch search


@pytest.mark.parametrize("upper", [1, 2, 7, 64, 1024])
@pytest.mark.parametrize("threshold", [1, 2, 3, 5, 31, 32, 33, 100, 1000, 5000])
def test_search_max_batch_finds_the_threshold(threshold: int, upper: int) -> None:
    tried: list[int] = []

    def fits(n: int) -> bool:
        tried.append(n)
        return n <= threshold

    assert search_max_batch(fits, upper) == min(threshold, upper)
    assert max(tried) <= upper and len(tried) == len(set(tried))  # never above upper, never twice
    assert len(tried) <= 2 * max(1, upper).bit_length() + 1


def test_search_max_batch_errors_when_one_does_not_fit() -> None:
    with pytest.raises(MaxBatchError, match="not even a batch of 1"):
        search_max_batch(lambda n: False, 64)
    assert issubclass(MaxBatchError, MedisError)
    with pytest.raises(ValueError, match="upper"):
        search_max_batch(lambda n: True, 0)


class LimitedVictim(Victim):
    """A victim whose device 'runs out of memory' above ``limit`` replicas; counts its calls."""

    def __init__(self, limit: int) -> None:
        super().__init__(nn.Conv2d(3, 1, 1), 16, fusion="clean")
        self.limit = limit
        self.calls: list[int] = []
        self.frozen: list[bool] = []

    def forward(self, images: torch.Tensor, out_size: tuple[int, int] | None = None) -> VictimOutput:
        self.calls.append(images.shape[0])
        self.frozen.append(not self.model.training and not any(p.requires_grad for p in self.model.parameters()))
        if images.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory (fake): {images.shape[0]} > {self.limit}")
        return super().forward(images, out_size)


def test_auto_max_batch_returns_none_on_cpu_without_probing() -> None:
    victim = LimitedVictim(10)
    losses = {"bce": build_loss("bce")}
    assert auto_max_batch(victim, losses, (3, 16, 16), "cpu", cache={}) is None
    assert victim.calls == []
    # through the engine: max_batch=auto on a CPU runs every replica of small images at once without
    # measuring anything; a larger image first measures one replica's step per loss (the memory limit)
    for side, measured in ((16, False), (40, True)):
        images = torch.rand(2, 3, side, side)
        with torch.no_grad():
            masks = victim(images).mask  # its own prediction: nothing to set aside
        victim.calls.clear()
        result = run_attack(victim, images, masks, Attack(budget={"steps": 1}), losses=["bce", "dice"],
                            options=EngineOptions(max_batch="auto"))
        assert victim.calls[-3:] == [2, 4, 4] and result.forward_replicas == 10  # the clean pass, then the replicas
        assert bool(victim.calls[:-3]) == measured and set(victim.calls[:-3]) <= {1}  # probes: one replica each


def test_auto_max_batch_probes_applies_the_margin_and_caches_per_key() -> None:
    victim = LimitedVictim(37)
    losses = {"bce": build_loss("bce"), "dice": build_loss("dice")}
    cache: dict = {}
    probe = dict(cache=cache, probe_devices=("cpu",), upper=1024)
    assert auto_max_batch(victim, losses, (3, 16, 16), "cpu", margin=0.9, **probe) == 33  # int(37 * 0.9)
    assert max(n for n in victim.calls if n <= 37) == 37 and 38 in victim.calls
    assert victim.frozen == [True] * len(victim.calls)  # probed as the engine runs: eval, no weight gradients
    assert all(p.requires_grad for p in victim.model.parameters()) and victim.training  # restored afterwards
    calls = len(victim.calls)
    assert auto_max_batch(victim, losses, (3, 16, 16), "cpu", margin=1.0, **probe) == 37  # same key: cached
    assert len(victim.calls) == calls
    assert auto_max_batch(victim, losses, (3, 20, 16), "cpu", **probe) == 33  # another image size: probed again
    assert len(victim.calls) > calls and len(cache) == 2
    calls = len(victim.calls)
    auto_max_batch(victim, {"bce": build_loss("bce")}, (3, 16, 16), "cpu", **probe)  # other losses: probed
    assert len(victim.calls) > calls and len(cache) == 3


def test_auto_max_batch_searches_again_only_when_a_smaller_upper_capped_it() -> None:
    victim = LimitedVictim(37)
    losses = {"bce": build_loss("bce")}
    probe = dict(cache={}, probe_devices=("cpu",), margin=1.0)
    assert auto_max_batch(victim, losses, (3, 16, 16), "cpu", upper=16, **probe) == 16  # capped: limit unknown
    calls = len(victim.calls)
    assert auto_max_batch(victim, losses, (3, 16, 16), "cpu", upper=8, **probe) == 8
    assert len(victim.calls) == calls
    assert auto_max_batch(victim, losses, (3, 16, 16), "cpu", upper=64, **probe) == 37  # searched again
    calls = len(victim.calls)
    assert auto_max_batch(victim, losses, (3, 16, 16), "cpu", upper=1024, **probe) == 37  # limit known
    assert auto_max_batch(victim, losses, (3, 16, 16), "cpu", upper=20, **probe) == 20
    assert len(victim.calls) == calls


def test_auto_max_batch_key_tells_precision_and_uses_the_module_cache_by_default() -> None:
    victim = LimitedVictim(5)
    losses = {"bce": build_loss("bce")}
    max_batch_module.MAX_BATCH_CACHE.clear()
    try:
        assert auto_max_batch(victim, losses, (3, 16, 16), "cpu", probe_devices=("cpu",), margin=1.0) == 5
        assert auto_max_batch(with_precision(victim, "bf16"), losses, (3, 16, 16), "cpu", probe_devices=("cpu",),
                              margin=1.0) == 5
        keys = list(max_batch_module.MAX_BATCH_CACHE)
        assert len(keys) == 2 and {key[-3] for key in keys} == {"fp32", "bf16"}
    finally:
        max_batch_module.MAX_BATCH_CACHE.clear()


def test_auto_max_batch_injected_step_and_one_that_never_fits() -> None:
    steps: list[int] = []

    def step(n: int) -> None:
        steps.append(n)
        if n > 300:
            raise torch.OutOfMemoryError("fake")

    victim = LimitedVictim(0)
    losses = {"bce": build_loss("bce")}
    assert auto_max_batch(victim, losses, (3, 8, 8), "cpu", cache={}, probe_devices=("cpu",), step=step,
                          margin=0.5) == 150
    assert 300 in steps and 301 in steps and victim.calls == []
    with pytest.raises(MaxBatchError, match=r"not even 1 replica of a 3x8x8 image with losses bce fits in cpu"):
        auto_max_batch(victim, losses, (3, 8, 8), "cpu", cache={}, probe_devices=("cpu",))


@needs_cxx
def test_all_options_together_match_eager_bf16() -> None:
    """Channels-last, then compile, then bf16 autocast around the compiled network (its own graph
    under the autocast state): same maps as the eager bf16 victim, float32 out, model reachable."""
    torch._dynamo.reset()
    victim = tiny_victim()
    x = torch.rand(4, 3, 24, 32)
    expected, expected_grad = forward_and_input_grad(with_precision(victim, "bf16"), x)
    fast = fast_victim(victim, channels_last=True, compile=True, precision="bf16")
    assert fast.precision == "bf16" and fast.fusion == "clean"
    assert isinstance(fast.model, CompiledNet) and isinstance(fast.model.compiled._orig_mod, ChannelsLastNet)
    out, grad = forward_and_input_grad(fast, x)
    assert_outputs_close(out, expected, atol=1e-3)
    assert grad.dtype == torch.float32
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-2)
    fp32, _ = forward_and_input_grad(victim, x)  # and the compiled graph did run in bf16 (~5e-3 off float32)
    assert (out.side_logits[0] - fp32.side_logits[0]).abs().max() > 1e-3


@pytest.mark.parametrize("message", [
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "Expected canUse32BitIndexMath(input) && canUse32BitIndexMath(output) to be true, but got false.",
    "CUDA error: out of memory",
])
def test_the_probe_counts_every_allocation_failure_as_does_not_fit(message: str) -> None:
    """cuBLAS/cuDNN allocation failures and the 32-bit index limit are plain RuntimeErrors, not
    torch.OutOfMemoryError: the probe reads them as 'too big' (a faked device that fails above 24)."""
    def step(n: int) -> None:
        if n > 24:
            raise RuntimeError(message)

    losses = {"bce": build_loss("bce")}
    assert auto_max_batch(LimitedVictim(0), losses, (3, 8, 8), "cpu", cache={}, probe_devices=("cpu",), step=step,
                          margin=1.0) == 24


def test_the_probe_lets_a_real_bug_through() -> None:
    def step(n: int) -> None:
        raise RuntimeError("The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1")

    with pytest.raises(RuntimeError, match="must match"):
        auto_max_batch(LimitedVictim(0), {"bce": build_loss("bce")}, (3, 8, 8), "cpu", cache={},
                       probe_devices=("cpu",), step=step)


def test_the_cuda_probe_searches_no_further_than_the_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    """max_batch=auto on CUDA (the device faked: only the probe's arguments are looked at)."""
    from medis.attacks.batching import plan

    asked: list[int] = []

    held: list[int] = []

    def fake_probe(*args, upper: int, reserve: int, **kwargs) -> int:
        asked.append(upper)
        held.append(reserve)
        return int(upper * plan.PROBE_MARGIN)

    monkeypatch.setattr(plan, "auto_max_batch", fake_probe)
    attack = Attack(budget={"steps": 1})
    losses = {name: build_loss(name) for name in ("bce", "dice", "tversky")}
    got = plan.replica_batch(LimitedVictim(0), losses, attack, (3, 64, 64), 16, max_batch="auto",
                             memory_limit="auto", loss_size=None, device="cuda")
    assert asked == [54] and got >= 48  # 16 images x 3 losses = 48 replicas: one pass, never 1024 tries
    # the probe holds the replicas' state meanwhile: per replica 3 images (current, chosen, best) and a mask
    assert held == [16 * (3 * 64 * 64 * 4 + 64 * 64) + 48 * (3 * 3 * 64 * 64 * 4 + 64 * 64)]


def test_the_probe_draws_its_trial_batches_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every random tensor of a trial step is created on the probed device (never built in host memory
    and copied: at 16 Mpx a batch of 256 would take 51 GB of RAM)."""
    from medis.attacks.batching.device_probe import attack_step_probe

    drawn: list[tuple[tuple, object]] = []
    real_rand = torch.rand

    def spy(*size, **kwargs):
        drawn.append((size, kwargs.get("device")))
        return real_rand(*size, **kwargs)

    victim = LimitedVictim(100)
    step = attack_step_probe(victim, {"bce": build_loss("bce")}, (3, 16, 16), "cpu")
    monkeypatch.setattr(torch, "rand", spy)
    step(6)
    assert [size[0] for size, _ in drawn] == [6, 6] and all(device == torch.device("cpu") for _, device in drawn)


class FakeDeviceMemory:
    """A faked CUDA memory: ``capacity`` bytes; a step of n replicas needs ``n * per_replica`` bytes
    beside what is held (torch.OutOfMemoryError otherwise)."""

    def __init__(self, capacity: int, per_replica: int) -> None:
        self.capacity, self.per_replica, self.held, self.holds = capacity, per_replica, 0, []

    @contextlib.contextmanager
    def hold(self, nbytes: int, device: torch.device):
        if self.held + nbytes > self.capacity:
            raise MaxBatchError(f"fake: {nbytes} bytes do not fit")
        self.held += nbytes
        self.holds.append(nbytes)
        try:
            yield
        finally:
            self.held -= nbytes

    def step(self, n: int) -> None:
        if self.held + n * self.per_replica > self.capacity:
            raise torch.OutOfMemoryError(f"CUDA out of memory (fake): {n} replicas")


def test_the_probe_leaves_room_for_the_replicas_state() -> None:
    """Probed beside the state it holds: 1000 bytes, 10 a replica, 400 of state -> 60 replicas, not 100;
    a later call holding less reuses the result, one holding more probes again."""
    memory = FakeDeviceMemory(1000, 10)
    losses = {"bce": build_loss("bce")}
    probe = dict(probe_devices=("cpu",), step=memory.step, hold=memory.hold, margin=1.0, upper=1024)
    assert auto_max_batch(LimitedVictim(0), losses, (3, 8, 8), "cpu", cache={}, **probe) == 100  # an empty device
    cache: dict = {}
    assert auto_max_batch(LimitedVictim(0), losses, (3, 8, 8), "cpu", cache=cache, reserve=400, **probe) == 60
    assert memory.holds[-1] == 400 and memory.held == 0  # held while probing, released after
    assert auto_max_batch(LimitedVictim(0), losses, (3, 8, 8), "cpu", cache=cache, reserve=300, **probe) == 60
    assert len(memory.holds) == 2  # a smaller state: the cached answer stands (it fits beside more)
    assert auto_max_batch(LimitedVictim(0), losses, (3, 8, 8), "cpu", cache=cache, reserve=700, **probe) == 30
    with pytest.raises(MaxBatchError, match="beside the attack's state"):
        auto_max_batch(LimitedVictim(0), losses, (3, 8, 8), "cpu", cache={}, reserve=995, **probe)


def test_held_on_device_holds_a_block_and_names_one_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple] = []
    real_empty = torch.empty

    def spy(*size, **kwargs):
        made.append((size, kwargs.get("device")))
        return real_empty(*size, **kwargs)

    monkeypatch.setattr(torch, "empty", spy)
    with held_on_device(1 << 20, torch.device("cpu")):
        assert made == [((1 << 20,), torch.device("cpu"))]

    def refuse(*size, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (fake)")

    monkeypatch.setattr(torch, "empty", refuse)
    with pytest.raises(MaxBatchError, match=r"state \(1.00 GiB\) alone does not fit in cpu"):
        with held_on_device(1 << 30, torch.device("cpu")):
            pass
