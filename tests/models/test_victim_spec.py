"""A checkpoint of ours carries its victim: build_victim builds that victim whatever the config's
defaults say, refuses an explicit setting that contradicts it (naming both values), refuses a network
outside medis.models, and leaves checkpoints without a spec to the config."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from medis.errors import ConfigError
from medis.models import build_victim
from medis.models.build import checkpoint_spec
from medis.models.checkpoints import CheckpointError
from medis.models.pranet import pranet_lite
from medis.models.unet import UNet

LITE = {"_target_": "medis.models.pranet.pranet_lite", "channel": 8}


def save(path: Path, net: torch.nn.Module, victim: dict | None, **hparams) -> Path:
    """A Lightning-style checkpoint of ``net`` whose hyperparameters carry ``victim`` (if any)."""
    values = {"val_fusion": "last", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], **hparams}
    if victim is not None:
        values["victim"] = victim
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}, "hyper_parameters": values},
               path)
    return path


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save(tmp_path / "lite.ckpt", pranet_lite(channel=8), {"net": LITE, "input_size": 96, "antialias": False})


def test_the_checkpoint_decides_the_victim_over_the_config_defaults(checkpoint: Path) -> None:
    victim = build_victim({"_target_": "medis.models.unet.UNet", "base_channels": 4}, input_size=192,
                          fusion="clean", checkpoint=checkpoint, antialias=True)
    assert type(victim.model).__name__ == "PraNet" and victim.size == (96, 96)
    assert (victim.fusion, victim.antialias) == ("last", False)
    assert torch.allclose(victim.mean.flatten().float(), torch.full((3,), 0.5))
    reference = pranet_lite(channel=8)
    reference.load_state_dict({k[len("model."):]: v for k, v in torch.load(checkpoint)["state_dict"].items()})
    assert all(torch.equal(a, b) for a, b in zip(victim.model.state_dict().values(), reference.state_dict().values()))
    assert checkpoint_spec(checkpoint).describe() == "pranet_lite(channel=8), 96 px, fusion last, resize without antialiasing"


def test_an_explicit_setting_must_agree_with_the_checkpoint(checkpoint: Path) -> None:
    agreeing = build_victim(LITE, input_size=96, fusion="last", checkpoint=checkpoint, explicit=["net", "input_size", "fusion"])
    assert agreeing.size == (96, 96)
    with pytest.raises(ConfigError, match=r"model\.input_size=192 contradicts lite\.ckpt, whose victim has input_size 96"):
        build_victim(LITE, input_size=192, checkpoint=checkpoint, explicit=["input_size"])
    with pytest.raises(ConfigError, match=r"model=UNet\(base_channels=4\) contradicts lite\.ckpt.*pranet_lite\(channel=8\)"):
        build_victim({"_target_": "medis.models.unet.UNet", "base_channels": 4}, checkpoint=checkpoint, explicit=["net"])
    with pytest.raises(ConfigError, match=r"model\.fusion='clean' contradicts .* fusion 'last'"):
        build_victim(LITE, fusion="clean", checkpoint=checkpoint, explicit=["fusion"])
    assert build_victim(LITE, input_size=192, checkpoint=checkpoint).size == (96, 96)  # not explicit: the checkpoint's


def test_a_checkpoint_may_only_name_a_network_of_the_package(tmp_path: Path) -> None:
    path = save(tmp_path / "evil.ckpt", pranet_lite(channel=8),
                {"net": {"_target_": "subprocess.run", "args": ["true"]}, "input_size": 64, "antialias": False})
    with pytest.raises(CheckpointError, match=r"names the network 'subprocess\.run'; only networks of medis\.models"):
        build_victim(LITE, checkpoint=path)


def test_a_checkpoint_without_a_spec_follows_the_config_and_says_so(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    path = save(tmp_path / "old.ckpt", UNet(base_channels=4, depth=3), None)
    with caplog.at_level(logging.WARNING):
        victim = build_victim({"_target_": "medis.models.unet.UNet", "base_channels": 4, "depth": 3}, input_size=64,
                              fusion="clean", checkpoint=path, explicit=["input_size"])
    assert victim.size == (64, 64) and victim.fusion == "clean"
    assert "carries no description of its victim" in caplog.text
    assert checkpoint_spec(path) is None


def test_a_malformed_spec_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = save(tmp_path / "bad.ckpt", pranet_lite(channel=8), {"net": LITE, "antialias": False})
    with pytest.raises(CheckpointError, match=r"^bad\.ckpt: its victim description is malformed"):
        build_victim(LITE, checkpoint=path)
