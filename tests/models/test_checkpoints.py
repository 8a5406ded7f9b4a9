"""Checkpoint loading: official, backbone and Lightning files; one-line errors; safe unpickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from medis.models import checkpoints
from medis.models.checkpoints import CheckpointError, load_weights, read_checkpoint
from medis.models.pranet import pranet_lite
from medis.models.unet import UNet


def test_backbone_weights_load_into_resnet(tmp_path: Path) -> None:
    source = pranet_lite()
    torch.nn.init.constant_(source.resnet.conv1[0].weight, 0.25)
    torch.save(source.resnet.state_dict(), tmp_path / "res2net.pth")  # keys without "resnet."
    target = pranet_lite()
    assert load_weights(target, tmp_path / "res2net.pth", kind="backbone") == "backbone"
    assert torch.equal(target.resnet.conv1[0].weight, source.resnet.conv1[0].weight)
    assert not torch.equal(target.rfb2_1.conv_res.conv.weight, source.rfb2_1.conv_res.conv.weight)


def test_lightning_checkpoint(tmp_path: Path) -> None:
    source = pranet_lite()
    state = {f"model.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.6.0", "epoch": 3}, tmp_path / "best.ckpt")
    target = pranet_lite()
    assert load_weights(target, tmp_path / "best.ckpt") == "lightning"
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key])


def test_data_parallel_prefix_stripped(tmp_path: Path) -> None:
    source = pranet_lite()
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path / "dp.pth")
    target = pranet_lite()
    assert load_weights(target, tmp_path / "dp.pth") == "official"
    assert torch.equal(target.ra2_conv4.conv.weight, source.ra2_conv4.conv.weight)


def test_mismatches_listed_in_one_line(tmp_path: Path) -> None:
    state = pranet_lite().state_dict()
    state.pop("ra2_conv4.conv.weight")
    state["resnet.extra"] = torch.zeros(1)
    state["agg1.conv5.weight"] = torch.zeros(1, 3, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        load_weights(pranet_lite(), tmp_path / "bad.pth")
    message = str(info.value)
    assert "\n" not in message and "bad.pth" in message
    assert "missing ra2_conv4.conv.weight" in message
    assert "unexpected resnet.extra" in message
    assert "agg1.conv5.weight (1, 3, 1, 1) vs (1, 48, 1, 1)" in message


def test_wrong_model_and_wrong_kind(tmp_path: Path) -> None:
    torch.save({f"model.{k}": v for k, v in UNet(base_channels=4, depth=2).state_dict().items()} | {},
               tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="unrecognised checkpoint"):
        load_weights(pranet_lite(), tmp_path / "x.pth")
    torch.save({"state_dict": {f"model.{k}": v for k, v in UNet(base_channels=4, depth=2).state_dict().items()}},
               tmp_path / "unet.ckpt")
    with pytest.raises(CheckpointError, match=r"unet\.ckpt does not fit PraNet: missing"):
        load_weights(pranet_lite(), tmp_path / "unet.ckpt")
    with pytest.raises(CheckpointError, match="looks like a lightning checkpoint, not backbone"):
        load_weights(pranet_lite(), tmp_path / "unet.ckpt", kind="backbone")


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/medis_pickle_was_executed",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    marker = Path("/tmp/medis_pickle_was_executed")
    marker.unlink(missing_ok=True)
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"weights": _Exploit()}, handle)
    torch.save({"weights": _Exploit()}, tmp_path / "evil_zip.pth")
    for name in ("evil.pth", "evil_zip.pth"):
        with pytest.raises(CheckpointError, match=f"refused to load .*{name}"):
            read_checkpoint(tmp_path / name)
    assert not marker.exists()


def test_truncated_missing_and_map_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.save(pranet_lite().state_dict(), tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*cut\.pth \(truncated"):
        read_checkpoint(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope\.pth"):
        read_checkpoint(tmp_path / "nope.pth")
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "load", spy)
    read_checkpoint(tmp_path / "ok.pth")
    assert seen == {"map_location": "cpu", "weights_only": True}
