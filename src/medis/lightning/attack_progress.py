"""Progress inside a batch: the steps of the attack running now, the replicas still running and
the time left, for runs where one batch takes minutes (large images, many losses, long attacks).

With Lightning's rich progress bar (``callbacks.progress_bar``, the default) a second line under the
test bar shows ``<target> · <attack> · <H>x<W> px (<Mpx> Mpx) · <n> images · <active>/<replicas>
replicas running``, the steps done and the time left. Every same-size batch is also logged once
(``attacking 8 images of 2686x3802 px (10.2 Mpx) ...``, in ``attack.log``), and without a rich
bar the progress is logged at most every 30 seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from medis.attacks.engine import StepProgress

__all__ = ["BatchProgress"]

log = logging.getLogger("medis.attack")
LOG_EVERY_S = 30.0


def describe(progress: StepProgress, label: str) -> str:
    """``white · medis · 2686x3802 px (10.2 Mpx) · 8 images · 30/48 replicas running``."""
    return f"{label} · {_size(progress)} · {progress.active}/{progress.replicas} replicas running"


def _size(progress: StepProgress) -> str:
    """``2686x3802 px (10.2 Mpx) · 8 images``."""
    height, width = progress.size
    images = f"{progress.images} image" + ("s" if progress.images != 1 else "")
    return f"{height}x{width} px ({height * width / 1e6:.3g} Mpx) · {images}"


def _passes(progress: StepProgress) -> str:
    """``, 2 per pass, losses at 768x1024 px``: what the memory limit and the loss size chose."""
    text = f", {progress.per_pass} per pass" if 0 < progress.per_pass < progress.replicas else ""
    if progress.loss_size is not None and tuple(progress.loss_size) != tuple(progress.size):
        text += f", losses at {progress.loss_size[0]}x{progress.loss_size[1]} px"
    return text


class BatchProgress:
    """Turns the engine's :class:`StepProgress` reports into a rich task (when ``rich_progress`` is a
    live ``rich.progress.Progress``) and log lines.

    Args:
        rich_progress: the live rich Progress of Lightning's progress bar, or None.
        clock: seconds (tests pass a fake clock).
    """

    def __init__(self, rich_progress=None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rich = rich_progress
        self.clock = clock
        self.task = None
        self.label = ""
        self.last_log = -float("inf")
        self.started = self.clock()
        self.lines: list[str] = []  # what was logged (tests read it)

    def reporter(self, label: str) -> Callable[[StepProgress], None]:
        """The ``EngineOptions.progress`` callback of one attack (``label``: target kind and attack)."""
        self.label = label
        return self.report

    def report(self, progress: StepProgress) -> None:
        text = describe(progress, self.label)
        if progress.step == 0:
            self.started = self.clock()
            self._log(f"attacking {_size(progress)} · {progress.replicas} replicas{_passes(progress)} "
                      f"({self.label}), up to {progress.steps} steps", force=True)
        elif progress.step >= progress.steps:
            self._log(f"done: {self.label} · {progress.size[0]}x{progress.size[1]} px in "
                      f"{self.clock() - self.started:.1f} s", force=True)
        elif self.rich is None:
            self._log(f"step {progress.step}/{progress.steps}: {text}", force=False)
        if self.rich is not None:
            if self.task is None or progress.step == 0:
                self._drop_task()
                self.task = self.rich.add_task(text, total=progress.steps)
            self.rich.update(self.task, completed=min(progress.step, progress.steps), description=text)
            if progress.step >= progress.steps:
                self._drop_task()

    def _drop_task(self) -> None:
        if self.task is not None and self.rich is not None:
            self.rich.remove_task(self.task)
        self.task = None

    def _log(self, line: str, force: bool) -> None:
        now = self.clock()
        if force or now - self.last_log >= LOG_EVERY_S:
            self.last_log = now
            self.lines.append(line)
            log.info(line)
