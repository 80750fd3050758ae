"""conv2d as a direct 3x3 convolution, for the layers with few input channels (the stem).

The kernels and their formulas are in kernels/cpu/direct.py; here the images are shared
across the threads (one range of images each) and the backward put together:

    forward   out = conv(x, w)                 x (N, C, H, W) any layout -> (N, H, W, K) memory
    dW        Σ over each thread's images      float64 partial sums, added, then x's dtype
    dx        conv(g, w'), w'[c, k, i, j] = w[k, c, 2 - i, 2 - j]     (the flipped filter)

Which layers run it: "direct" in ops/winograd.py's algorithm choice (AUTO_WINOGRAD, or
``set_conv_algorithm("direct")`` for every layer it applies to: a CPU conv2d with a 3x3
kernel, stride 1, padding 1, dilation 1 and one group, like Winograd).  Its cost per
output pixel is C·K·9 multiply-adds, the plain count, so it pays where C is small.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor


def _over_images(kernel, n):
    """[kernel(n0, n1) for each thread's range of the n images], run across the threads."""
    parts = max(1, min(backend.num_threads(), n))
    ranges = [(k * n // parts, (k + 1) * n // parts) for k in range(parts)]
    shares = backend.parallel_for(np, lambda share: [kernel(n0, n1) for n0, n1 in share], ranges)
    return [result for share in shares for result in share]


def _convolve(K, x, weight):
    """conv(x, weight), 3x3, padding 1: x (N, C, H, W) -> (N, K, H, W) on channels-last memory."""
    n, _, h, w = x.shape
    out_cl = np.empty((n, h, w, weight.shape[0]), dtype=x.dtype)
    _over_images(lambda n0, n1: K.direct_conv3x3(x, weight, out_cl, n0, n1), n)
    return out_cl.transpose(0, 3, 1, 2)


def conv2d(x, weight, bias):
    """NCHW conv2d with a 3x3 kernel, stride 1 and padding 1, computed directly.  The inputs
    are checked by ops.conv2d, which calls this when the algorithm choice says so."""
    K = backend.kernels_for(np)
    w = np.ascontiguousarray(weight.data)
    out = _convolve(K, x.data, w)
    if bias is not None:
        out += bias.data[:, None, None]

    def backward(g):
        gx = gw = None
        if x.requires_grad:
            flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))   # (C, K, 3, 3)
            gx = _convolve(K, g, flipped)
        if weight.requires_grad:
            g_hwk = g.transpose(0, 2, 3, 1)                   # (N, H, W, K): a view
            partial = _over_images(lambda n0, n1: K.direct_conv3x3_filter_grad(x.data, g_hwk, n0, n1),
                                   x.shape[0])
            gw = sum(partial[1:], partial[0]).astype(x.dtype)
        grads = (gx, gw)
        if bias is not None:
            grads += (g.sum(axis=(0, 2, 3)) if bias.requires_grad else None,)
        return grads
    return Tensor.from_op(out, (x, weight) if bias is None else (x, weight, bias), backward, "conv2d")
