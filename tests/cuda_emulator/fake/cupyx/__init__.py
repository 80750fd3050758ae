"""A fake ``cupyx`` beside the fake cupy: the scatter functions minires uses (and their siblings)."""
import numpy as _np

import cupy as _cp


def _scatter(ufunc, what, a, slices, value):
    if not isinstance(a, _cp.ndarray):
        raise TypeError(f"cupyx.{what}: the target must be a cupy.ndarray, got {type(a).__name__}")
    if isinstance(value, _np.ndarray) and not isinstance(value, _cp.ndarray):
        raise TypeError(f"cupyx.{what}: value is a NumPy array; real CuPy needs a cupy.ndarray or a scalar")
    cap = _cp._recorder(f"cupyx.{what}")
    if cap is not None:                       # a kernel: recorded during stream capture
        _cp._record(cap, f"cupyx.{what}", lambda t, s, v: ufunc.at(t.view(_np.ndarray), _cp._unwrap(s),
                                                                   _cp._unwrap(v)), a, slices, value)
        return
    index = _cp._unwrap(slices)
    ufunc.at(a.view(_np.ndarray), index, _cp._unwrap(value))


def scatter_add(a, slices, value):
    """a[slices] += value, summing over repeated indices (numpy.add.at on the device)."""
    _scatter(_np.add, "scatter_add", a, slices, value)


def scatter_max(a, slices, value):
    _scatter(_np.maximum, "scatter_max", a, slices, value)


def scatter_min(a, slices, value):
    _scatter(_np.minimum, "scatter_min", a, slices, value)


def zeros_pinned(shape, dtype=float, order="C"):
    return _np.zeros(shape, dtype=dtype, order=order)


def empty_pinned(shape, dtype=float, order="C"):
    return _np.empty(shape, dtype=dtype, order=order)


def empty_like_pinned(a, dtype=None, order="K", subok=None, shape=None):
    return _np.empty_like(a, dtype=dtype, order=order, shape=shape)


def zeros_like_pinned(a, dtype=None, order="K", subok=None, shape=None):
    return _np.zeros_like(a, dtype=dtype, order=order, shape=shape)
