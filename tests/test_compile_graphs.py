"""engine.compile=true compiles the victim's network ONCE per run and dtype: a whole attack.py job (run
in-process, so that Dynamo's counters can be read) with the victim check, clean-mode set-aside
predictions, steps, final and real-pipeline verdicts and the gallery gives one Dynamo graph and no
graph break, in fp32 and in bf16 (``aot_eager``: the graphs Inductor would get, no kernels built)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch._dynamo
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from torch._dynamo.utils import counters

import medis.config.resolvers  # noqa: F401  (registers the resolvers)
from medis.lightning.attack_job import run_attack_job

from .entry_points import REPO

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def attack_config(tmp_path: Path, *overrides: str):
    """The smoke attack (2 losses, untargeted and white, 3 steps) on 2 synthetic test images with a
    small U-Net, compiled with aot_eager."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("attack", overrides=[
            "experiment=smoke", "model=unet", "model.net.base_channels=4", "model.net.depth=2",
            "model.input_size=32", "logger=csv", f"paths.log_dir={tmp_path / 'outputs'}",
            f"paths.output_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'synthetic_isic'}",
            "data.synthetic.n=8", "engine.compile=true", "engine.compile_backend=aot_eager", *overrides])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


@pytest.mark.parametrize(("precision", "mode"), [("fp32", "paper"), ("bf16", "paper"), ("fp32", "clean")])  # 2-4 s each
def test_an_attack_run_compiles_the_victim_once(tmp_path: Path, precision: str, mode: str) -> None:
    """Paper mode attacks every image (steps with input gradients under the run's precision); clean
    mode sets this untrained victim's images aside (its lean clean-fusion predictions)."""
    torch._dynamo.reset()
    counters.clear()
    result = run_attack_job(attack_config(tmp_path, f"engine.precision={precision}", f"attack.mode={mode}"))
    records = result["records"]
    assert records
    if mode == "paper":
        assert all(r.steps is not None or r.success is False for r in records)
        assert all(r.real_metric is not None for r in records)  # the real pipeline judged each
        assert sum(len(r.trajectory) for r in records) > len(records)  # steps ran
    else:
        assert all(r.set_aside for r in records)
    assert (tmp_path / "run" / "gallery_untargeted.png").exists()  # the gallery's predictions ran too
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
