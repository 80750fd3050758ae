"""2-d convolution as im2col + GEMM (per channel group).

Forward, for x (N, C, H, W) and weight (Cout, C/groups, kh, kw):
    cols = im2col(x)                      (C*kh*kw, n*Ho*Wo)    [kernel]
    out  = W(Cout, C*kh*kw) @ cols        (Cout, n*Ho*Wo)       [BLAS GEMM]
    out  -> (n, Cout, Ho, Wo)
Backward, with g reshaped to (Cout, n*Ho*Wo):
    dW += g @ cols^T       dcols = W^T @ g  -> col2im -> dx      db = Σ g

The batch is processed in chunks of n images whose columns fit the kernel
module's workspace (a few MiB on the CPU, so cols stay in cache; the whole
batch on the GPU).  Columns are recomputed in backward rather than saved: at
batch 128 the saved columns of ResNet-20 would take ~0.9 GB.
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
    rows, plane = c * kh * kw, ho * wo
    chunk = max(1, min(n, K.CONV_WORKSPACE_BYTES // (rows * plane * x.dtype.itemsize)))
    w_groups = weight.data.reshape(groups, c_out // groups, -1)      # (G, Cout/G, rows/G)

    chunks = [(n0, min(n, n0 + chunk)) for n0 in range(0, n, chunk)]

    def columns(workspace, n0, n1):
        """im2col of images n0..n1 as (G, rows/G, (n1-n0)*Ho*Wo), in the workspace."""
        cols = workspace[:rows * (n1 - n0) * plane].reshape(rows, (n1 - n0) * plane)
        return K.im2col(x.data[n0:n1], *geometry, out=cols).reshape(groups, rows // groups, -1)

    out = xp.empty((n, c_out, ho, wo), dtype=x.dtype)

    def forward_share(share):
        workspace = xp.empty(rows * chunk * plane, dtype=x.dtype)
        for n0, n1 in share:
            res = xp.matmul(w_groups, columns(workspace, n0, n1))       # (G, Cout/G, n*L)
            out[n0:n1] = res.reshape(c_out, n1 - n0, ho, wo).transpose(1, 0, 2, 3)
    backend.parallel_for(xp, forward_share, chunks)
    if bias is not None:
        out += bias.data.reshape(1, c_out, 1, 1)

    def backward(g):
        gx = xp.empty(x.shape, dtype=x.dtype) if x.requires_grad else None

        def backward_share(share):
            """dx for the share's images; its partial dW (summed over shares below)."""
            gw = xp.zeros(w_groups.shape, dtype=x.dtype) if weight.requires_grad else None
            workspace = xp.empty(rows * chunk * plane, dtype=x.dtype) if gw is not None else None
            for n0, n1 in share:
                g2 = xp.ascontiguousarray(g[n0:n1].transpose(1, 0, 2, 3)).reshape(groups, c_out // groups, -1)
                if gw is not None:
                    gw += xp.matmul(g2, columns(workspace, n0, n1).transpose(0, 2, 1))
                if gx is not None:
                    gcols = xp.matmul(w_groups.transpose(0, 2, 1), g2).reshape(rows, -1)
                    K.col2im(gcols, (n1 - n0, c, h, w), *geometry, out=gx[n0:n1])
            return gw
        partial_gw = backend.parallel_for(xp, backward_share, chunks)
        gw = sum(partial_gw[1:], partial_gw[0]).reshape(weight.shape) if weight.requires_grad else None
        grads = (gx, gw)
        if bias is not None:
            grads += (g.sum(axis=(0, 2, 3)) if bias.requires_grad else None,)
        return grads
    return Tensor.from_op(out, parents, backward, "conv2d")
