"""Batch normalisation (PyTorch's conventions: eps 1e-5, momentum 0.1, unbiased running variance)."""
from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor
from ._util import check_float, check_same_device, check_same_dtype, check_tensor, shape_str


def batch_norm(x, running_mean, running_var, weight=None, bias=None,
               training=False, momentum=0.1, eps=1e-5):
    """Normalise each channel (dim 1) of x: (N, C), (N, C, L) or (N, C, H, W).

    training=True: batch statistics; running_mean/running_var (when given) are
    updated in place with ``momentum``, the variance unbiased (÷ M-1).
    training=False: the running statistics.  Every tensor float32 or float64 (the
    running statistics may differ from x in precision).
    """
    op = "batch_norm"
    params, stats, gamma, beta, cl, x3, count = prepare_batch_norm(
        op, x, running_mean, running_var, weight, bias, training)
    K = backend.kernels_for(x.xp)
    parents = (x, *params)

    if training:
        y3, mean, var, invstd = K.batch_norm_forward(x3, gamma, beta, eps)
        if stats:                                       # one kernel, in place
            K.batch_norm_update_running(running_mean.data, running_var.data, mean, var, count, momentum)

        def backward(g):
            dx, dgamma, dbeta = K.batch_norm_backward(channel_view(g, cl), x3, mean, invstd, gamma)
            return _select(x, weight, bias, from_channel_view(dx, x.shape, cl), dgamma, dbeta)
        return Tensor.from_op(from_channel_view(y3, x.shape, cl), parents, backward, "batch_norm")

    mean, invstd, scale, shift = eval_scale_shift(running_mean, running_var, gamma, beta, x.dtype, eps)
    y3 = eval_affine(x3, scale, shift, relu=False)

    def backward_eval(g):
        dx, dgamma, dbeta = batch_norm_eval_backward(channel_view(g, cl), x3, mean, invstd, gamma)
        return _select(x, weight, bias, from_channel_view(dx, x.shape, cl), dgamma, dbeta)
    return Tensor.from_op(from_channel_view(y3, x.shape, cl), parents, backward_eval, "batch_norm")


def prepare_batch_norm(op, x, running_mean, running_var, weight, bias, training):
    """What every batch-norm op (here and in ops/fused.py) does first: check_batch_norm, then
    -> (params, stats, gamma, beta, channels_last, x3 (A, C, B) view of x, values per channel)."""
    params, stats = check_batch_norm(op, x, running_mean, running_var, weight, bias, training)
    xp, c = x.xp, x.shape[1]
    gamma = weight.data if weight is not None else xp.ones(c, dtype=x.dtype)
    beta = bias.data if bias is not None else xp.zeros(c, dtype=x.dtype)
    cl = is_channels_last(x.data)
    x3 = channel_view(x.data, cl)                      # (A, C, B), no copy
    count = x3.shape[0] * x3.shape[2]
    if training and count <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, "
                         f"got input of shape {shape_str(x.shape)}")
    return params, stats, gamma, beta, cl, x3, count


def running_statistics(running_mean, running_var, dtype, eps):
    """Evaluation mode's (mean, 1/sqrt(var + eps)) in x's dtype: copies, so that later updates
    of the running statistics cannot leak into a saved backward."""
    mean = running_mean.data.astype(dtype)
    return mean, 1.0 / backend.get_array_module(mean).sqrt(running_var.data.astype(dtype) + eps)


def eval_scale_shift(running_mean, running_var, gamma, beta, dtype, eps):
    """Evaluation mode's affine map y = x·scale + shift per channel, from the running
    statistics: -> mean, invstd (running_statistics), scale = γ·invstd, shift = β - mean·scale."""
    mean, invstd = running_statistics(running_mean, running_var, dtype, eps)
    scale = gamma * invstd
    return mean, invstd, scale, beta - mean * scale


def batch_norm_eval_backward(g3, x3, mean, invstd, gamma):
    """Evaluation mode's backward: the statistics are constants, so y = x·scale + shift
    per channel -> dx = g·scale, dgamma = Σ g·x̂, dbeta = Σ g."""
    xhat = (x3 - mean[:, None]) * invstd[:, None]
    return g3 * (gamma * invstd)[:, None], (g3 * xhat).sum(axis=(0, 2)), g3.sum(axis=(0, 2))


def eval_affine(x3, scale, shift, relu, residual=None):
    """x3·scale + shift per channel (+ residual3, then max(·, 0) if relu): evaluation mode's
    one pass.  A parallel kernel on the CPU; array code, in place after the first product,
    on the GPU."""
    xp = backend.get_array_module(x3)
    if xp is np:
        return backend.kernels_for(np).batch_norm_affine(x3, scale, shift, relu, residual)
    y3 = x3 * scale[:, None]
    y3 += shift[:, None]
    if residual is not None:
        y3 += residual
    return xp.maximum(y3, 0, out=y3) if relu else y3


def check_batch_norm(op, x, running_mean, running_var, weight, bias, training):
    """batch_norm's argument checks (every batch-norm op's, through prepare_batch_norm):
    -> (weight and bias that are given, running statistics that are given)."""
    check_tensor(op, "input", x)
    if x.ndim < 2:
        raise ValueError(f"{op}: expected input of shape (N, C, ...), got {shape_str(x.shape)}")
    c = x.shape[1]
    for name, t in (("input", x), ("weight", weight), ("bias", bias),
                    ("running_mean", running_mean), ("running_var", running_var)):
        check_float(op, name, t)
    params = [t for t in (weight, bias) if t is not None]
    stats = [t for t in (running_mean, running_var) if t is not None]
    for name, t in (("weight", weight), ("bias", bias),
                    ("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and t.shape != (c,):
            raise ValueError(f"{op}: {name} has shape {shape_str(t.shape)}, expected ({c},) "
                             f"for input {shape_str(x.shape)}")
    check_same_device(op, x, *params, *stats)
    check_same_dtype(op, x, *params)
    if len(stats) == 1:
        raise ValueError(f"{op}: pass both running_mean and running_var, or neither")
    if not training and not stats:
        raise ValueError(f"{op}: evaluation mode (training=False) needs running_mean and running_var")
    return params, stats


def is_channels_last(a):
    """True for a 4-d NCHW array whose memory is (N, H, W, C) -- conv2d's outputs."""
    return a.ndim == 4 and a.transpose(0, 2, 3, 1).flags.c_contiguous and not a.flags.c_contiguous


def channel_view(a, channels_last):
    """(A, C, B) with the channels on axis 1: (N, C, H*W) for NCHW memory, (N*H*W, C, 1)
    for channels-last memory -- a view when ``a``'s layout allows it, else a copy."""
    if channels_last:
        return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])[:, :, None]
    return a.reshape(a.shape[0], a.shape[1], -1)


def from_channel_view(a3, shape, channels_last):
    """The inverse of channel_view: back to an (N, C, ...) array of ``shape``."""
    if channels_last:
        n, c, h, w = shape
        return a3[:, :, 0].reshape(n, h, w, c).transpose(0, 3, 1, 2)
    return a3.reshape(shape)


def _select(x, weight, bias, dx, dgamma, dbeta):
    """Gradients in the order of the op's parents (x, [weight], [bias])."""
    grads = (dx if x.requires_grad else None,)
    if weight is not None:
        grads += (dgamma.astype(weight.dtype, copy=False),)
    if bias is not None:
        grads += (dbeta.astype(bias.dtype, copy=False),)
    return grads
