"""train.py end to end (subprocesses, as a user runs it), on small synthetic data in a temp folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from medis.models.checkpoints import read_checkpoint
from medis.models.pranet import PraNet
from medis.reporting.wandb_offline import read_offline_run

from .entry_points import only, run_entry
from .models.seeded_weights import fill_seeded


def train(tmp_path: Path, *overrides: str, multirun: bool = False) -> subprocess.CompletedProcess:
    """train.py on 24 synthetic images 64 px high, outputs under tmp_path."""
    return run_entry("train.py", tmp_path, *overrides, multirun=multirun)


@pytest.mark.slow  # the full Res2Net PraNet (~20 s); tests/models/ check it fast
def test_real_pranet_fast_dev_run(tmp_path: Path) -> None:
    done = train(tmp_path, "model=pranet", "data=synthetic_isic", "trainer=cpu", "debug=fdr", "data.batch_size=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "final: val/dice" in done.stdout


@pytest.mark.slow  # the full Res2Net PraNet from an official-layout file (~13 s); tests/models/test_pranet.py loads that layout fast
def test_transfer_from_official_layout(tmp_path: Path) -> None:
    """init_from= an official-layout PraNet state_dict: training starts from those weights."""
    official = fill_seeded(PraNet(), seed=5).state_dict()
    torch.save(official, tmp_path / "PraNet-19.pth")
    done = train(tmp_path, "model=pranet", "model.input_size=64", "trainer=cpu", "logger=none",
                 f"init_from={tmp_path / 'PraNet-19.pth'}", "module.optimizer.lr=0.0", "module.scales=[1.0]",
                 "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
                 "data.batch_size=2")
    assert done.returncode == 0, done.stderr[-3000:]
    last = only("outputs/train/runs/*/checkpoints/last.ckpt", tmp_path)
    trained = read_checkpoint(last)["state_dict"]  # our checkpoints load with weights_only=True
    fresh_net = PraNet()
    fresh = fresh_net.state_dict()
    parameters = [name for name, _ in fresh_net.named_parameters()]
    assert len(parameters) == 463
    for key in parameters:  # lr 0: every weight is still the transferred one
        assert torch.equal(trained[f"model.{key}"], official[key]), key
    assert not torch.equal(official["ra2_conv4.conv.weight"], fresh["ra2_conv4.conv.weight"])


def test_multirun_gives_separate_runs_and_wandb_folders(tmp_path: Path) -> None:
    done = train(tmp_path, "experiment=demo_train", "seed=1,2", "trainer.max_epochs=1",
                 "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "model.input_size=64",
                 "module.scales=[1.0]", multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = only("outputs/train/multiruns/*", tmp_path)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    run_ids, groups = set(), set()
    for job, seed in zip(jobs, (1, 2)):
        offline = only("wandb/offline-run-*", job)
        run_ids.add(offline.name.rsplit("-", 1)[-1])
        run = read_offline_run(offline)  # named by its overrides, in the sweep's group, comparison keys on top
        assert run.job_type == "train" and f"seed={seed}" in run.name and run.config["seed"] == seed
        assert run.config["dataset"] == "synthetic_isic" and run.config["model"] == "pranet_lite"
        assert {"data:synthetic_isic", "model:pranet_lite"} <= set(run.tags)
        groups.add(run.group)
        assert list(offline.glob("files/media/images/val/predictions_*.png"))  # the W&B prediction gallery
        assert list((job / "predictions").glob("epoch_*.png"))
        metrics = (job / "csv" / "metrics.csv").read_text()
        assert "val/dice" in metrics.splitlines()[0]
        assert f"seed: {seed}" in (job / ".hydra" / "config.yaml").read_text()
    assert len(run_ids) == 2 and len(groups) == 1 and groups.pop().startswith("train ")


@pytest.mark.parametrize("override, message", [
    ("data.synthetic=null", "missing data folder"),
    ("init_from=/nonexistent/PraNet-19.pth", "init_from='/nonexistent/PraNet-19.pth': expected the path of an existing file"),
    ("data.val_fraction=2.0", "data.val_fraction=2.0: expected a number in [0, 1)"),
    ("module.optimizer.lr=fast", "module.optimizer.lr='fast': expected a number >= 0"),
])
def test_user_errors_are_one_line(tmp_path: Path, override: str, message: str) -> None:
    done = train(tmp_path, "debug=fdr", override)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert "Traceback" not in done.stderr
