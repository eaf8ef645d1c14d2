"""Memory that stays flat over long runs: glibc's heap kept from growing with the number of batches.

Scoring and training allocate and free blocks of 10-20 MB per batch (a batch, the first layers' outputs).
glibc gives such blocks their own mapping and returns it on free, but after the first free it raises its
mmap threshold to that size, so the following blocks come from the heap, which fragments and keeps its pages:
`lexactum predict` on an HDF5 cube peaked at 555 MiB for 10,000 cutouts and 935 MiB for 300,000. With the
threshold fixed at 1 MiB (which also stops its adjustment) the peak was 530 and 542 MiB.
"""

from __future__ import annotations

import sys

#: glibc's mallopt parameter number of M_MMAP_THRESHOLD (malloc.h).
M_MMAP_THRESHOLD = -3
#: Blocks at least this large get their own mapping, returned to the system when freed.
MMAP_THRESHOLD = 1 << 20


def steady_heap() -> bool:
    """Fix glibc's mmap threshold for this process and the processes it forks later (loader workers);
    True when it was set, False where there is no glibc (the call is then a no-op)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
