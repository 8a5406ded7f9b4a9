"""Run folders as users meet them: two runs at once, odd paths, files that cannot be written."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from medis.data.synthetic import generate
from medis.reporting import read_records
from medis.results.records import record_key

from .entry_points import REPO

LOSSES = ("bce", "dice", "tversky")
TARGETS = ("untargeted", "most_similar", "white", "black")  # never the image's own mask: none skipped
TEST_IMAGES = 4  # of the 20 synthetic images, the test split holds 4


def attack_command(tmp_path: Path, checkpoint: Path, *overrides: str) -> list[str]:
    return [sys.executable, "attack.py", f"paths.log_dir={tmp_path / 'outputs'}",
            f"data.root={tmp_path / 'synthetic_isic'}", "data.synthetic.n=20", "data.synthetic.size=64",
            "model.input_size=64", f"model.checkpoint={checkpoint}", f"losses.names=[{','.join(LOSSES)}]",
            f"target.kinds=[{','.join(TARGETS)}]", "attack.budget.steps=5", "data.eval_batch_size=2", "logger=csv", "gallery_size=0",
            *overrides]


def at_once(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Start every command at the same moment, wait for all."""
    processes = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for command in commands]
    results = []
    for process, command in zip(processes, commands):
        out, err = process.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    return results


def assert_every_record_once(run: Path) -> None:
    """records.csv holds each (image, target, loss) exactly once, for every test image."""
    keys = Counter(record_key(record) for record in read_records(run / "records.csv"))
    assert max(keys.values()) == 1, [key for key, count in keys.items() if count > 1][:5]
    assert len(keys) == TEST_IMAGES * len(LOSSES) * len(TARGETS)


def test_two_fresh_runs_at_once_one_is_refused_and_no_row_is_lost(tmp_path: Path, trained_checkpoint: Path) -> None:
    run = tmp_path / "shared run"
    first, second = at_once(*[attack_command(tmp_path, trained_checkpoint, f"hydra.run.dir={run}")] * 2)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], (first.stderr[-2000:], second.stderr[-2000:])
    refused = first if first.returncode == 2 else second
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: run folder {run} is in use by PID ") and "wait_for_lock" in line, line
    assert len(refused.stderr.strip().splitlines()) <= 2  # "Seed set" at most, then the one line
    assert_every_record_once(run)


@pytest.mark.slow  # two runs and two resumes (~15 s)
def test_two_resumed_runs_at_once_write_no_row_twice(tmp_path: Path, trained_checkpoint: Path) -> None:
    """The second waits for the first (wait_for_lock), then finds every record done and adds none."""
    run = tmp_path / "resumed"
    command = attack_command(tmp_path, trained_checkpoint, f"hydra.run.dir={run}", "resume=true", "wait_for_lock=600")
    first, second = at_once(command, command)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr[-2000:], second.stderr[-2000:])
    assert_every_record_once(run)


def test_paths_with_spaces_and_accents_work_as_typed(tmp_path: Path, trained_checkpoint: Path) -> None:
    """README's example: a data root and a run folder with spaces and non-ASCII letters, as the shell
    hands them over (no Hydra quoting typed)."""
    data, run = tmp_path / "my data" / "dérmato (2018)", tmp_path / "runs" / "essai n°1"
    done = subprocess.run(attack_command(tmp_path, trained_checkpoint, f"data.root={data}", f"hydra.run.dir={run}",
                                         "target.kinds=[untargeted]"),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (data / "ISIC2018_Task1-2_Test_Input").is_dir()
    records = read_records(run / "records.csv")
    assert len(records) == TEST_IMAGES * len(LOSSES)
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text(encoding="utf-8"))
    assert f"data.root='{data}'" in overrides  # quoted for Hydra on the way in


def test_an_os_error_on_a_run_file_is_one_line(tmp_path: Path, trained_checkpoint: Path) -> None:
    run = tmp_path / "run"
    (run / "records.csv").mkdir(parents=True)  # a folder where the run must write its records
    done = subprocess.run(attack_command(tmp_path, trained_checkpoint, f"hydra.run.dir={run}"),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == f"error: {run / 'records.csv'}: Is a directory"
    assert "Traceback" not in done.stderr


def test_a_file_size_limit_is_one_line_and_the_rows_written_stay_whole(tmp_path: Path, trained_checkpoint: Path) -> None:
    """A real limit on file sizes (``ulimit -f``, as quotas and some schedulers set it): the write that
    crosses it fails with EFBIG, which names no file. The run ends with one line naming records.csv,
    the file keeps whole rows only, and resume completes it."""
    run = tmp_path / "run"
    limit = 8 * 1024  # records.csv needs about 24 KiB; every other run file stays under 5 KiB

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes get EFBIG

    generate("isic2018", tmp_path / "synthetic_isic", n=20, size=64, seed=0, progress=False)  # the set the run asks for
    # data.num_workers=0: the limit holds for every file, also the shared memory through which DataLoader
    # workers hand over batches (a real limit is gigabytes, this one kilobytes)
    done = subprocess.run(attack_command(tmp_path, trained_checkpoint, f"hydra.run.dir={run}", "data.num_workers=0"),
                          cwd=REPO,
                          capture_output=True, text=True, timeout=180, preexec_fn=limited)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == f"error: {run / 'records.csv'}: File too large"
    assert "Traceback" not in done.stderr
    data = (run / "records.csv").read_bytes()
    assert data.endswith(b"\n") and len(data) <= limit
    assert 0 < len(read_records(run / "records.csv")) < TEST_IMAGES * len(LOSSES) * len(TARGETS)
    resumed = subprocess.run(attack_command(tmp_path, trained_checkpoint, f"hydra.run.dir={run}", "resume=true"),
                             cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_every_record_once(run)
