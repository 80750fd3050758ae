"""Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""
from __future__ import annotations

from .. import random
from ..tensor import Tensor
from ._util import check_float, check_tensor


def dropout(x, p=0.5, training=True):
    """float32 or float64 x (an integer x cannot be scaled by 1/(1-p))."""
    check_tensor("dropout", "input", x)
    check_float("dropout", "input", x)
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    keep = random.uniform(x.xp, x.shape, x.dtype) >= p
    mask = keep / x.dtype.type(1 - p)

    def backward(g):
        return (g * mask,)
    return Tensor.from_op(x.data * mask, (x,), backward, "dropout")
