"""The CPU memory policy of attacks and training: reuse large blocks inside a batch, give the free
heap back between batches.

PyTorch's CPU allocator is glibc ``malloc``. glibc serves blocks above its mmap threshold (at most
32 MB by default, e.g. a batch of activations or an SSIM stack) with fresh ``mmap`` pages and
unmaps them on free, so every such tensor pays page faults on first touch, again and again; the
top of the heap is likewise trimmed back. On small CPU machines that is a large share of an
attack's non-network time (PyTorch's CPU performance guide recommends jemalloc/tcmalloc for the
same reason). So:

1. :func:`tune_cpu_allocator` (``attack.py`` and ``train.py``, at start) raises both thresholds with
   ``mallopt``: the steps of a batch, which allocate tensors of the same shapes over and over, reuse
   freed blocks instead of faulting fresh pages;
2. :func:`release_free_heap` (the attack module, after every batch) calls ``malloc_trim(0)``: the
   next batch's images have other sizes (attacks work at the original size), so the blocks kept
   for this one would only fragment the heap; trimming hands their free pages back, and the
   resident size follows live memory across a long run instead of creeping up.

``MEDIS_CPU_ALLOCATOR=default`` turns step 1 off; both are no-ops where there is no glibc (macOS,
Windows, musl), and step 1 also where the user already tunes malloc through
``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``/``GLIBC_TUNABLES``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

from medis.errors import ConfigError

__all__ = ["release_free_heap", "tune_cpu_allocator"]

ENV = "MEDIS_CPU_ALLOCATOR"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 2**31 - 1
_USER_TUNING = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_cpu_allocator(environ: dict[str, str] | None = None) -> bool:
    """Raise glibc's mmap threshold to 1 GiB and its trim threshold to 2 GiB; True if applied.

    Args:
        environ: the environment to read (default ``os.environ``); ``MEDIS_CPU_ALLOCATOR=default``
            (or ``off``) skips the tuning, as does any of ``MALLOC_MMAP_THRESHOLD_``,
            ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES`` (the user's own settings win).

    Raises:
        ConfigError: ``MEDIS_CPU_ALLOCATOR`` is neither ``tuned``, ``default`` nor ``off``.
    """
    env = os.environ if environ is None else environ
    choice = env.get(ENV, "tuned").strip().lower()
    if choice not in ("tuned", "default", "off"):
        raise ConfigError(f"{ENV}={env[ENV]!r}: expected 'tuned', 'default' or 'off'")
    if choice != "tuned" or any(name in env for name in _USER_TUNING) or not sys.platform.startswith("linux"):
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _glibc_mallopt():
    """glibc's ``int mallopt(int, int)``, or None without glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it (musl has a mallopt that does nothing)
    except (OSError, AttributeError):
        return None
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Call glibc's ``malloc_trim(0)``; returns whether it was available."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
