"""One writer per run folder: an advisory lock with its holder's host and PID.

Two runs pointed at the same folder (a re-launched SLURM job, a second terminal, a sweep that reuses
``hydra.run.dir``) would otherwise both write ``records.csv``: a fresh run deletes the file the
other is appending to, a resumed one appends the same rows beside it. :class:`RunLock` is taken
before any file of the run is touched (``medis.runtime.run_guard`` does it for ``train.py`` and
``attack.py``); a second run into a held folder stops with one line naming the folder and the
holder, or waits when asked to.

How it holds:

- ``<folder>/.medis.lock`` is locked with ``flock(LOCK_EX | LOCK_NB)``. The kernel releases a
  ``flock`` when its holder dies, however it dies, so a lock left by a killed run is never in the
  way: the file may still name the dead holder, but nothing holds it and the next run takes it.
- The file holds the holder as JSON (host, PID, start time, command), rewritten by each new holder,
  so the refusal can say who has the folder.
- On a file system without ``flock`` (some network mounts answer ``ENOLCK`` or ``EOPNOTSUPP``) the
  lock is ``<folder>/.medis.lock.pid``, created with ``O_EXCL`` and removed on release. A file left
  by a dead holder is *stale*: when it names this host and a PID that no longer runs it is removed
  and the lock taken; a holder on another host cannot be checked, and the error says which file to
  delete once that run is known to be gone.

The lock is re-entrant inside one process (a Hydra run takes it at run start and again at job
start). Pure Python (fcntl, os, json).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from medis.errors import MedisError

__all__ = ["LOCK_NAME", "Holder", "RunFolderBusy", "RunLock", "holder_of", "lock_run_folder"]

LOCK_NAME = ".medis.lock"
"""The lock file inside a run folder (``flock``); ``LOCK_NAME + ".pid"`` where ``flock`` is missing."""

_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_HELD: dict[Path, "RunLock"] = {}  # the locks this process holds, by resolved folder


class RunFolderBusy(MedisError):
    """Another run holds the run folder."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a run folder."""

    host: str
    pid: int
    since: str
    command: str

    @classmethod
    def me(cls) -> Holder:
        """This process."""
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
        command = command if len(command) <= 160 else command[:157] + "..."
        return cls(socket.gethostname(), os.getpid(), time.strftime("%Y-%m-%d %H:%M:%S"), command)

    def describe(self) -> str:
        """``PID 123 on host since 2026-11-29 10:00:00 (attack.py ...)``."""
        return f"PID {self.pid} on {self.host} since {self.since} ({self.command})"

    def is_dead(self) -> bool:
        """Whether this holder is known to be gone: same host and no process with its PID."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # a process of another user: alive
            return False
        return False


def _read_holder(path: Path) -> Holder | None:
    """The holder written in a lock file (``None`` when missing, empty or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Holder(str(data["host"]), int(data["pid"]), str(data["since"]), str(data["command"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def holder_of(folder: str | os.PathLike) -> Holder | None:
    """Who holds or last held ``folder``'s lock, as written in its lock file (``None``: never locked)."""
    folder = Path(folder)
    return _read_holder(folder / (LOCK_NAME + ".pid")) or _read_holder(folder / LOCK_NAME)


class RunLock:
    """The exclusive lock of one run folder (see the module docstring).

    Args:
        folder: the run folder (created if missing).
        wait: seconds to wait for a holder to finish before giving up (0: give up at once;
            ``float("inf")``: wait as long as it takes).
        poll: seconds between two tries while waiting.

    Use as a context manager, or :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, folder: str | os.PathLike, wait: float = 0.0, poll: float = 0.5) -> None:
        self.folder = Path(folder)
        self.wait = float(wait)
        self.poll = poll
        self._fd: int | None = None
        self._pid_file: Path | None = None
        self._depth = 0

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.folder / LOCK_NAME

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._depth > 0

    def acquire(self) -> RunLock:
        """Take the lock (again, when this object holds it), waiting up to ``wait`` seconds; returns ``self``.

        Raises:
            RunFolderBusy: another run, or another :class:`RunLock` of this process, holds the folder
                (one line: folder, holder, what to do).
            OSError: the folder or its lock file cannot be created (the caller names the path).
        """
        if self._depth:
            self._depth += 1
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait
        while True:
            busy = self._try()
            if busy is None:
                self._depth = 1
                _HELD[self.folder.resolve()] = self
                return self
            if time.monotonic() >= deadline:
                raise RunFolderBusy(busy)
            time.sleep(min(self.poll, max(deadline - time.monotonic(), 0.0)))

    def _try(self) -> str | None:
        """One try; ``None`` on success, else the refusal's message."""
        if self._pid_file is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return self._busy(_read_holder(self.path), self.path)
            except OSError as err:
                os.close(fd)
                if err.errno not in _NO_FLOCK:
                    raise
                self._pid_file = self.folder / (LOCK_NAME + ".pid")  # no flock here: use the PID file
                return self._try()
            self._fd = fd
            self._write_holder(fd)
            return None
        return self._try_pid_file()

    def _try_pid_file(self) -> str | None:
        """The ``O_EXCL`` fallback: create the PID file, or remove it when its holder is dead."""
        assert self._pid_file is not None
        try:
            fd = os.open(self._pid_file, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = _read_holder(self._pid_file)
            if holder is not None and holder.is_dead():
                self._pid_file.unlink(missing_ok=True)  # a stale lock: its holder is gone
                return self._try_pid_file()
            return self._busy(holder, self._pid_file, stale_hint=True)
        self._write_holder(fd)
        os.close(fd)
        return None

    def _busy(self, holder: Holder | None, path: Path, stale_hint: bool = False) -> str:
        who = holder.describe() if holder else "another process"
        hint = f"; if that run is gone, delete {path}" if stale_hint else ""
        return (f"run folder {self.folder} is in use by {who}: wait for it to finish, choose another "
                f"hydra.run.dir, or pass wait_for_lock=<seconds>{hint}")

    @staticmethod
    def _write_holder(fd: int) -> None:
        text = json.dumps(asdict(Holder.me())) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode("utf-8"), 0)
        os.fsync(fd)

    def release(self) -> None:
        """Release once (idempotent; the outermost release of a re-entrant hold lets go)."""
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth:
            return
        _HELD.pop(self.folder.resolve(), None)
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        elif self._pid_file is not None:
            self._pid_file.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({str(self.folder)!r}, held={self.held})"


def lock_run_folder(folder: str | os.PathLike, wait: float = 0.0) -> RunLock:
    """The held lock of ``folder``: this process's own one taken once more (re-entrant), else a new
    :class:`RunLock` acquired with ``wait``. Pair every call with one :meth:`RunLock.release`.

    Raises:
        RunFolderBusy: another run holds the folder.
    """
    held = _HELD.get(Path(folder).resolve())
    if held is not None:
        return held.acquire()
    return RunLock(folder, wait=wait).acquire()
