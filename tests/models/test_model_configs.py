"""conf/model/*.yaml: each composes and instantiates a working victim; checkpoints load through it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from medis.models.frontend import Victim
from medis.models.pranet import PraNet
from medis.models.unet import UNet

from ..conftest import CONF_DIR


def compose_model(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=None, overrides=[f"+model={name}", *overrides]).model


@pytest.mark.parametrize("name, net_type, size", [("pranet", PraNet, 64), ("pranet_lite", PraNet, 64),
                                                  ("unet", UNet, 64)])
def test_model_configs_build_victims(name: str, net_type: type, size: int) -> None:
    victim = instantiate(compose_model(name, f"model.input_size={size}"))
    assert isinstance(victim, Victim) and isinstance(victim.model, net_type)
    victim.freeze()
    x = torch.rand(1, 3, 50, 70, requires_grad=True)
    out = victim(x)
    out.prob.mean().backward()
    assert out.prob.shape == (1, 1, 50, 70) and x.grad.abs().sum() > 0


def test_checkpoint_loaded_through_the_config(tmp_path: Path) -> None:
    source = instantiate(compose_model("pranet_lite")).model
    torch.nn.init.constant_(source.agg1.conv5.bias, 3.5)
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "last.ckpt")
    victim = instantiate(compose_model("pranet_lite", f"model.checkpoint={tmp_path / 'last.ckpt'}"))
    assert float(victim.model.agg1.conv5.bias.detach()) == 3.5
