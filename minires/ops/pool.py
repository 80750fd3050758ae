"""Pooling: max, average, adaptive average (global average pooling is output size 1).

Every pooling op takes float32 or float64 input (an integer mean would truncate)."""
from __future__ import annotations

import numbers

from .. import backend
from ..tensor import Tensor
from ._util import check_float, check_rank, check_tensor, pair, shape_str


def _pool_geometry(op, x, kernel_size, stride, padding):
    check_tensor(op, "input", x)
    check_float(op, "input", x)
    check_rank(op, "input", x, 4, "(N, C, H, W)")
    kernel = pair(op, "kernel_size", kernel_size)
    stride = kernel if stride is None else pair(op, "stride", stride)
    padding = pair(op, "padding", padding)
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"{op}: kernel_size and stride must be >= 1 and padding >= 0, "
                         f"got {kernel}, {stride}, {padding}")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding} must be at most half the kernel size {kernel}")
    ho = (x.shape[2] + 2 * padding[0] - kernel[0]) // stride[0] + 1
    wo = (x.shape[3] + 2 * padding[1] - kernel[1]) // stride[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"{op}: input {shape_str(x.shape)} is smaller than the kernel {kernel} "
                         f"(padding {padding})")
    return kernel, stride, padding, (ho, wo)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each window; the gradient goes to the (first) maximum's position."""
    kernel, stride, padding, out_hw = _pool_geometry("max_pool2d", x, kernel_size, stride, padding)
    K = backend.kernels_for(x.xp)
    out, argmax = K.max_pool2d_forward(x.data, kernel, stride, padding, out_hw)

    def backward(g):
        return (K.max_pool2d_backward(g, argmax, x.shape),)
    return Tensor.from_op(out, (x,), backward, "max_pool2d")


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Mean over each window (divisor as PyTorch's, see kernels/cpu/pooling.py)."""
    kernel, stride, padding, out_hw = _pool_geometry("avg_pool2d", x, kernel_size, stride, padding)
    K = backend.kernels_for(x.xp)
    out = K.avg_pool2d_forward(x.data, kernel, stride, padding, out_hw, count_include_pad)

    def backward(g):
        return (K.avg_pool2d_backward(g, x.shape, kernel, stride, padding, count_include_pad),)
    return Tensor.from_op(out, (x,), backward, "avg_pool2d")


def adaptive_avg_pool2d(x, output_size):
    """Average pooling to a fixed output size (PyTorch's bins: floor/ceil of i*H/out)."""
    op = "adaptive_avg_pool2d"
    check_tensor(op, "input", x)
    check_float(op, "input", x)
    check_rank(op, "input", x, 4, "(N, C, H, W)")
    oh, ow = pair(op, "output_size", output_size) if not isinstance(output_size, numbers.Integral) \
        else (int(output_size),) * 2
    h, w = x.shape[2:]
    if oh < 1 or ow < 1:
        raise ValueError(f"{op}: output size {(oh, ow)} must be at least 1x1")
    if (oh, ow) == (1, 1):
        return global_avg_pool2d(x)
    if h % oh == 0 and w % ow == 0:
        return avg_pool2d(x, (h // oh, w // ow))
    from .shape import cat, getitem                    # uneven bins: one slice per cell
    from .reduce import mean
    rows = []
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        cells = [mean(getitem(x, (slice(None), slice(None), slice(h0, h1),
                                  slice((j * w) // ow, -((-(j + 1) * w) // ow)))),
                      axis=(2, 3), keepdims=True) for j in range(ow)]
        rows.append(cat(cells, axis=3))
    return cat(rows, axis=2)


def global_avg_pool2d(x):
    """(N, C, H, W) -> (N, C, 1, 1), the mean of each plane."""
    check_tensor("global_avg_pool2d", "input", x)
    check_float("global_avg_pool2d", "input", x)
    check_rank("global_avg_pool2d", "input", x, 4, "(N, C, H, W)")
    hw = x.shape[2] * x.shape[3]
    out = x.data.mean(axis=(2, 3), keepdims=True)

    def backward(g):
        return (x.xp.broadcast_to(g / hw, x.shape),)
    return Tensor.from_op(out, (x,), backward, "global_avg_pool2d")
