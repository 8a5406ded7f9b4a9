"""A run told to stop says how it ended: SIGTERM to the whole process group (``timeout``, SLURM,
Kubernetes; DataLoader workers included) or SIGINT (Ctrl-C) flushes the records, writes a summary
marked partial, prints one line with the resume command and exits 128 + signal; the printed command
finishes the run with every record once."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from medis.reporting import read_records
from medis.results.records import record_key

from .entry_points import REPO

TEST_IMAGES = 8  # of the 40 synthetic images, the test split holds 8
LOSSES, TARGETS = ("bce", "dice"), ("untargeted", "white")


def command(tmp_path: Path, checkpoint: Path, run: Path, *overrides: str) -> list[str]:
    """attack.py as a user types it, with the default data loader workers; size-limiting overrides only."""
    return [sys.executable, "attack.py", f"paths.log_dir={tmp_path / 'outputs'}", f"data.root={tmp_path / 'isic'}",
            "data.synthetic.n=40", "data.synthetic.size=64", "model.input_size=64", f"model.checkpoint={checkpoint}",
            f"losses.names=[{','.join(LOSSES)}]", f"target.kinds=[{','.join(TARGETS)}]", "attack.budget.steps=8",
            "data.eval_batch_size=1", "gallery_size=0", f"hydra.run.dir={run}", *overrides]


def stop_midway(args: list[str], progress: Path, signum: int, group: bool) -> subprocess.CompletedProcess:
    """Start the run; once ``progress`` shows work on disk (two images' records, or a checkpoint), send
    ``signum`` to it (or to its whole process group); return how it ended."""
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if progress.exists() and (progress.suffix == ".ckpt" or
                                  len(read_records(progress)) >= 2 * len(LOSSES) * len(TARGETS)):
            (os.killpg if group else os.kill)(process.pid, signum)
            break
        time.sleep(0.02)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


@pytest.mark.parametrize(("signum", "group", "status"), [(signal.SIGTERM, True, 143),
                                                    pytest.param(signal.SIGINT, False, 130, marks=pytest.mark.slow)],
                         ids=["sigterm-to-the-group", "sigint"])
def test_a_stopped_run_ends_partial_and_its_resume_line_finishes_it(tmp_path: Path, trained_checkpoint: Path,
                                                                      signum: int, group: bool, status: int) -> None:
    run = tmp_path / "run"
    name = signal.Signals(signum).name
    done = stop_midway(command(tmp_path, trained_checkpoint, run), run / "records.csv", signum, group)
    assert done.returncode == status, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {name} after ") and f" of {TEST_IMAGES} images; resume with: " in last, last
    finished = int(last.split(" after ")[1].split(" of ")[0])
    partial = read_records(run / "records.csv")  # whole rows only
    assert 0 < len({r.image_id for r in partial}) < TEST_IMAGES and finished <= len({r.image_id for r in partial})
    summary = (run / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith(f"**Partial**: stopped by {name} after {finished} of {TEST_IMAGES} images")
    if not group:
        return
    resume = shlex.split(last.split("resume with: ", 1)[1])
    assert resume[0] == "python" and "resume=true" in resume
    resumed = subprocess.run([sys.executable, *resume[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    keys = Counter(record_key(record) for record in read_records(run / "records.csv"))
    assert max(keys.values()) == 1 and len(keys) == TEST_IMAGES * len(LOSSES) * len(TARGETS)
    assert "Partial" not in (run / "summary.md").read_text(encoding="utf-8")
    # the same run resumed with another radius would mix two experiments in one records.csv: refused
    before = {name: (run / name).read_bytes() for name in ("records.csv", ".hydra/config.yaml", "summary.md")}
    mixed = subprocess.run([sys.executable, *resume[1:], "attack.budget.eps=0.0157"], cwd=REPO, capture_output=True,
                           text=True, timeout=600)
    assert mixed.returncode == 2
    line = mixed.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: resume=true into {run}: ") and "attack.budget.eps (stored None, now 0.0157)" in line
    assert before == {name: (run / name).read_bytes() for name in before}  # .hydra/ as the first run wrote it


@pytest.mark.slow  # three or four job starts of about 30 s each
def test_a_requeued_job_resumes_and_finishes(tmp_path: Path, trained_checkpoint: Path) -> None:
    """The SLURM path's requeue, run locally by the same plugin (``hydra/launcher=submitit_local``): 30 s
    before the job's time is up the launcher sends SIGUSR2 (a real signal, as SLURM's ``--signal``
    does), submitit checkpoints and requeues the job, and the job, started again with ``resume=true``,
    continues from the records on disk until every record is there once."""
    sweep = tmp_path / "sweep"
    args = command(tmp_path, trained_checkpoint, tmp_path / "unused", "attack.budget.steps=60",
                   "attack.criteria.stop=never", "logger=csv", "resume=true")
    args = [a for a in args if not a.startswith(("hydra.run.dir=", "attack.budget.steps=8"))]
    done = subprocess.run([args[0], args[1], "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=1",
                           f"hydra.sweep.dir={sweep}", *args[2:]], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = "".join(path.read_text(errors="replace") for path in sweep.glob(".submitit/*/*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs, logs[-3000:]
    assert "partial summary.md" in logs  # the interrupted start said what it had done
    keys = Counter(record_key(record) for record in read_records(sweep / "0" / "records.csv"))
    assert max(keys.values()) == 1 and len(keys) == TEST_IMAGES * len(LOSSES) * len(TARGETS)
    assert "Partial" not in (sweep / "0" / "summary.md").read_text(encoding="utf-8")


@pytest.mark.slow  # a training stopped after its first epochs, then resumed (~40 s)
def test_a_stopped_training_says_where_and_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "train run"
    args = [sys.executable, "train.py", "experiment=demo_train", f"data.root={tmp_path / 'isic'}", "data.synthetic.n=40",
            "data.synthetic.size=64", "model.input_size=64", "module.scales=[1.0]", "trainer.max_epochs=6",
            "logger=csv", "callbacks.val_predictions=null", f"hydra.run.dir={run}"]
    done = stop_midway(args, run / "checkpoints" / "last.ckpt", signal.SIGTERM, group=True)
    assert done.returncode == 143, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGTERM in epoch ") and " of 6; resume with: " in last, last
    resume = shlex.split(last.split("resume with: ", 1)[1])
    assert f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}" in resume
    resumed = subprocess.run([sys.executable, *resume[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "final: val/dice" in resumed.stdout
