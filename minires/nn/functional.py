"""The functional API, with PyTorch's names and argument names.

Each function is the op from ``minires.ops``; modules in ``minires.nn`` call these.
"""
from .. import ops
from ..ops import (adaptive_avg_pool2d, add_relu, avg_pool2d, batch_norm, batch_norm_add_relu,
                   batch_norm_relu, conv2d, conv2d_batch_norm_relu_eval, cross_entropy, dropout,
                   global_avg_pool2d, linear, max_pool2d, relu)


def log_softmax(input, dim=-1):
    return ops.log_softmax(input, axis=dim)


def softmax(input, dim=-1):
    return ops.exp(ops.log_softmax(input, axis=dim))


def pad(input, pad, mode="constant", value=0.0):
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is supported, got {mode!r}")
    return ops.pad(input, pad, value)


def flatten(input, start_dim=0, end_dim=-1):
    return ops.flatten(input, start_dim, end_dim)


__all__ = ["adaptive_avg_pool2d", "add_relu", "avg_pool2d", "batch_norm", "batch_norm_add_relu",
           "batch_norm_relu", "conv2d", "conv2d_batch_norm_relu_eval", "cross_entropy", "dropout",
           "flatten", "global_avg_pool2d", "linear", "log_softmax", "max_pool2d", "pad", "relu",
           "softmax"]
