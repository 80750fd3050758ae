"""Max and average pooling on the GPU (pooling.cu), over (N, C, H, W)."""
from __future__ import annotations

import numpy as np

from ._launch import _as_device, _check_ndim, _ctype, _cupy, _ints, _is_cupy, _kernel, _launch_1d
from ._sources import expr

POOL_GEOMETRY_INTS = 8      # int32 record behind max pooling's argmax (pooling.cu)


def _pool_args(kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    return _ints((kh, kw, sh, sw, ph, pw), "pooling geometry")


def max_pool2d_forward(x, kernel, stride, padding, out_hw):
    """-> out (N, C, Ho, Wo), argmax (int32 flat index into each input plane).

    pooling.cu: one thread per output.  argmax is the head of an int32 allocation
    whose last POOL_GEOMETRY_INTS entries hold the pooling geometry (written by the
    kernel itself): max_pool2d_backward is not given the geometry, and its gather
    needs it.  An argmax from elsewhere still works, through a slower full-plane scan.
    """
    cp = _cupy()
    t = _ctype(x.dtype, "max_pool2d input")
    _check_ndim(x, 4, "max_pool2d input (N, C, H, W)")
    x = _as_device(x)
    n, c, h, w = x.shape
    ho, wo = (int(v) for v in out_hw)
    shape = (n, c, ho, wo)
    size = n * c * ho * wo
    out = cp.empty(shape, dtype=x.dtype)
    record = cp.empty(size + POOL_GEOMETRY_INTS, dtype=cp.int32)
    argmax = record[:size].reshape(shape)
    _launch_1d(_kernel("pooling.cu", expr("max_pool_forward_kernel", t)), size,
               (x, out, argmax, record[size:], np.int64(n * c), *_ints((h, w, ho, wo), "shape"),
                *_pool_args(kernel, stride, padding)))
    return out, argmax


def _geometry_record(argmax):
    """The geometry record behind an argmax made by max_pool2d_forward, else None.

    Only host-side metadata is looked at (CuPy views keep the allocation's root
    array in ``.base``); the kernel also checks the record's magic number.
    """
    base = argmax.base
    if (base is not None and base.dtype == np.int32 and base.ndim == 1 and argmax.flags.c_contiguous
            and base.size == argmax.size + POOL_GEOMETRY_INTS and base.data.ptr == argmax.data.ptr):
        return base[argmax.size:]
    return None


def max_pool2d_backward(g, argmax, x_shape):
    """dx (x_shape): each window's gradient to its argmax.

    pooling.cu: one thread per input pixel, gathering over the windows that contain it.
    """
    cp = _cupy()
    t = _ctype(g.dtype, "max_pool2d gradient")
    g = _as_device(g)
    record = _geometry_record(argmax) if _is_cupy(argmax) else None
    argmax = _as_device(argmax, cp.int32)
    n, c, h, w = (int(s) for s in x_shape)
    if g.ndim != 4 or g.shape != argmax.shape or tuple(g.shape[:2]) != (n, c):
        raise ValueError(f"max_pool2d backward: gradient {tuple(g.shape)}, argmax {tuple(argmax.shape)} "
                         f"and input {tuple(x_shape)} do not match")
    ho, wo = g.shape[2:]
    dx = cp.empty((n, c, h, w), dtype=g.dtype)
    _launch_1d(_kernel("pooling.cu", expr("max_pool_backward_kernel", t)), dx.size,
               (g, argmax, record if record is not None else np.uint64(0), dx, np.int64(n * c),
                *_ints((h, w, ho, wo), "shape")))
    return dx


def avg_pool2d_forward(x, kernel, stride, padding, out_hw, count_include_pad):
    """pooling.cu: one thread per output; PyTorch's divisor (see kernels/cpu/pooling.py)."""
    cp = _cupy()
    t = _ctype(x.dtype, "avg_pool2d input")
    _check_ndim(x, 4, "avg_pool2d input (N, C, H, W)")
    x = _as_device(x)
    n, c, h, w = x.shape
    ho, wo = (int(v) for v in out_hw)
    out = cp.empty((n, c, ho, wo), dtype=x.dtype)
    _launch_1d(_kernel("pooling.cu", expr("avg_pool_forward_kernel", t)), out.size,
               (x, out, np.int64(n * c), *_ints((h, w, ho, wo), "shape"),
                *_pool_args(kernel, stride, padding), np.int32(bool(count_include_pad))))
    return out


def avg_pool2d_backward(g, x_shape, kernel, stride, padding, count_include_pad):
    """pooling.cu: one thread per input pixel, gathering g/divisor over the windows that contain it."""
    cp = _cupy()
    t = _ctype(g.dtype, "avg_pool2d gradient")
    _check_ndim(g, 4, "avg_pool2d gradient (N, C, Ho, Wo)")
    g = _as_device(g)
    n, c, h, w = (int(s) for s in x_shape)
    if tuple(g.shape[:2]) != (n, c):
        raise ValueError(f"avg_pool2d backward: gradient {tuple(g.shape)} does not match input {tuple(x_shape)}")
    ho, wo = g.shape[2:]
    dx = cp.empty((n, c, h, w), dtype=g.dtype)
    _launch_1d(_kernel("pooling.cu", expr("avg_pool_backward_kernel", t)), dx.size,
               (g, dx, np.int64(n * c), *_ints((h, w, ho, wo), "shape"),
                *_pool_args(kernel, stride, padding), np.int32(bool(count_include_pad))))
    return dx

