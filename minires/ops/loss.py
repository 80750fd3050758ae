"""log_softmax and the fused, numerically stable cross-entropy."""
from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor
from ._util import check_float, check_rank, check_tensor, shape_str


def _log_softmax(xp, z, axis):
    shifted = z - z.max(axis=axis, keepdims=True)      # exp never overflows
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    """log softmax over ``axis``; float32 or float64."""
    check_tensor("log_softmax", "input", x)
    check_float("log_softmax", "input", x)
    out = _log_softmax(x.xp, x.data, axis)

    def backward(g):
        return (g - x.xp.exp(out) * g.sum(axis=axis, keepdims=True),)
    return Tensor.from_op(out, (x,), backward, "log_softmax")


def cross_entropy(logits, target, reduction="mean"):
    """-log softmax(logits)[target]; logits (N, C) float32 or float64, target (N,) class indices.

    Fused (kernels' cross_entropy_forward/backward): the gradient is
    (softmax - onehot(target)) · g / N from the saved log-sum-exp, in one pass.
    A target outside [0, C) raises here on the CPU; on the GPU that check would
    cost a device sync every step, so there the kernel gives that row a NaN loss
    instead -- which the training loop reports as a NaN at that step.
    """
    op = "cross_entropy"
    check_tensor(op, "input", logits)
    check_float(op, "input", logits)
    check_rank(op, "input", logits, 2, "(N, C)")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    xp, K = logits.xp, backend.kernels_for(logits.xp)
    t = target.data if isinstance(target, Tensor) else xp.asarray(target)
    n, c = logits.shape
    if t.shape != (n,):
        raise ValueError(f"{op}: target shape {shape_str(t.shape)} does not match input "
                         f"{shape_str(logits.shape)}; expected ({n},) class indices")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {t.dtype}")
    if backend.device_of(t) != logits.device:
        raise RuntimeError(f"{op}: target is on {backend.device_of(t)} but the input is on {logits.device}")
    if xp is np and n and (t.min() < 0 or t.max() >= c):
        raise ValueError(f"{op}: target values must be in [0, {c}), got min {t.min()} max {t.max()}")
    losses, lse = K.cross_entropy_forward(logits.data, t)
    if reduction == "mean":
        out, scale = losses.mean(), 1.0 / max(n, 1)
    elif reduction == "sum":
        out, scale = losses.sum(), 1.0
    else:
        out, scale = losses, 1.0

    def backward(g):
        return (K.cross_entropy_backward(logits.data, t, lse, g, scale),)
    return Tensor.from_op(out, (logits,), backward, "cross_entropy")
