"""How a run ends when it is told to stop: SIGTERM (``timeout``, SLURM's cancel and preemption,
Kubernetes) and SIGINT (Ctrl-C) end it the same way.

:func:`stop_on_signals` turns either signal into :class:`RunStopped` in the main thread, at once
(not at the end of a batch that may take minutes, past the scheduler's grace period). It derives
from ``KeyboardInterrupt``, so Lightning takes its graceful path: the callbacks' ``on_exception``
(the fusion callback writes the summary of what is done, marked partial), teardown, then
``sys.exit(1)``; :meth:`StopRequest.exit_status` gives the conventional ``128 + signal`` (143
for SIGTERM, 130 for SIGINT) that schedulers read as "killed by a signal", never 0.

:func:`signals_deferred` holds the stop signals (and the preemption signals SIGUSR1/SIGUSR2 of
SLURM and submitit) while a file is being written, so that a row is never cut by the handler:
the kernel delivers them when the write is done. :func:`quiet_worker_signals` makes DataLoader
workers ignore SIGINT and leave quietly on SIGTERM when the signal goes to the whole process
group, so that no worker traceback hides the line that matters.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["RunStopped", "StopRequest", "STOP_SIGNALS", "quiet_worker_signals", "signals_deferred",
           "stop_on_signals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that end a run with a partial summary."""

_DEFERRED = {*STOP_SIGNALS, signal.SIGUSR1, signal.SIGUSR2}


class RunStopped(KeyboardInterrupt):
    """Raised in the main thread by a stop signal; ``signum`` names it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        """``"SIGTERM"`` or ``"SIGINT"``."""
        return signal.Signals(self.signum).name


@dataclass
class StopRequest:
    """What :func:`stop_on_signals` received: ``signum`` is None until a stop signal arrives."""

    signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_status(self) -> int:
        """``128 + signum``: 143 for SIGTERM, 130 for SIGINT (the shell's convention)."""
        return 128 + int(self.signum or 0)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, SIGTERM and SIGINT raise :class:`RunStopped` (once; a second signal while
    the run ends is ignored). The block ends there: the :class:`RunStopped`, or the ``SystemExit``
    Lightning turns it into, is not raised past the block; ``request.signum`` says a signal came.
    The previous handlers come back afterwards. Outside the main thread (no signal handlers can be
    set there) it does nothing."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, _frame) -> None:
        if request.signum is not None:
            return  # already ending
        request.signum = signum
        raise RunStopped(signum)

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield request
    except (SystemExit, RunStopped):  # Lightning ends a KeyboardInterrupt with sys.exit(1)
        if request.signum is None:
            raise
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold the stop and preemption signals during the block (a file write); they are delivered,
    and their handlers run, as soon as it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _exit_quietly(_signum: int, _frame) -> None:
    os._exit(0)


def quiet_worker_signals() -> None:
    """In a DataLoader worker: SIGINT (Ctrl-C, sent to the whole foreground group) is ignored, the
    main process ends its workers; SIGTERM (``timeout``, SLURM, or the main process ending a stuck
    worker) ends the worker at once with status 0, so that the main process's child watcher
    (which raises "DataLoader worker is killed by signal") stays quiet."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)
