"""2-d convolution as im2col + GEMM.

For x (N, C, H, W), weight (Cout, C/groups, kh, kw), K = C*kh*kw taps and L = Ho*Wo:
    cols  = im2col(x)                  (n*L, K)        [kernel: one row per output pixel]
    out^T = cols @ W^T                 (n*L, Cout)     [BLAS GEMM]  -> (n, Cout, Ho, Wo)
Backward, with g^T the upstream gradient as (n*L, Cout):
    dW   += g^T^T @ cols               (Cout, K)
    dcols = g^T @ W                    (n*L, K)  -> col2im -> dx
    db    = Σ g
A channel group is a block of K columns and of Cout, one GEMM per group.

The batch runs in chunks of n images whose columns fit the kernel module's
workspace (a few MiB on the CPU, so columns stay in cache while the GEMM reads
them; the whole batch on the GPU), one chunk per core at a time.  Columns are
recomputed in backward rather than saved: ResNet-20's would take ~0.9 GB at
batch 128.
"""
from __future__ import annotations

from .. import backend
from ..tensor import Tensor
from ._util import check_rank, check_same_device, check_same_dtype, check_tensor, pair, shape_str


def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """NCHW convolution (cross-correlation, as in every framework)."""
    op = "conv2d"
    check_tensor(op, "input", x)
    check_tensor(op, "weight", weight)
    check_rank(op, "input", x, 4, "(N, C, H, W)")
    check_rank(op, "weight", weight, 4, "(C_out, C_in/groups, kh, kw)")
    parents = (x, weight) if bias is None else (x, weight, bias)
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

    xp, K = x.xp, backend.kernels_for(x.xp)
    geometry = ((kh, kw), stride, padding, dilation, (ho, wo))
    taps, plane = c * kh * kw, ho * wo
    chunk = max(1, min(n, K.CONV_WORKSPACE_BYTES // (taps * plane * x.dtype.itemsize)))
    chunks = [(n0, min(n, n0 + chunk)) for n0 in range(0, n, chunk)]
    k_g, o_g = taps // groups, c_out // groups                 # taps and outputs per group
    w2 = weight.data.reshape(c_out, k_g)                        # (Cout, K/groups)
    groups_ = [(slice(gi * o_g, (gi + 1) * o_g), slice(gi * k_g, (gi + 1) * k_g)) for gi in range(groups)]

    def columns(n0, n1):
        cols = K.workspace("conv2d.cols", ((n1 - n0) * plane, taps), x.dtype)
        return K.im2col(x.data[n0:n1], *geometry, out=cols)     # (n*L, K)

    out = xp.empty((n, c_out, ho, wo), dtype=x.dtype)

    def forward_share(share):
        for n0, n1 in share:
            cols = columns(n0, n1)
            res = K.workspace("conv2d.out_t", (cols.shape[0], c_out), x.dtype)   # out^T (n*L, Cout)
            for o, k in groups_:
                xp.matmul(cols[:, k], w2[o].T, out=res[:, o])
            out[n0:n1] = res.reshape(n1 - n0, plane, c_out).transpose(0, 2, 1).reshape(n1 - n0, c_out, ho, wo)
    backend.parallel_for(xp, forward_share, chunks)
    if bias is not None:
        out += bias.data.reshape(1, c_out, 1, 1)

    def backward(g):
        gx = xp.empty(x.shape, dtype=x.dtype) if x.requires_grad else None

        def backward_share(share):
            """dx for the share's images; its partial dW (summed over shares below)."""
            gw = xp.zeros((c_out, k_g), dtype=x.dtype) if weight.requires_grad else None
            for n0, n1 in share:
                gt = K.workspace("conv2d.g_t", (n1 - n0, plane, c_out), x.dtype)
                gt[...] = g[n0:n1].reshape(n1 - n0, c_out, plane).transpose(0, 2, 1)
                gt = gt.reshape(-1, c_out)                          # g^T (n*L, Cout)
                if gw is not None:
                    cols = columns(n0, n1)
                    for o, k in groups_:
                        gw[o] += gt[:, o].T @ cols[:, k]
                if gx is not None:
                    dcols = K.workspace("conv2d.dcols", (gt.shape[0], taps), x.dtype)
                    for o, k in groups_:
                        xp.matmul(gt[:, o], w2[o], out=dcols[:, k])
                    K.col2im(dcols, (n1 - n0, c, h, w), *geometry, out=gx[n0:n1])
            return gw
        partial_gw = backend.parallel_for(xp, backward_share, chunks)
        gw = sum(partial_gw[1:], partial_gw[0]).reshape(weight.shape) if weight.requires_grad else None
        grads = (gx, gw)
        if bias is not None:
            grads += (g.sum(axis=(0, 2, 3)) if bias.requires_grad else None,)
        return grads
    return Tensor.from_op(out, parents, backward, "conv2d")
