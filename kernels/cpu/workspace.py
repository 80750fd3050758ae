"""Reusable scratch buffers, one set per thread.

A convolution's chunks need columns, padded inputs and GEMM outputs of the same
sizes on every call.  Allocating them fresh each time costs page faults, and
two threads faulting at once contend on the kernel's memory-map lock (measured:
2 threads no faster than 1).  ``workspace`` hands out the same memory again.
"""
import threading

import numpy as np

_local = threading.local()


def workspace(name, shape, dtype, zero_on_resize=False):
    """A C-contiguous array of ``shape`` that stays valid until the next call with the
    same ``name`` on this thread (contents are whatever was left there, unless the
    buffer had to grow and ``zero_on_resize`` is set)."""
    if not hasattr(_local, "buffers"):
        _local.buffers, _local.shapes = {}, {}
    shape, key = tuple(shape), (name, np.dtype(dtype))
    size = int(np.prod(shape))
    flat = _local.buffers.get(key)
    fresh = flat is None or flat.size < size
    if fresh:
        flat = _local.buffers[key] = np.empty(size, dtype=key[1])
    view = flat[:size].reshape(shape)
    if zero_on_resize and (fresh or _local.shapes.get(key) != shape):
        view[...] = 0                    # padding borders: zeroed again when the shape changes
    _local.shapes[key] = shape
    return view
