"""Keep freed memory in the process instead of handing it back to the OS after every op.

A training step allocates and frees the same activation-sized arrays (8 MB at
batch 128) over and over.  glibc's defaults return big blocks to the kernel on
free (mmap above 128 KB, heap trimming above 128 KB), so every op's output costs
fresh page faults -- measured: a ResNet-20 step 650-750 ms with the defaults,
530-560 ms with the settings below (docs/benchmarks.md).  Set
MINIRES_KEEP_MALLOC_DEFAULTS=1 to leave the allocator alone.
"""
import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_malloc():
    """Raise glibc's mmap threshold to its 32 MiB maximum, keep up to 1 GiB of freed
    heap and grow it in 64 MiB steps.  No-op on other platforms; returns True if applied."""
    if os.environ.get("MINIRES_KEEP_MALLOC_DEFAULTS") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):      # not glibc (musl, ...)
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    ok &= mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    ok &= mallopt(_M_TOP_PAD, 64 << 20)
    return bool(ok)
