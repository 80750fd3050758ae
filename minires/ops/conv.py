"""2-d convolution as im2col + GEMM, channels-last inside.

Tensors are NCHW to the user; conv2d works on channels-last memory, where
im2col is a series of contiguous copies (see kernels/cpu/columns.py).  For
x (N, C, H, W), weight (Cout, C/groups, kh, kw), K = kh*kw*C taps, L = Ho*Wo:

    x_cl  = x as (N, H, W, C)           free when x is already channels-last
    cols  = im2col(x_cl)                (n*L, K)     [a row per output pixel, taps (group, i, j, c)]
    out^T = cols @ W^T                  (n*L, Cout)  [GEMM: K.matmul] = the output, channels-last
Backward, with g^T the upstream gradient as (n*L, Cout):
    dW   += g^T^T @ cols                (Cout, K)
    dcols = g^T @ W                     (n*L, K)  -> col2im -> dx (channels-last)
    db    = Σ g
The output and dx are returned as NCHW views of channels-last memory, so the
next convolution (and its backward) gets its input without a copy.  W is the weight as
(Cout, K/groups) in the columns' tap order; one GEMM per group, on K/groups columns and Cout/groups rows.

The batch runs in chunks of n images whose columns fit the kernel module's
workspace (about a core's L2 on the CPU; the whole batch on the GPU), one chunk
per core at a time.  Columns are recomputed in backward rather than saved:
ResNet-20's would take ~0.9 GB at batch 128.

On the CPU the 3x3 stride-1 layers may run another algorithm instead, with the same
arguments, layouts and checks: Winograd (ops/winograd.py, which also says which layers
run what) or, for few input channels, a direct convolution (ops/direct.py).
"""
from __future__ import annotations

from .. import backend
from ..tensor import Tensor
from . import direct, winograd
from ._util import (check_float, check_rank, check_same_device, check_same_dtype, check_tensor, pair,
                    shape_str)


def channels_last(xp, a):
    """An NCHW array's data as a C-contiguous (N, H, W, C) array (no copy when its
    memory is already channels-last, as every conv2d output is)."""
    return backend.contiguous(xp, a.transpose(0, 2, 3, 1))


def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def check_conv2d(op, x, weight, bias, stride, padding, dilation, groups):
    """conv2d's argument checks (and conv2d_batch_norm_relu_eval's, ops/fused.py):
    -> (stride, padding, dilation) as pairs, (Ho, Wo)."""
    check_tensor(op, "input", x)
    check_tensor(op, "weight", weight)
    check_rank(op, "input", x, 4, "(N, C, H, W)")
    check_rank(op, "weight", weight, 4, "(C_out, C_in/groups, kh, kw)")
    parents = (x, weight) if bias is None else (x, weight, bias)
    for name, t in (("input", x), ("weight", weight), ("bias", bias)):
        check_float(op, name, t)
    check_same_device(op, *parents)
    check_same_dtype(op, *parents)
    stride, padding, dilation = (pair(op, n, v) for n, v in
                                 (("stride", stride), ("padding", padding), ("dilation", dilation)))
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"{op}: stride and dilation must be >= 1 and padding >= 0, "
                         f"got stride={stride}, padding={padding}, dilation={dilation}")
    n, c, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    if groups < 1 or c % groups or c_out % groups:
        raise ValueError(f"{op}: groups={groups} must divide both the input channels ({c}) "
                         f"and the output channels ({c_out})")
    if c_per_group * groups != c:
        raise ValueError(f"{op}: input {shape_str(x.shape)} has {c} channels but weight "
                         f"{shape_str(weight.shape)} with groups={groups} expects {c_per_group * groups}")
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"{op}: bias shape {shape_str(bias.shape)} != ({c_out},)")
    ho = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    if ho < 1 or wo < 1:
        raise ValueError(f"{op}: input {shape_str(x.shape)} is smaller than the (dilated) kernel "
                         f"{kh}x{kw} with padding {padding}: the output would be {ho}x{wo}")
    return stride, padding, dilation, (ho, wo)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """NCHW convolution (cross-correlation, as in every framework); float32 or float64."""
    stride, padding, dilation, (ho, wo) = check_conv2d("conv2d", x, weight, bias, stride, padding,
                                                       dilation, groups)
    parents = (x, weight) if bias is None else (x, weight, bias)
    n, c, h, w = x.shape
    c_out, _, kh, kw = weight.shape

    algorithm = winograd.algorithm_for(x, weight, stride, padding, dilation, groups)
    if algorithm in winograd.TILE_SIZES:  # 3x3 stride-1 layers, when chosen (ops/winograd.py)
        return winograd.conv2d(x, weight, bias, winograd.TILE_SIZES[algorithm])
    if algorithm == "direct":             # the same layers with few input channels (ops/direct.py)
        return direct.conv2d(x, weight, bias)

    xp, K = x.xp, backend.kernels_for(x.xp)
    geometry = ((kh, kw), stride, padding, dilation, (ho, wo))
    taps, plane = c * kh * kw, ho * wo
    threads = backend.conv_threads(xp, n * plane * taps * c_out // groups)    # by multiply-adds
    chunks = backend.batch_chunks(xp, n, K.CONV_WORKSPACE_BYTES // (taps * plane * x.dtype.itemsize), threads)
    k_g, o_g = taps // groups, c_out // groups                 # taps and outputs per group
    # W as (Cout, K/groups) with the taps in the columns' order: (i, j, channel of the group)
    w2 = xp.ascontiguousarray(weight.data.transpose(0, 2, 3, 1)).reshape(c_out, k_g)
    blocks = [(slice(gi * o_g, (gi + 1) * o_g), slice(gi * k_g, (gi + 1) * k_g)) for gi in range(groups)]
    x_cl = channels_last(xp, x.data)                            # (N, H, W, C)

    def columns(n0, n1):
        cols = K.workspace("conv2d.cols", ((n1 - n0) * plane, taps), x.dtype)
        return K.im2col(x_cl[n0:n1], *geometry, groups=groups, out=cols)   # (n*L, K)

    out_cl = xp.empty((n, ho, wo, c_out), dtype=x.dtype)        # channels-last output

    def forward_share(share):
        for n0, n1 in share:
            cols, res = columns(n0, n1), out_cl[n0:n1].reshape(-1, c_out)
            for o, k in blocks:
                K.matmul(cols[:, k], w2[o].T, out=res[:, o])
    backend.parallel_for(xp, forward_share, chunks, threads=threads)
    if bias is not None:
        out_cl += bias.data
    out = out_cl.transpose(0, 3, 1, 2)                          # NCHW view

    def backward(g):
        g_cl = channels_last(xp, g)
        gx_cl = xp.empty((n, h, w, c), dtype=x.dtype) if x.requires_grad else None

        def backward_share(share):
            """dx for the share's images; its partial dW (summed over shares below)."""
            gw = None
            for n0, n1 in share:
                gt = g_cl[n0:n1].reshape(-1, c_out)                 # g^T (n*L, Cout)
                if weight.requires_grad:
                    cols = columns(n0, n1)
                    if gw is None:        # the first chunk writes dW, later ones add to it
                        gw = xp.empty((c_out, k_g), dtype=x.dtype)
                        for o, k in blocks:
                            K.matmul(gt[:, o].T, cols[:, k], out=gw[o])
                    else:
                        for o, k in blocks:
                            gw[o] += K.matmul(gt[:, o].T, cols[:, k])
                if gx_cl is not None:
                    dcols = K.workspace("conv2d.dcols", (gt.shape[0], taps), x.dtype)
                    for o, k in blocks:
                        K.matmul(gt[:, o], w2[o], out=dcols[:, k])
                    K.col2im(dcols, (n1 - n0, h, w, c), *geometry, groups=groups, out=gx_cl[n0:n1])
            return gw
        partial_gw = backend.parallel_for(xp, backward_share, chunks, threads=threads)
        gw = None
        if weight.requires_grad:
            gw = sum(partial_gw[1:], partial_gw[0]).reshape(c_out, kh, kw, c // groups).transpose(0, 3, 1, 2)
        gx = gx_cl.transpose(0, 3, 1, 2) if gx_cl is not None else None
        grads = (gx, None if gw is None else xp.ascontiguousarray(gw))
        if bias is not None:
            grads += (g.sum(axis=(0, 2, 3)) if bias.requires_grad else None,)
        return grads
    return Tensor.from_op(out, parents, backward, "conv2d")
