"""Reusable scratch buffers, one set per thread.

A convolution's chunks need columns and GEMM outputs of the same sizes on every
call.  Allocating them fresh each time costs page faults, and two threads
faulting at once contend on the kernel's memory-map lock (measured: 2 threads no
faster than 1).  ``workspace`` hands out the same memory again.
"""
import math
import threading

import numpy as np

_local = threading.local()


def workspace(name, shape, dtype):
    """A C-contiguous array of ``shape`` (contents undefined) that stays valid until
    the next call with the same ``name`` and dtype on this thread."""
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    key, size = (name, np.dtype(dtype)), math.prod(shape)   # not np.prod: 3 µs a call
    flat = buffers.get(key)
    if flat is None or flat.size < size:
        flat = buffers[key] = np.empty(size, dtype=key[1])
    return flat[:size].reshape(shape)
