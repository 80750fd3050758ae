"""What every CUDA wrapper shares: CuPy on demand, compiled kernels, launch shapes, argument checks.

CuPy is imported by the first kernel call, never at import (compile_check and the
CI tests import this package without it).  ``_kernel`` compiles one ``.cu`` file
through ``cupy.RawModule`` the first time one of its kernels is used, with every
instantiation listed in ``_sources.py``.  Scalars go to kernels as NumPy scalars
of the exact C type of the parameter (``_i32`` for int), never as bare Python numbers.

The grid limits are read from this module at launch time:
tests/test_gpu.py caps them to exercise the kernels' grid-stride loops.
"""
from __future__ import annotations

import math

import numpy as np

from . import _sources
from ._sources import CTYPES

BLOCK = 256                 # threads per block of the elementwise / per-element kernels

_MAX_GRID_X = 2**31 - 1
_MAX_GRID_YZ = 65535
_INT_MAX = 2**31 - 1

_cp = None
_modules = {}               # source file -> cupy.RawModule
_functions = {}             # (source file, name expression) -> cupy.RawKernel


def _cupy():
    global _cp
    if _cp is None:
        import cupy
        _cp = cupy
    return _cp


def _kernel(source, name):
    """The compiled kernel ``name`` (a name expression from _sources.KERNELS) of ``source``."""
    fn = _functions.get((source, name))
    if fn is None:
        module = _modules.get(source)
        if module is None:
            module = _cupy().RawModule(code=_sources.read_source(source),
                                       options=_sources.RAWMODULE_OPTIONS,
                                       name_expressions=list(_sources.KERNELS[source]))
            _modules[source] = module
        fn = _functions[(source, name)] = module.get_function(name)
    return fn


def load_all():
    """Compile (or load from CuPy's disk cache) every kernel now.

    Call it before capturing a CUDA graph: a first use inside the capture would
    compile and load a module, which capture does not allow.
    """
    for source, names in _sources.KERNELS.items():
        for name in names:
            _kernel(source, name)


def _ceil_div(a, b):
    return -(-a // b)


_CTYPE_OF = {np.dtype(name): ctype for name, ctype in CTYPES.items()}


def _ctype(dtype, what):
    ctype = _CTYPE_OF.get(dtype)             # dtype objects hash fast; .name does not
    if ctype is None:
        name = np.dtype(dtype).name
        if name not in CTYPES:
            raise TypeError(f"minires CUDA kernels: {what} must be float32 or float64, got {name}")
        ctype = CTYPES[name]
    return ctype


def _i32(v, what):
    v = int(v)
    if not -2**31 <= v <= _INT_MAX:
        raise ValueError(f"minires CUDA kernels: {what} = {v} does not fit in a 32-bit int")
    return np.int32(v)


def _ints(values, what):
    return tuple(_i32(v, what) for v in values)


def _launch_1d(fn, total, args, block=BLOCK):
    """One thread per element (the kernels' grid-stride loops cover any excess)."""
    if total > 0:
        fn((min(_ceil_div(total, block), _MAX_GRID_X),), (block,), args)


def _is_cupy(a):
    return type(a).__module__.split(".")[0] == "cupy"


def _as_device(a, dtype=None):
    """A C-contiguous CuPy array (a no-op for one that already is, of that dtype)."""
    cp = _cupy()
    if type(a) is cp.ndarray and a.flags.c_contiguous and (dtype is None or a.dtype == dtype):
        return a                             # the common case, without CuPy's call overhead
    return cp.ascontiguousarray(cp.asarray(a), dtype=dtype)


def _check_ndim(a, ndim, what):
    if a.ndim != ndim:
        raise ValueError(f"minires CUDA kernels: {what} must be {ndim}-d, got shape {tuple(a.shape)}")


def _check_out(out, shape, dtype, what):
    """``out`` must be exactly what the kernel writes: no copy is made into it."""
    if not _is_cupy(out):
        raise TypeError(f"minires CUDA kernels: {what} must be a CuPy array, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"minires CUDA kernels: {what} must be a C-contiguous {np.dtype(dtype).name} "
                         f"array of shape {tuple(shape)}, got {out.dtype} {tuple(out.shape)} "
                         f"(C-contiguous: {out.flags.c_contiguous})")


def _vector(a, length, dtype, what):
    a = _as_device(a, dtype)
    if a.shape != (length,):
        raise ValueError(f"minires CUDA kernels: {what} must have shape ({length},), got {tuple(a.shape)}")
    return a


# ---------------------------------------------------------------- workspace
_workspaces = {}             # (name, dtype) -> flat device buffer


def workspace(name, shape, dtype):
    """A reusable device array of ``shape`` (contents undefined), valid until the next
    call with the same ``name`` and dtype (the CPU module keeps one set per thread; the
    GPU has one host thread).  Once warm, a training step allocates nothing here --
    what CUDA-graph capture needs."""
    key, size = (name, np.dtype(dtype)), math.prod(shape)
    flat = _workspaces.get(key)
    if flat is None or flat.size < size:
        flat = _workspaces[key] = _cupy().empty(size, dtype=key[1])
    return flat[:size].reshape(tuple(int(s) for s in shape))
