"""attack.py end to end (subprocess, the real Lightning trainer) on a tiny synthetic set."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from medis.reporting import read_records
from medis.results import fusion

from .entry_points import REPO, only, run_entry


def attack(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    """attack.py on 20 synthetic images (4 in the test split), 3 steps, outputs under tmp_path."""
    return run_entry("attack.py", tmp_path, "model.input_size=64", "attack.budget.steps=3", *overrides, images=20)


def test_attack_writes_records_summary_and_logs(tmp_path: Path, trained_checkpoint: Path) -> None:
    done = attack(tmp_path, "losses=paper6", "target=all", "data.eval_batch_size=3",
                  f"model.checkpoint={trained_checkpoint}")
    assert done.returncode == 0, done.stderr[-3000:]
    run = only("outputs/attack/runs/*", tmp_path)
    records = read_records(run / "records.csv")
    test_images = 4  # 20 synthetic images: 14 train, 2 val, 4 test
    kinds = {"untargeted", "random", "most_similar", "white", "black"}
    assert {r["target"] for r in records} == kinds
    for kind in kinds:
        rows = [r for r in records if r["target"] == kind]
        assert len(rows) % 6 == 0 and 0 < len(rows) <= test_images * 6
        assert {r["loss"] for r in rows} == {"logcosh_dice", "bce_dice", "exp_log", "structure", "lovasz", "combined"}
    # the fused numbers of summary.csv, recomputed from the records here
    with open(run / "summary.csv", newline="") as handle:
        summary = {(row["target"], row["loss"]): row for row in csv.DictReader(handle)}
    for row in fusion.summary_table(records):
        written = summary[(row["target"], row["loss"])]
        assert (written["asr"] == "") if row["asr"] is None else float(written["asr"]) == pytest.approx(row["asr"])
        assert (int(written["images"]), int(written["set_aside"])) == (row["images"], row["set_aside"])
    assert "parallel fusion" in (run / "summary.md").read_text()
    # clean mode: the attack worked on some images, set aside the others, judged every attacked one
    # through the real pipeline (8-bit image, the loaders' resize)
    attacked = [r for r in records if not r.set_aside]
    assert attacked and all(r.real_metric is not None and r.real_success is not None for r in attacked)
    assert all(r.clean_metric is not None for r in records)
    assert all(r.steps >= 1 for r in records if r.success)  # no success before an update
    assert "real ASR %" in (run / "summary.md").read_text()
    metrics = (run / "csv" / "metrics.csv").read_text()
    header = metrics.splitlines()[0].split(",")  # names without eps; per target since the run has several
    assert {"attack/asr", "attack/by_loss/bce_dice/asr", "attack/by_target/white/asr"} <= set(header)
    assert list((run / "wandb").glob("offline-run-*"))
    assert "attacking " in (run / "attack.log").read_text() and " Mpx) · " in (run / "attack.log").read_text()
    # the gallery: one PNG per target, as many rows as test images (<= gallery_size 4)
    for kind in kinds:
        with Image.open(run / f"gallery_{kind}.png") as png:
            assert png.height > 4 * 64 and png.width > 7 * 64
    assert "attack run folder:" in done.stdout and "gallery_white.png" in done.stdout
    # what the run checked and how it was made
    checks = json.loads((run / "checks.json").read_text())
    assert checks["masks"]["total"] == test_images and "zero_gradient_share" in checks["victim"]
    info = json.loads((run / "run_info.json").read_text())
    assert info["seed"] == 0 and info["versions"]["torch"]


def test_attack_fast_path_options_run(tmp_path: Path, trained_checkpoint: Path) -> None:
    """bf16 autocast, channels-last and max_batch=auto (all replicas at once on CPU) through attack.py."""
    done = attack(tmp_path, "losses.names=[bce,dice]", "engine.precision=bf16", "engine.channels_last=true",
                  "engine.max_batch=auto", "logger=csv", "gallery_size=0", f"model.checkpoint={trained_checkpoint}")
    assert done.returncode == 0, done.stderr[-3000:]
    records = read_records(only("outputs/attack/runs/*", tmp_path) / "records.csv")
    assert len(records) == 2 * 4 and all(r["forwards"] >= 1 for r in records if not r.set_aside)
    assert any(not r.set_aside for r in records)


@pytest.mark.parametrize(("override", "message"), [
    ("losses.names=[bce,nope]", "error: losses.names: unknown loss(es) ['nope']; valid: "),
    ("target.kinds=[white,grey]", "error: target.kinds: unknown target kind 'grey'; valid kinds: "),
    ("attack.budget.eps=-0.1", "error: attack.budget.eps=-0.1: expected a number in [0, 1], or null"),
    ("attack.budget.steps=0", "error: attack.budget.steps=0: expected an integer >= 1"),
    ("attack.criteria.success=1.5", "error: attack.criteria.success=1.5: expected a number in [0, 1], or null"),
    ("engine.precision=fp16x", "error: engine.precision='fp16x': expected one of fp32, bf16"),
    ("attack.budget.eps=abc", "error: attack.budget.eps='abc': expected a number in [0, 1], or null"),
    ("seed=x", "error: seed='x': expected an integer in [0, 4294967295]"),
    ("resume=maybe", "error: resume='maybe': expected true or false"),
    ("data.limit_test=3", "error: Could not override 'data.limit_test'. To append to your config use +data.limit_test=3"),
    ("attack=nope", "error: In 'attack': Could not find 'attack/nope'; available: apgd, asma,"),
    ("trainer.accelerator=tpu", "error: trainer.accelerator='tpu' needs a package this machine lacks"),
])
def test_attack_rejects_bad_values_before_work(tmp_path: Path, override: str, message: str) -> None:
    done = attack(tmp_path, override)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert not list(tmp_path.glob("outputs/attack/runs/*/records.csv"))  # no work started


def test_attack_refuses_an_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    done = attack(tmp_path, f"paths.output_dir={blocker / 'run'}", "logger=csv")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: output folder {blocker / 'run'} is not writable")


def test_attack_rejects_a_checkpoint_of_another_model(tmp_path: Path) -> None:
    from medis.models.unet import UNet

    checkpoint = tmp_path / "unet.pt"
    torch.save(UNet().state_dict(), checkpoint)
    done = attack(tmp_path, f"model.checkpoint={checkpoint}")
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(checkpoint) in last, last


def test_attack_rejects_an_empty_data_set(tmp_path: Path) -> None:
    empty = tmp_path / "ISIC2018"
    empty.mkdir()
    done = subprocess.run([sys.executable, "attack.py", "data=isic2018", f"data.root={empty}",
                           f"paths.log_dir={tmp_path / 'outputs'}", "model.input_size=64"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(empty) in last, last


@pytest.mark.slow  # a full run, a killed one and its resume (~30 s); tests/test_stop_signals.py resumes a stopped run by default
def test_killed_run_resumes_to_the_same_records(tmp_path: Path) -> None:
    """SIGKILL the process once some batches are on disk, then resume=true: same records as a full run."""
    common = ("losses.names=[bce,dice]", "target=all", "data.eval_batch_size=1", "attack.budget.steps=6", "logger=csv")
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    done = attack(tmp_path, *common, f"hydra.run.dir={full_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    full = read_records(full_dir / "records.csv")

    args = [sys.executable, "attack.py", f"paths.log_dir={tmp_path / 'outputs'}",
            f"data.root={tmp_path / 'synthetic_isic'}", "data.synthetic.n=20", "data.synthetic.size=64",
            "data.num_workers=0", "model.input_size=64", *common, f"hydra.run.dir={cut_dir}"]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = cut_dir / "records.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if records.exists() and len(read_records(records)) >= 20:  # two of four batches on disk
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be interrupted"
    partial = read_records(records)
    assert 0 < len(partial) < len(full)

    done = attack(tmp_path, *common, f"hydra.run.dir={cut_dir}", "resume=true")
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = read_records(records)
    key = lambda r: (r["target"], r["image_id"], r["loss"])  # noqa: E731
    assert sorted(map(key, resumed)) == sorted(map(key, full))
    by_key = {key(r): r for r in full}
    for record in resumed:
        twin = by_key[key(record)]
        assert (record["success"], record["steps"]) == (twin["success"], twin["steps"])
        assert record["metric"] == pytest.approx(twin["metric"], abs=1e-6)
