"""The multiprocessing context of the DataLoader workers.

Hydra's joblib launcher runs each job in a loky worker process, where Python's default start method
is loky's own (``multiprocessing.get_start_method() == "loky"``). A DataLoader left to the default
then starts its workers as plain ``multiprocessing.Process`` objects through loky's launcher, which
fails with ``AttributeError: 'Process' object has no attribute 'env'`` (pytorch/pytorch#44687,
joblib/joblib#1104). Inside such a process the loaders get a standard context of their own.
"""

from __future__ import annotations

import multiprocessing
import sys
from multiprocessing.context import BaseContext

__all__ = ["worker_context"]

STANDARD_METHODS = ("fork", "spawn", "forkserver")


def worker_context(num_workers: int) -> BaseContext | None:
    """``None`` (torch's default) when the process's start method is a standard one or there are no
    workers; otherwise (e.g. in a joblib/loky job) the platform's standard context: ``fork`` on
    Linux, ``spawn`` elsewhere."""
    if num_workers == 0:
        return None
    method = multiprocessing.get_start_method(allow_none=True)
    if method is None or method in STANDARD_METHODS:
        return None
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
