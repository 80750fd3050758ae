"""Matrix products: matmul (batched, broadcasting) and linear (x @ W^T + b)."""
from __future__ import annotations

from ..tensor import Tensor
from ._util import (check_float, check_rank, check_same_device, check_same_dtype, check_tensor, shape_str,
                    unbroadcast)


def _swap(a):
    return a.swapaxes(-1, -2)


def _mm(xp, a, b):
    """a @ b of 2-d arrays; on the GPU through kernels.cuda.matmul, so that its GEMM switch
    ('own' in a captured CUDA graph, where CuPy refuses cuBLAS) covers linear too."""
    if xp.__name__ == "numpy":
        return a @ b
    from .. import backend
    return backend.kernels_for(xp).matmul(a, b)


def matmul(a, b):
    """a @ b for tensors of rank >= 1 with NumPy's rules (1-d operands are vectors)."""
    check_tensor("matmul", "a", a)
    check_tensor("matmul", "b", b)
    check_same_device("matmul", a, b)
    check_same_dtype("matmul", a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: operands must have rank >= 1, got shapes "
                         f"{shape_str(a.shape)} and {shape_str(b.shape)}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: inner dimensions differ: {shape_str(a.shape)} @ {shape_str(b.shape)} "
                         f"({k_a} != {k_b})")
    xp = a.xp
    try:
        out = xp.matmul(a.data, b.data)
    except ValueError:
        raise ValueError(f"matmul: batch dims of {shape_str(a.shape)} and {shape_str(b.shape)} "
                         f"cannot be broadcast") from None

    def backward(g):
        # Work with 2-d+ views: a vector operand is a 1-row / 1-column matrix.
        A = a.data[None, :] if a.ndim == 1 else a.data
        B = b.data[:, None] if b.ndim == 1 else b.data
        G = g
        if b.ndim == 1:              # restore the dims matmul dropped: b's column first
            G = G[..., None]
        if a.ndim == 1:
            G = G[..., None, :]
        ga = gb = None
        if a.requires_grad:
            ga = unbroadcast(xp.matmul(G, _swap(B)), A.shape).reshape(a.shape)
        if b.requires_grad:
            gb = unbroadcast(xp.matmul(_swap(A), G), B.shape).reshape(b.shape)
        return ga, gb
    return Tensor.from_op(out, (a, b), backward, "matmul")


def linear(x, weight, bias=None):
    """x @ weight^T + bias.  x: (..., in), weight: (out, in), bias: (out,); float32 or float64."""
    check_tensor("linear", "input", x)
    check_rank("linear", "weight", weight, 2, "(out_features, in_features)")
    for name, t in (("input", x), ("weight", weight), ("bias", bias)):
        check_float("linear", name, t)
    parents = (x, weight) if bias is None else (x, weight, bias)
    check_same_device("linear", *parents)
    check_same_dtype("linear", *parents)
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input {shape_str(x.shape)} has {x.shape[-1] if x.ndim else 0} "
                         f"features but weight {shape_str(weight.shape)} expects {weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias shape {shape_str(bias.shape)} != ({weight.shape[0]},)")
    x2 = x.data.reshape(-1, weight.shape[1])          # (M, in)
    xp = x.xp
    out = _mm(xp, x2, weight.data.T)                  # (M, out)
    if bias is not None:
        out += bias.data
    out = out.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(g):
        g2 = g.reshape(-1, weight.shape[0])           # (M, out)
        gx = _mm(xp, g2, weight.data).reshape(x.shape) if x.requires_grad else None
        gw = _mm(xp, g2.T, x2) if weight.requires_grad else None
        grads = (gx, gw)
        if bias is not None:
            grads += (g2.sum(axis=0) if bias.requires_grad else None,)
        return grads
    return Tensor.from_op(out, parents, backward, "linear")
