"""bf16 everywhere or nowhere: with engine.precision=bf16 the attack module's real-pipeline verdicts
and its transfer victim run under the same bf16 autocast as the steps and verdicts they are compared
with; with fp32 none of them does; with fp64 the transfer victim is float64."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from medis.attacks import Attack, run_attack
from medis.lightning.attack_module import AttackModule
from medis.models.frontend import Victim
from medis.models.wrappers import FastPath, victim_precision


class SpyNet(nn.Module):
    """A 1x1 convolution (B, 3, S, S) -> (B, 1, S, S) that notes, per call, whether autocast is on
    and the dtype its convolution computed in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.calls: list[tuple[bool, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        self.calls.append((torch.is_autocast_enabled(x.device.type), out.dtype))
        return out


def module_with(precision: str, tmp_path: Path) -> AttackModule:
    torch.manual_seed(0)
    return AttackModule(Victim(SpyNet(), 16).eval(), Attack(mode="paper", budget={"steps": 2}), ["bce"],
                        ["untargeted"], str(tmp_path), fast_path=FastPath(precision=precision),
                        transfer_victim=Victim(SpyNet(), 16).eval())


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_real_pipeline_and_transfer_verdicts_run_at_the_attack_precision(
        precision: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = module_with(precision, tmp_path)
    assert victim_precision(module.transfer_victim) == precision
    real_calls: list[bool] = []
    pipeline = Victim.real_pipeline

    def spy(self: Victim, images: torch.Tensor, out_size=None):
        real_calls.append(torch.is_autocast_enabled("cpu"))
        return pipeline(self, images, out_size)

    monkeypatch.setattr(Victim, "real_pipeline", spy)
    images = torch.rand(2, 3, 20, 24)
    masks = (torch.rand(2, 1, 20, 24) > 0.5).float()
    records = run_attack(module.victim, images, masks, module.attack, transfer_to=module.transfer_victim).records
    bf16 = precision == "bf16"
    assert real_calls and all(on == bf16 for on in real_calls)
    assert records and all(r.real_metric is not None and r.transfer_metric is not None for r in records)
    expected = (bf16, torch.bfloat16 if bf16 else torch.float32)
    for net in (module.victim.model, module.transfer_victim.model):
        assert net.calls and set(net.calls) == {expected}


def test_fp64_keeps_the_transfer_victim_in_float64(tmp_path: Path) -> None:
    module = module_with("fp64", tmp_path)
    assert all(p.dtype == torch.float64 for p in module.transfer_victim.parameters())
