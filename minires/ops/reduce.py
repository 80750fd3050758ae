"""Reductions over axes: sum, mean, max (keepdims as in NumPy)."""
from __future__ import annotations

import math

from ..tensor import Tensor
from ._util import normalize_axes


def _expand(g, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input."""
    if not keepdims:
        kept = list(g.shape)
        for a in sorted(axes):
            kept.insert(a, 1)
        g = g.reshape(kept)
    return g


def sum(x, axis=None, keepdims=False):
    axes = normalize_axes("sum", axis, x.ndim)
    out = x.data.sum(axis=axes, keepdims=keepdims)

    def backward(g):
        return (x.xp.broadcast_to(_expand(g, x.shape, axes, keepdims), x.shape),)
    return Tensor.from_op(out, (x,), backward, "sum")


def mean(x, axis=None, keepdims=False):
    axes = normalize_axes("mean", axis, x.ndim)
    count = math.prod(x.shape[a] for a in axes)
    out = x.data.mean(axis=axes, keepdims=keepdims)

    def backward(g):
        return (x.xp.broadcast_to(_expand(g, x.shape, axes, keepdims) / count, x.shape),)
    return Tensor.from_op(out, (x,), backward, "mean")


def max(x, axis=None, keepdims=False):
    """Maximum over axes.  Ties share the gradient equally (like torch.amax)."""
    axes = normalize_axes("max", axis, x.ndim)
    if x.size == 0:
        raise ValueError(f"max: cannot reduce an empty tensor of shape {x.shape}")
    out = x.data.max(axis=axes, keepdims=keepdims)

    def backward(g):
        winners = x.data == _expand(out, x.shape, axes, keepdims)
        share = winners / winners.sum(axis=axes, keepdims=True)
        return (_expand(g, x.shape, axes, keepdims) * share.astype(x.dtype),)
    return Tensor.from_op(out, (x,), backward, "max")
