"""``allocator.tune``: after it, glibc serves a block of a few MiB from its heap rather than ``mmap``."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# Prints the number of blocks mmap served for one 4 MiB malloc, before and after allocator.tune().
PROBE = """
import ctypes
from biobert_ray import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def mmapped_blocks_of_one_malloc():
    before = libc.mallinfo2().hblks
    block = libc.malloc(4 << 20)
    after = libc.mallinfo2().hblks
    libc.free(block)
    return after - before

print(mmapped_blocks_of_one_malloc(), allocator.tune(), mmapped_blocks_of_one_malloc())
"""


def probe(**env: str) -> list[str]:
    """The probe's output words in a fresh interpreter with ``env`` added to the environment."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return result.stdout.split()


def test_a_tuned_process_serves_mebibytes_from_its_heap():
    assert probe() == ["1", "True", "0"]


def test_a_threshold_the_user_set_is_left_alone():
    assert probe(MALLOC_MMAP_THRESHOLD_="131072") == ["1", "False", "1"]
