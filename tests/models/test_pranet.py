"""PraNet: the official state_dict layout, strict loading, and the official outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medis.models.checkpoints import load_weights
from medis.models.pranet import InputSizeError, PraNet, pranet_lite

from .seeded_weights import fill_seeded

HERE = Path(__file__).parent
LAYOUT = json.loads((HERE / "pranet_state_dict_layout.json").read_text())


@pytest.fixture(scope="module")
def pranet() -> PraNet:
    return PraNet().eval()


def test_state_dict_matches_official_layout(pranet: PraNet) -> None:
    state = pranet.state_dict()
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()]
    assert len(ours) == LAYOUT["num_keys"] == 922
    assert sum(v.numel() for v in state.values()) == LAYOUT["total_numel"] == 32_613_690
    for index, (mine, official) in enumerate(zip(ours, LAYOUT["entries"])):
        assert mine == official, f"entry {index}"
    assert "resnet.fc.weight" in state


def test_loads_a_state_dict_in_the_official_layout(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape, dtype in LAYOUT["entries"]:
        if dtype == "int64":
            state[key] = torch.tensor(7, dtype=torch.int64)
        else:
            state[key] = torch.randn(shape, generator=generator)
    torch.save(state, tmp_path / "PraNet-19.pth")
    model = PraNet()
    model.load_state_dict(torch.load(tmp_path / "PraNet-19.pth", weights_only=True), strict=True)
    fresh = PraNet()
    assert load_weights(fresh, tmp_path / "PraNet-19.pth") == "official"
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_outputs_match_the_official_implementation(pranet: PraNet) -> None:
    """Golden values produced by the official code (DengPingFan/PraNet, lib/PraNet_Res2Net.py) with
    the same seeded weights and input; see official_pranet_golden.json's "what" field. Our
    implementation gave bit-identical full-resolution outputs in that comparison."""
    golden = json.loads((HERE / "official_pranet_golden.json").read_text())
    model = fill_seeded(PraNet(), golden["seed_weights"]).eval()
    x = torch.randn(*golden["input_shape"], generator=torch.Generator().manual_seed(golden["seed_input"]))
    with torch.no_grad():
        maps = model(x)
    assert len(maps) == 4
    for index, (side, pooled, peak) in enumerate(zip(maps, golden["pooled"], golden["pixel_max"])):
        assert side.shape == (2, 1, 96, 128)
        torch.testing.assert_close(F.adaptive_avg_pool2d(side, (6, 8)), torch.tensor(pooled), rtol=1e-4, atol=1e-3,
                                   msg=f"side output {index}")
        assert abs(float(side.abs().max()) - peak) <= 1e-3 * peak


def test_side_outputs_at_input_resolution_and_size_check(pranet: PraNet) -> None:
    with torch.no_grad():
        maps = pranet(torch.randn(1, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(1, 1, 64, 96)] * 4
    with pytest.raises(InputSizeError, match="multiple of 32, got 100x96"):
        pranet(torch.randn(1, 3, 100, 96))


def test_lite_variant_has_the_same_heads_and_is_small() -> None:
    lite = pranet_lite().eval()
    names = {name.split(".")[0] for name, _ in lite.named_parameters()}
    assert {"rfb2_1", "rfb3_1", "rfb4_1", "agg1", "ra4_conv1", "ra3_conv4", "ra2_conv4", "resnet"} <= names
    count = sum(p.numel() for p in lite.parameters())
    assert count < 0.05 * LAYOUT["total_numel"]
    x = torch.randn(2, 3, 128, 160, requires_grad=True)
    maps = lite(x)
    assert [tuple(m.shape) for m in maps] == [(2, 1, 128, 160)] * 4
    maps[-1].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
