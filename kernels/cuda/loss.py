"""Cross-entropy on the GPU (loss.cu): per-row losses and the logits' gradient."""
from __future__ import annotations

import numpy as np

from ._launch import _as_device, _ceil_div, _check_ndim, _ctype, _cupy, _i32, _is_cupy, _kernel, _launch_1d, \
    _vector
from ._sources import INDEX_CTYPES, expr

CE_ROWS_PER_BLOCK = 4       # cross-entropy forward: one warp per row


def _ce_target(target, n):
    cp = _cupy()
    target = cp.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype {target.dtype}")
    if target.shape != (n,):
        raise ValueError(f"cross_entropy: target shape {tuple(target.shape)} != ({n},)")
    if target.dtype.name not in INDEX_CTYPES:
        target = target.astype(cp.int64)
    return cp.ascontiguousarray(target), INDEX_CTYPES[target.dtype.name]


def cross_entropy_forward(logits, target):
    """logits (N, C), target (N,) ints -> losses (N,), lse (N,) in logits' dtype.

    losses[i] = -log softmax(logits)[i, target[i]], NaN where target[i] is not in
    [0, C) (no host-side check: it would sync every step); lse (the row's
    log-sum-exp) is what cross_entropy_backward needs.  loss.cu: a warp per row.
    An op would reduce the losses itself (mean/sum) -- NaN propagates.
    """
    cp = _cupy()
    t = _ctype(logits.dtype, "cross_entropy logits")
    _check_ndim(logits, 2, "cross_entropy logits (N, C)")
    logits = _as_device(logits)
    n, c = logits.shape
    if c == 0:
        raise ValueError("cross_entropy: logits have no classes (C = 0)")
    target, ti = _ce_target(target, n)
    losses = cp.empty(n, dtype=logits.dtype)
    lse = cp.empty(n, dtype=logits.dtype)
    if n:
        _kernel("loss.cu", expr("cross_entropy_forward_kernel", t, ti))(
            (_ceil_div(n, CE_ROWS_PER_BLOCK),), (32 * CE_ROWS_PER_BLOCK,),
            (logits, target, losses, lse, _i32(n, "N"), _i32(c, "C")))
    return losses, lse


def cross_entropy_backward(logits, target, lse, g, scale=1.0):
    """d logits = (softmax(logits) - onehot(target)) * g * scale; NaN rows for bad targets.

    g: the upstream gradient on the device -- one element (reductions 'mean' and
    'sum': pass scale 1/N and 1) or N elements (reduction 'none'); a Python
    number is accepted too.  loss.cu: one thread per logit.
    """
    cp = _cupy()
    t = _ctype(logits.dtype, "cross_entropy logits")
    _check_ndim(logits, 2, "cross_entropy logits (N, C)")
    logits = _as_device(logits)
    n, c = logits.shape
    target, ti = _ce_target(target, n)
    lse = _vector(lse, n, logits.dtype, "lse")
    g = cp.full((), g, dtype=logits.dtype) if not _is_cupy(g) else _as_device(g, logits.dtype)
    if g.size == 1:
        g_stride = 0
    elif g.size == n:
        g_stride = 1
    else:
        raise ValueError(f"cross_entropy backward: upstream gradient of shape {tuple(g.shape)}, "
                         f"expected one element or ({n},)")
    grad = cp.empty_like(logits)
    scalar = np.float32 if t == "float" else np.float64
    _launch_1d(_kernel("loss.cu", expr("cross_entropy_backward_kernel", t, ti)), grad.size,
               (logits, target, lse, g, np.int64(g_stride), scalar(scale), grad, _i32(n, "N"), _i32(c, "C")))
    return grad
