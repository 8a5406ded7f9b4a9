"""``attack.py model.checkpoint=<a checkpoint trained by train.py>`` attacks the model as trained: the
same records as the same command with its architecture and input size written out, whatever the
config's defaults (pranet_lite at 192 px); an override that contradicts the checkpoint is one line
naming both values, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from medis.reporting import read_records

from .entry_points import only, run_entry

COMMON = ("attack.budget.steps=2", "losses.names=[bce,dice]", "data.eval_batch_size=3", "trainer.limit_test_batches=1",
          "logger=csv", "gallery_size=0", "engine.max_batch=null")


def test_the_checkpoint_alone_gives_the_records_of_its_written_out_victim(tmp_path: Path,
                                                                          trained_checkpoint: Path) -> None:
    runs = {}
    for name, model in (("alone", ()), ("written_out", ("model=pranet_lite", "model.input_size=64"))):
        done = run_entry("attack.py", tmp_path / name, *COMMON, *model, f"model.checkpoint={trained_checkpoint}",
                         images=20)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "64 px, fusion last" in done.stderr + done.stdout  # the victim the checkpoint carries, logged
        runs[name] = [dict(r) for r in read_records(only("outputs/attack/runs/*/records.csv", tmp_path / name))]
    assert runs["alone"] and runs["alone"] == runs["written_out"]


@pytest.mark.slow  # two refused runs that load the model first (~15 s)
def test_an_override_that_contradicts_the_checkpoint_is_one_line(tmp_path: Path, trained_checkpoint: Path) -> None:
    for override, named in (("model.input_size=96", "model.input_size=96 contradicts"),
                            ("model=unet", "model=UNet(base_channels=32, depth=5, bilinear=True) contradicts")):
        done = run_entry("attack.py", tmp_path / override.replace("=", "_"), *COMMON, override,
                         f"model.checkpoint={trained_checkpoint}", images=20)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and named in lines[-1] and "pranet_lite(channel=16)" in lines[-1]
        assert not list((tmp_path / override.replace("=", "_")).glob("outputs/attack/runs/*/records.csv"))
