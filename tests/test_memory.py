"""glibc's mmap threshold fixed: a freed large block does not turn later ones into heap that stays."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from lexactum.memory import steady_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "fixed":
    assert steady_heap()
first = libc.malloc(4 << 20)
libc.free(first)  # glibc's own rule now raises its threshold above 4 MB
before = libc.mallinfo2().hblks  # blocks with a mapping of their own
second = libc.malloc(4 << 20)
print(libc.mallinfo2().hblks - before)  # 1 when the second block got a mapping, 0 when it came from the heap
libc.free(second)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_large_block_freed_does_not_move_the_next_ones_to_the_heap():
    def mapped_blocks(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
        if done.returncode != 0 and "mallinfo2" in done.stderr:
            pytest.skip("this C library has no mallinfo2")
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1])

    assert mapped_blocks("default") == 0  # glibc's dynamic threshold: the second block came from the heap
    assert mapped_blocks("fixed") == 1
