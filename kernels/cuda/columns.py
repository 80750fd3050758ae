"""im2col / col2im on the GPU (columns.cu): a convolution as one matrix product.

The layout is the CPU kernels' (kernels/cpu/columns.py): x (N, H, W, C) channels-last,
cols (N*Ho*Wo, kh*kw*C), one row per output pixel, its taps ordered (channel group,
kernel row i, kernel column j, channel of the group).
"""
from __future__ import annotations

import functools

from ._launch import _as_device, _check_ndim, _check_out, _ctype, _cupy, _ints, _kernel, _launch_1d
from ._sources import expr


def _geometry(kernel, stride, padding, dilation, out_hw):
    """The ten int32 kernel arguments of a convolution's geometry ((h, w) pairs in)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    return _geometry_ints(kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)


@functools.lru_cache(maxsize=1024)      # a network has a few geometries: convert each once
def _geometry_ints(*values):
    return _ints(values, "convolution geometry")


def im2col(x, kernel, stride, padding, dilation, out_hw, groups=1, out=None):
    """x (N, H, W, C) channels-last -> cols (N*Ho*Wo, kh*kw*C), written into ``out`` when given;
    taps ordered (group, i, j, channel of the group), see the module docstring.

    columns.cu: one thread per element of cols.
    """
    t = _ctype(x.dtype, "im2col input")
    _check_ndim(x, 4, "im2col input (N, H, W, C)")
    x = _as_device(x)
    n, h, w, c = x.shape
    geo = _geometry(kernel, stride, padding, dilation, out_hw)
    kh, kw, ho, wo = int(geo[0]), int(geo[1]), int(geo[8]), int(geo[9])
    shape = (n * ho * wo, c * kh * kw)
    if out is None:
        out = _cupy().empty(shape, dtype=x.dtype)
    else:
        _check_out(out, shape, x.dtype, "im2col out")
    _launch_1d(_kernel("columns.cu", expr("im2col_kernel", t)), out.size,
               (x, out, *_ints((n, h, w, c), "input shape"), *geo, *_ints((groups,), "groups")))
    return out


def col2im(cols, x_shape, kernel, stride, padding, dilation, out_hw, groups=1, out=None):
    """cols (N*Ho*Wo, kh*kw*C) -> x (N, H, W, C) channels-last, summing overlapping taps
    (im2col's adjoint).

    columns.cu: one thread per input element gathering its taps (no atomics); ``out``
    (C-contiguous, shape x_shape) is overwritten when given.
    """
    t = _ctype(cols.dtype, "col2im columns")
    cols = _as_device(cols)
    n, h, w, c = (int(s) for s in x_shape)
    geo = _geometry(kernel, stride, padding, dilation, out_hw)
    kh, kw, ho, wo = int(geo[0]), int(geo[1]), int(geo[8]), int(geo[9])
    if tuple(cols.shape) != (n * ho * wo, c * kh * kw):
        raise ValueError(f"col2im: columns of shape {tuple(cols.shape)} do not match x_shape {tuple(x_shape)} "
                         f"and the geometry: expected {(n * ho * wo, c * kh * kw)}")
    if out is None:
        out = _cupy().empty((n, h, w, c), dtype=cols.dtype)
    else:
        _check_out(out, (n, h, w, c), cols.dtype, "col2im out")
    _launch_1d(_kernel("columns.cu", expr("col2im_kernel", t)), out.size,
               (cols, out, *_ints((n, h, w, c), "x_shape"), *geo, *_ints((groups,), "groups")))
    return out

