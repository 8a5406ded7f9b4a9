"""Where the ranks of a multi-process attack wait for each other at its end, without a timeout
that the imbalance of their work can exceed.

Every rank attacks its own shard, and an attack's cost depends on its images (replicas leave the
batch as they finish, so a shard of easy images ends early). A collective (``barrier``) at the end
would hold the early ranks for as long as the slowest one still works, and a process group's
timeout (30 minutes by default) is then a bound on the imbalance of a whole run: a long attack
exceeds it and the run dies at its merge. Instead, each rank leaves a mark in the run folder when
it is done (``.rank<r>.done``) and touches a heartbeat while it works (``.rank<r>.beat``, at most
every :data:`BEAT_EVERY_S`, at every engine step and batch end); a waiting rank polls the folder until
every rank is done. A rank that stops before the end (a signal, an error) leaves ``.rank<r>.stopped``
instead, and the waiting ranks stop at once. The timeout bounds the silence of a rank (no step for that long: it died or
hangs), not its lateness. The folder is the run folder, which the ranks share already (rank 0
merges the other ranks' record shards from it), on every node of a multi-node run too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medis.errors import MedisError

__all__ = ["BEAT_EVERY_S", "DEFAULT_TIMEOUT_S", "FinishLine", "RankLost", "strategy_timeout_s"]

BEAT_EVERY_S = 10.0
"""Least seconds between two heartbeat touches of one rank (a touch is a metadata write)."""
POLL_S = 2.0
"""Seconds between two looks at the folder by a waiting rank."""
MARKS = ("done", "beat", "stopped")
"""The kinds of mark a rank leaves (``.rank<r>.<kind>``)."""
DEFAULT_TIMEOUT_S = 1800.0
"""A process group's timeout where the strategy names none (PyTorch's and Lightning's default, 30 min)."""


def strategy_timeout_s(strategy: Any) -> float:
    """Seconds of a Lightning strategy's process group timeout (``trainer.strategy.timeout``,
    conf/trainer/ddp.yaml), :data:`DEFAULT_TIMEOUT_S` where it names none."""
    timeout = getattr(strategy, "_timeout", None)
    return timeout.total_seconds() if timeout is not None else DEFAULT_TIMEOUT_S


class RankLost(MedisError, RuntimeError):
    """A rank has shown no progress for longer than the timeout (it died or hangs)."""


class FinishLine:
    """The end-of-run rendezvous of ``world`` ranks in ``folder`` (module docstring).

    Args:
        folder: the run folder (shared by all ranks).
        rank, world: this rank and the number of ranks.
        timeout_s: seconds a rank may go without a heartbeat before the waiting ranks give up.
        clock: wall-clock seconds (compared with the files' modification times).
        sleep: how a waiting rank pauses (tests pass fakes for both).
    """

    def __init__(self, folder: str | os.PathLike, rank: int, world: int, timeout_s: float,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.folder, self.rank, self.world, self.timeout_s = Path(folder), int(rank), int(world), float(timeout_s)
        self.clock, self.sleep = clock, sleep
        self._last_beat = -float("inf")

    def _mark(self, rank: int, kind: str) -> Path:
        return self.folder / f".rank{rank}.{kind}"

    def start(self) -> None:
        """Remove this rank's marks of an earlier (interrupted) run and beat once. Call it before the
        ranks' first barrier, so that no rank can read another's old mark as this run's."""
        for kind in MARKS:
            self._mark(self.rank, kind).unlink(missing_ok=True)
        self.beat(force=True)

    def beat(self, force: bool = False) -> None:
        """Touch this rank's heartbeat (at most every :data:`BEAT_EVERY_S` unless ``force``)."""
        now = self.clock()
        if force or now - self._last_beat >= BEAT_EVERY_S:
            path = self._mark(self.rank, "beat")
            path.touch()
            os.utime(path, (now, now))
            self._last_beat = now

    def beating(self, report: Callable[[Any], None]) -> Callable[[Any], None]:
        """The engine's progress callback ``report`` that also beats at every step."""
        def both(progress: Any) -> None:
            report(progress)
            self.beat()
        return both

    def cross(self) -> None:
        """Say that this rank is done (its records are closed)."""
        self._mark(self.rank, "done").touch()

    def leave(self) -> None:
        """Say that this rank stopped before the end (a signal, an error; also while it waited): the
        waiting ranks stop at once instead of after the timeout, and none takes it for done."""
        self._mark(self.rank, "done").unlink(missing_ok=True)
        self._mark(self.rank, "stopped").touch()

    def wait(self) -> None:
        """Return once every rank is done.

        Raises:
            RankLost: a rank not done has not beaten for ``timeout_s`` (one line naming it, its
                silence and the folder).
        """
        waiting_since = self.clock()
        while True:
            stopped = [r for r in range(self.world) if r != self.rank and self._mark(r, "stopped").exists()]
            if stopped:
                raise RankLost(f"rank {stopped[0]} of {self.world} stopped before the end (see its log); the records "
                               f"so far are in {self.folder}; rerun with resume=true")
            pending = [r for r in range(self.world) if not self._mark(r, "done").exists()]
            if not pending:
                return
            now = self.clock()
            for r in pending:
                beat = self._mark(r, "beat")
                last = beat.stat().st_mtime if beat.exists() else waiting_since
                if now - last > self.timeout_s:
                    raise RankLost(f"rank {r} of {self.world} has made no attack step for {(now - last) / 60:.1f} "
                                   f"min (more than the timeout of {self.timeout_s / 60:.1f} min, "
                                   f"trainer.strategy.timeout): it died or hangs; see its log. Its records so far "
                                   f"are in {self.folder}; rerun with resume=true")
            self.sleep(POLL_S)

    def clear(self) -> None:
        """Remove every rank's marks (rank 0, once all ranks have passed the end)."""
        for r in range(self.world):
            for kind in MARKS:
                self._mark(r, kind).unlink(missing_ok=True)
