"""conv2d as a direct 3x3 convolution, for the layers with few input channels (the stem).

The kernels, their formulas and the images' split across the threads are in
kernels/cpu/direct.py; here the backward is put together:

    forward   out = conv(x, w)                 x (N, C, H, W) any layout -> (N, H, W, K) memory
    dW        direct_conv3x3_filter_grad(x, g)
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


def conv2d(x, weight, bias):
    """NCHW conv2d with a 3x3 kernel, stride 1 and padding 1, computed directly.  The inputs
    are checked by ops.conv2d, which calls this when the algorithm choice says so."""
    K = backend.kernels_for(np)
    w = weight.data
    out = K.direct_conv3x3(x.data, w).transpose(0, 3, 1, 2)     # NCHW view of channels-last memory
    if bias is not None:
        out += bias.data[:, None, None]

    def backward(g):
        gx = gw = None
        if x.requires_grad:
            flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)           # (C, K, 3, 3)
            gx = K.direct_conv3x3(g, flipped).transpose(0, 3, 1, 2)
        if weight.requires_grad:
            gw = K.direct_conv3x3_filter_grad(x.data, g.transpose(0, 2, 3, 1), w.shape[0])
        grads = (gx, gw)
        if bias is not None:
            grads += (g.sum(axis=(0, 2, 3)) if bias.requires_grad else None,)
        return grads
    return Tensor.from_op(out, (x, weight) if bias is None else (x, weight, bias), backward, "conv2d")
