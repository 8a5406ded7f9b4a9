"""attack.py with two DDP processes on CPU (gloo): per-rank shards, one merged record per key, same
results as one process (the distributed sampler pads 5 test images to 6: one image is attacked twice)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from medis.lightning.train_job import _cpu_batchnorm
from medis.reporting import read_records
from medis.results import fusion

from .entry_points import only, run_entry

COMMON = ("model.input_size=64", "attack.budget.steps=3", "losses.names=[bce,dice]",
          "target.kinds=[untargeted,random,white]", "data.eval_batch_size=2", "logger=csv")
IMAGES = 25  # synthetic ISIC 2018 split: 18 train, 2 val, 5 test


def records_of(root: Path) -> list[dict]:
    return read_records(only("outputs/attack/runs/*/records.csv", root))


@pytest.mark.slow  # two processes and a gloo group (~25 s)
def test_two_gloo_ranks_match_one_process(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    done = run_entry("attack.py", one, *COMMON, images=IMAGES)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_entry("attack.py", two, *COMMON, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                     images=IMAGES)
    assert done.returncode == 0, done.stderr[-3000:]
    run = only("outputs/attack/runs/*", two)
    assert not list(run.glob("records.rank*.csv")), "shards must be merged and removed"

    single, merged = records_of(one), records_of(two)
    key = lambda r: (r["target"], r["image_id"], r["loss"])  # noqa: E731
    assert len({key(r) for r in merged}) == len(merged), "a padded image was counted twice"
    assert sorted(map(key, merged)) == sorted(map(key, single))
    assert len({r["image_id"] for r in merged}) == 5
    # other batch compositions change float sums; sign steps amplify that, so compare metrics loosely
    by_key = {key(r): r for r in single}
    for record in merged:
        assert record["metric"] == pytest.approx(by_key[key(record)]["metric"], abs=0.02)
    fused = lambda records: {row["target"]: row["asr"] for row in fusion.fuse(records)}  # noqa: E731
    for target, asr in fused(merged).items():
        assert asr == pytest.approx(fused(single)[target], abs=20.0)  # within one of five images
    assert (run / "summary.md").exists()


SLOW_RANK = '''\
import os
if os.environ.get("LOCAL_RANK") == "1":  # Lightning's second DDP process: every engine step 1.5 s longer
    import time
    from medis.lightning import attack_progress
    report = attack_progress.BatchProgress.report
    def slower(self, progress):
        time.sleep(1.5)
        report(self, progress)
    attack_progress.BatchProgress.report = slower
'''


@pytest.mark.slow  # two processes, one made 30-40 s slower than the other (~70 s)
def test_a_rank_later_than_the_timeout_is_waited_for(tmp_path: Path) -> None:
    """Rank 1 ends its shard 30-40 s after rank 0, with a process-group timeout of 20 s: rank 0 waits
    at the finish line (marks in the run folder), not in a collective, and the run merges both."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_RANK)
    done = run_entry("attack.py", tmp_path, *COMMON, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                     "trainer.strategy.timeout.minutes=0.34", images=IMAGES,
                     env={"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stderr[-3000:]
    run = only("outputs/attack/runs/*", tmp_path)
    assert len({r["image_id"] for r in records_of(tmp_path)}) == 5
    assert not list(run.glob(".rank*")) and not list(run.glob("records.rank*.csv"))


@pytest.mark.slow  # two training processes (~20 s)
def test_training_runs_under_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    """trainer=ddp trains PraNet (whose unused ImageNet classifier DDP must allow) on two gloo ranks,
    with batch norm per rank (SyncBatchNorm needs CUDA modules), and saves its checkpoints."""
    done = run_entry("train.py", tmp_path, "experiment=smoke_train", "trainer=ddp", "trainer.accelerator=cpu",
                     "trainer.devices=2", "trainer.max_epochs=1", "logger=csv", images=IMAGES)
    assert done.returncode == 0, done.stderr[-3000:]
    run = only("outputs/train/runs/*", tmp_path)
    assert (run / "checkpoints" / "last.ckpt").exists()


def test_sync_batchnorm_is_dropped_only_on_cpu_ranks() -> None:
    def trainer(**keys):
        return OmegaConf.create({"sync_batchnorm": True, **keys})

    assert _cpu_batchnorm(trainer(accelerator="cpu")) == {"sync_batchnorm": False}
    assert _cpu_batchnorm(trainer(accelerator="gpu")) == {}
    assert _cpu_batchnorm(OmegaConf.create({"accelerator": "cpu"})) == {}  # not asked for: nothing to drop
    assert _cpu_batchnorm(trainer(accelerator="auto")) == ({} if torch.cuda.is_available() else {"sync_batchnorm": False})
