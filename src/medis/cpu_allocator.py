"""Keep freed large CPU tensors' memory in the process instead of handing it back to the kernel.

PyTorch's CPU allocator is glibc ``malloc``. glibc serves blocks above its mmap threshold (at most
32 MB by default, e.g. a batch of activations or an SSIM stack) with fresh ``mmap`` pages and
unmaps them on free, so every such tensor pays page faults on first touch, again and again; the
top of the heap is likewise trimmed back. On the small CPU VMs this project runs on, that is a
large share of an attack's non-network time (PyTorch's CPU performance guide recommends
jemalloc/tcmalloc for the same reason). :func:`tune_cpu_allocator` raises both thresholds with
``mallopt`` so freed blocks are reused: same peak, fewer page faults; the resident size then stays
near the peak instead of shrinking between batches.

Applied by ``attack.py`` and ``train.py`` (and the benchmarks); ``MEDIS_CPU_ALLOCATOR=default``
turns it off. A no-op where there is no glibc ``mallopt`` (macOS, Windows, musl) or where the user
already tunes malloc through ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``/``GLIBC_TUNABLES``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from medis.errors import ConfigError

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
