"""One writer per run folder: the lock itself (medis.runtime.run_lock), across processes."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medis.runtime import run_lock
from medis.runtime.run_lock import LOCK_NAME, RunFolderBusy, RunLock, holder_of, lock_run_folder

HOLD = """
import sys, time
from medis.runtime.run_lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_in_another_process(folder: Path, seconds: float) -> subprocess.Popen:
    """A process that takes ``folder``'s lock and keeps it ``seconds``; returns once it holds it."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_process_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    holder = hold_in_another_process(tmp_path, 30)
    try:
        with pytest.raises(RunFolderBusy) as caught:
            RunLock(tmp_path).acquire()
        line = str(caught.value)
        assert "\n" not in line and str(tmp_path) in line
        assert f"PID {holder.pid} on {socket.gethostname()}" in line and "wait_for_lock=<seconds>" in line
    finally:
        holder.kill()
        holder.wait()


def test_waiting_takes_the_lock_once_the_holder_ends(tmp_path: Path) -> None:
    holder = hold_in_another_process(tmp_path, 3.0)  # long enough that a slow CI machine still waits
    start = time.monotonic()
    with RunLock(tmp_path, wait=30, poll=0.05) as lock:
        assert lock.held and time.monotonic() - start > 0.3
        assert holder_of(tmp_path).pid == os.getpid()
    holder.wait()


def test_a_killed_holder_leaves_no_lock_in_the_way(tmp_path: Path) -> None:
    holder = hold_in_another_process(tmp_path, 60)
    holder.kill()
    holder.wait()
    assert holder_of(tmp_path).pid == holder.pid  # the file still names the dead holder...
    with RunLock(tmp_path) as lock:  # ...but nothing holds it
        assert lock.held and holder_of(tmp_path).pid == os.getpid()


def test_reentrant_in_one_process_and_exclusive_between_objects(tmp_path: Path) -> None:
    first = lock_run_folder(tmp_path)
    again = lock_run_folder(tmp_path)
    assert again is first
    with pytest.raises(RunFolderBusy):
        RunLock(tmp_path).acquire()  # another open of the file is another holder
    again.release()
    assert first.held
    first.release()
    assert not first.held
    RunLock(tmp_path).acquire().release()


def test_without_flock_a_stale_pid_file_is_taken_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where flock is missing (ENOLCK), the PID file of a dead holder on this host is stale."""
    import fcntl

    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    pid_file = tmp_path / (LOCK_NAME + ".pid")
    pid_file.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid, "since": "then", "command": "x"}))
    with RunLock(tmp_path) as lock:
        assert lock.held and holder_of(tmp_path).pid == os.getpid()
    assert not pid_file.exists()

    pid_file.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "then", "command": "attack.py"}))
    with pytest.raises(RunFolderBusy, match=f"in use by PID 1 on elsewhere .*if that run is gone, delete {pid_file}"):
        RunLock(tmp_path).acquire()


def test_held_locks_are_forgotten_on_release(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        assert tmp_path.resolve() in run_lock._HELD
    assert tmp_path.resolve() not in run_lock._HELD
