"""Batch norm on the GPU (batchnorm.cu), plain and fused with ReLU, over x3 (N, C, L)."""
from __future__ import annotations

import numpy as np

from . import _launch
from ._launch import BLOCK, _as_device, _ceil_div, _check_ndim, _check_out, _ctype, _cupy, _i32, _kernel, \
    _launch_1d, _vector
from ._sources import expr

BN_REDUCE_BLOCK = 512       # threads per channel in the batch-norm reductions (a multiple of 32)
BN_ITEMS = 4                # values per thread in the batch-norm apply kernels


def _bn_apply_grid(count, channels):
    """(blocks per channel, channels) for the apply kernels: ~BN_ITEMS values per thread."""
    return (min(max(1, _ceil_div(count, BLOCK * BN_ITEMS)), _launch._MAX_GRID_X),
            min(channels, _launch._MAX_GRID_YZ))


def _bn_forward(x, gamma, beta, eps, relu):
    cp = _cupy()
    t = _ctype(x.dtype, "batch_norm input")
    _check_ndim(x, 3, "batch_norm input (N, C, L)")
    x = _as_device(x)
    n, c, length = x.shape
    gamma = _vector(gamma, c, x.dtype, "gamma")
    beta = _vector(beta, c, x.dtype, "beta")
    stats = cp.empty((3, c), dtype=cp.float64)
    mean, var, invstd = stats[0], stats[1], stats[2]
    y = cp.empty_like(x)
    if c == 0 or x.size == 0:
        stats.fill(np.nan)
        return y, mean, var, invstd
    shape_args = (_i32(n, "N"), _i32(c, "C"), np.int64(length))
    _kernel("batchnorm.cu", expr("bn_forward_stats_kernel", t))(
        (min(c, _launch._MAX_GRID_X),), (BN_REDUCE_BLOCK,),
        (x, *shape_args, np.float64(eps), mean, var, invstd))
    _kernel("batchnorm.cu", expr("bn_forward_apply_kernel", t, "true" if relu else "false"))(
        _bn_apply_grid(n * length, c), (BLOCK,), (x, y, mean, invstd, gamma, beta, *shape_args))
    return y, mean, var, invstd


def _bn_backward(g, x, y, mean, invstd, gamma, relu):
    cp = _cupy()
    t = _ctype(x.dtype, "batch_norm input")
    _check_ndim(x, 3, "batch_norm input (N, C, L)")
    x = _as_device(x)
    g = _as_device(g, x.dtype)
    if g.shape != x.shape:
        raise ValueError(f"batch_norm backward: gradient {tuple(g.shape)} != input {tuple(x.shape)}")
    if relu:
        y = _as_device(y, x.dtype)
        if y.shape != x.shape:
            raise ValueError(f"batch_norm_relu backward: output {tuple(y.shape)} != input {tuple(x.shape)}")
    else:
        y = x                                   # not read by the RELU = false kernels
    n, c, length = x.shape
    mean = _vector(mean, c, cp.float64, "mean")
    invstd = _vector(invstd, c, cp.float64, "invstd")
    gamma = _vector(gamma, c, x.dtype, "gamma")
    dx = cp.empty_like(x)
    dgamma = cp.empty(c, dtype=x.dtype)        # separate arrays: they become parameter gradients
    dbeta = cp.empty(c, dtype=x.dtype)
    if c == 0 or x.size == 0:
        dgamma.fill(0)
        dbeta.fill(0)
        return dx, dgamma, dbeta
    coef = cp.empty(3 * c, dtype=cp.float64)    # per channel: gamma*invstd, Σg/M, Σg(x-mean)invstd²/M
    flag = "true" if relu else "false"
    shape_args = (_i32(n, "N"), _i32(c, "C"), np.int64(length))
    _kernel("batchnorm.cu", expr("bn_backward_reduce_kernel", t, flag))(
        (min(c, _launch._MAX_GRID_X),), (BN_REDUCE_BLOCK,),
        (g, x, y, mean, invstd, gamma, *shape_args, dgamma, dbeta, coef))
    _kernel("batchnorm.cu", expr("bn_backward_apply_kernel", t, flag))(
        _bn_apply_grid(n * length, c), (BLOCK,), (g, x, y, mean, coef, *shape_args, dx))
    return dx, dgamma, dbeta


def batch_norm_forward(x, gamma, beta, eps):
    """x (N, C, L) -> y, mean, var (biased), invstd; the statistics are float64 (C,), as on the CPU.

    batchnorm.cu: one block per channel computes the statistics in one pass
    (shifted sums in double), then an elementwise kernel writes y.
    """
    return _bn_forward(x, gamma, beta, eps, relu=False)


def batch_norm_backward(g, x, mean, invstd, gamma):
    """-> dx (N, C, L), dgamma (C,), dbeta (C,) in x's dtype.

    batchnorm.cu: one reduction pass per channel (Σg, Σg·(x-mean)), one elementwise pass.
    """
    return _bn_backward(g, x, None, mean, invstd, gamma, relu=False)


def batch_norm_update_running(running_mean, running_var, mean, var, count, momentum):
    """In place: running = (1 - momentum) running + momentum batch (variance unbiased, x M/(M-1)).

    batchnorm.cu: one launch for both statistics; mean and var as batch_norm_forward gives them.
    """
    cp = _cupy()
    _check_ndim(running_mean, 1, "batch_norm running_mean (C,)")
    c = running_mean.shape[0]
    for what, a in (("running_mean", running_mean), ("running_var", running_var)):
        _check_out(a, (c,), running_mean.dtype, f"batch_norm {what}")   # updated in place
    t = _ctype(running_mean.dtype, "batch_norm running statistics")
    mean = _vector(mean, c, cp.float64, "mean")
    var = _vector(var, c, cp.float64, "var")
    _launch_1d(_kernel("batchnorm.cu", expr("bn_update_running_kernel", t)), c,
               (running_mean, running_var, mean, var, _i32(c, "C"), np.float64(momentum),
                np.float64(count / (count - 1))))


def batch_norm_relu_forward(x, gamma, beta, eps):
    """relu(batch_norm(x)) in one pass: -> y, mean, var, invstd (as batch_norm_forward).

    Used by minires/ops/fused.py's ``batch_norm_relu`` in training mode, where a model
    has BN immediately followed by ReLU (the stem and the first BN of every ResNet
    basic block; the CIFAR models call it when fusion is on): it updates the running
    statistics from mean/var exactly as ops/norm.py does, keeps y (its own output,
    which autograd holds anyway) and in backward calls
    batch_norm_relu_backward(g, x3, y3, mean, invstd, gamma).  It saves the
    intermediate BN output (one activation-sized tensor per layer) and two
    elementwise passes.  Evaluation mode runs array code (ops/norm.py eval_affine).
    """
    return _bn_forward(x, gamma, beta, eps, relu=True)


def batch_norm_relu_backward(g, x, y, mean, invstd, gamma):
    """Backward of relu(batch_norm(x)); y is the forward's output (its y > 0 is ReLU's mask).

    -> dx, dgamma, dbeta: batch-norm backward of g·(y > 0), masked on the fly.
    """
    return _bn_backward(g, x, y, mean, invstd, gamma, relu=True)

