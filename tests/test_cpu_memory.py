"""medis.runtime.cpu_allocator: glibc keeps freed large blocks for reuse once tuned; the switch and its errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medis.errors import ConfigError
from medis.runtime.cpu_allocator import tune_cpu_allocator

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")

# A 64 MiB tensor is above glibc's largest automatic mmap threshold (32 MiB): untuned, it is mmapped
# and unmapped on free; tuned, it comes from the heap and its freed bytes stay there (fordblks).
PROBE = """
import ctypes, os, sys
from medis.runtime.cpu_allocator import tune_cpu_allocator
print(tune_cpu_allocator())
import torch
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
x = torch.ones(16 * 2**20)  # 64 MiB
mapped_while_alive = libc.mallinfo2().hblkhd
del x
print(mapped_while_alive >= 64 * 2**20, libc.mallinfo2().fordblks >= 64 * 2**20)
"""


def _probe(setting: str) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "MEDIS_CPU_ALLOCATOR": setting, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


@glibc
def test_tuned_allocator_keeps_a_freed_64mib_tensor_in_the_heap() -> None:
    assert _probe("tuned") == ["True", "False", "True"]


@glibc
def test_default_allocator_maps_and_unmaps_it() -> None:
    assert _probe("default") == ["False", "True", "False"]


def test_the_users_own_malloc_settings_win() -> None:
    assert tune_cpu_allocator({"MALLOC_MMAP_THRESHOLD_": "65536"}) is False
    assert tune_cpu_allocator({"MEDIS_CPU_ALLOCATOR": "off"}) is False


def test_a_bad_setting_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match="MEDIS_CPU_ALLOCATOR='fast'"):
        tune_cpu_allocator({"MEDIS_CPU_ALLOCATOR": "fast"})
