"""The residual addition + ReLU, forward and backward, and the sum of two gradients,
each one pass over memory split across minires's threads (NumPy runs them on one):

    add_relu_forward(a, b)     y = max(a + b, 0)        (NumPy: a + b, then a second pass)
    relu_backward(g, y)        g·[y > 0]                (NumPy: a bool temporary, then g * it)
    add(a, b)                  a + b                    (autograd's fan-out sums: a residual
                                                         block's input gets two gradients)

Both take arrays of one shape whose memory has one layout (conv2d's outputs and everything
computed from them are NCHW views of channels-last memory), and walk that memory flat: the
result has the inputs' layout.  minires/ops/fused.py checks the layouts and falls back to
array code when they differ.
"""
import numpy as np
from numba import njit, uint64

from .rows import over_rows


# Serial, GIL-free passes over elements i0..i1-1 of flat arrays; rows.over_rows runs
# them on this thread or splits them across minires's threads.
@njit(nogil=True, cache=True, fastmath=True)
def _add_relu(a, b, y, i0, i1):
    for i in range(uint64(i0), uint64(i1)):
        v = a[i] + b[i]
        if v < 0:
            v = 0.0
        y[i] = v


@njit(nogil=True, cache=True)
def _add(a, b, y, i0, i1):
    for i in range(uint64(i0), uint64(i1)):
        y[i] = a[i] + b[i]


@njit(nogil=True, cache=True, fastmath=True)
def _relu_mask(g, y, out, i0, i1):
    for i in range(uint64(i0), uint64(i1)):
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


def _binary(kernel, a, b):
    """kernel(a, b, y, i0, i1) over the flat memory of a, b and a new y of their layout,
    split across the threads; None when they share no dense layout or dtype."""
    order = dense_order(a, b)
    if order is None or a.dtype != b.dtype:
        return None
    y = np.empty(a.transpose(order).shape, dtype=a.dtype).transpose(np.argsort(order))
    fa, fb, fy = _flat(a, order), _flat(b, order), _flat(y, order)
    over_rows(lambda i0, i1: kernel(fa, fb, fy, i0, i1), fa.size, 3 * a.nbytes)
    return y


def add_relu_forward(a, b):
    """max(a + b, 0) in a's (and b's) layout; None when they share no dense layout."""
    return _binary(_add_relu, a, b)


def relu_backward(g, y):
    """g·[y > 0] in y's layout (g is copied to it first if it has another)."""
    order = dense_order(y)
    if order is None:
        return g * (y > 0)
    if dense_order(g, y) is None:
        g = np.ascontiguousarray(g.transpose(order)).transpose(np.argsort(order))
    out = np.empty(y.transpose(order).shape, dtype=g.dtype).transpose(np.argsort(order))
    fg, fy, fo = _flat(g, order), _flat(y, order), _flat(out, order)
    over_rows(lambda i0, i1: _relu_mask(fg, fy, fo, i0, i1), fg.size, 3 * g.nbytes)
    return out


def add(a, b):
    """a + b (bit for bit NumPy's) in their shared layout; None when they share no dense
    layout or dtype (the caller then adds with NumPy)."""
    return _binary(_add, a, b)
