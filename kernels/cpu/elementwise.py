"""The residual addition + ReLU, forward and backward, each one parallel pass over memory.

    add_relu_forward(a, b)     y = max(a + b, 0)        (NumPy: a + b, then a second pass)
    relu_backward(g, y)        g·[y > 0]                (NumPy: a bool temporary, then g * it)

Both take arrays of one shape whose memory has one layout (conv2d's outputs and everything
computed from them are NCHW views of channels-last memory), and walk that memory flat: the
result has the inputs' layout.  minires/ops/fused.py checks the layouts and falls back to
array code when they differ.
"""
import numpy as np
from numba import njit, prange, uint64

_BLOCKS = 64          # as kernels/cpu/batchnorm.py: enough to balance the threads


@njit(parallel=True, cache=True, fastmath=True)
def _add_relu(a, b, y):
    size = a.size
    per = (size + _BLOCKS - 1) // _BLOCKS
    for blk in prange(_BLOCKS):
        for i in range(uint64(blk * per), uint64(min(size, (blk + 1) * per))):
            v = a[i] + b[i]
            if v < 0:
                v = 0.0
            y[i] = v


@njit(parallel=True, cache=True, fastmath=True)
def _relu_mask(g, y, out):
    size = g.size
    per = (size + _BLOCKS - 1) // _BLOCKS
    for blk in prange(_BLOCKS):
        for i in range(uint64(blk * per), uint64(min(size, (blk + 1) * per))):
            out[i] = g[i] if y[i] > 0 else 0.0


def dense_order(*arrays):
    """The axis order in which all ``arrays`` (one shape) are C-contiguous -- the identity
    for NCHW memory, (0, 2, 3, 1) for channels-last -- or None when there is none."""
    shape = arrays[0].shape
    orders = [tuple(range(len(shape)))]
    if len(shape) == 4:
        orders.append((0, 2, 3, 1))
    for order in orders:
        if all(a.shape == shape and a.transpose(order).flags.c_contiguous for a in arrays):
            return order
    return None


def _flat(a, order):
    return a.transpose(order).reshape(-1)


def add_relu_forward(a, b):
    """max(a + b, 0) in a's (and b's) layout; None when they share no dense layout."""
    order = dense_order(a, b)
    if order is None or a.dtype != b.dtype:
        return None
    y = np.empty(a.transpose(order).shape, dtype=a.dtype).transpose(np.argsort(order))
    _add_relu(_flat(a, order), _flat(b, order), _flat(y, order))
    return y


def relu_backward(g, y):
    """g·[y > 0] in y's layout (g is copied to it first if it has another)."""
    order = dense_order(y)
    if order is None:
        return g * (y > 0)
    if dense_order(g, y) is None:
        g = np.ascontiguousarray(g.transpose(order)).transpose(np.argsort(order))
    out = np.empty(y.transpose(order).shape, dtype=g.dtype).transpose(np.argsort(order))
    _relu_mask(_flat(g, order), _flat(y, order), _flat(out, order))
    return out
