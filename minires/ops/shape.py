"""Shape ops: reshape, flatten, transpose/permute, indexing, pad, concatenate, stack."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..tensor import Tensor
from ._util import check_axis, check_same_device, check_same_dtype, shape_str


def reshape(x, shape):
    shape = tuple(int(n) for n in shape)
    try:
        out = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape {shape_str(x.shape)} ({x.size} elements) "
                         f"into {shape}") from None
    return Tensor.from_op(out, (x,), lambda g: (g.reshape(x.shape),), "reshape")


def flatten(x, start_dim=0, end_dim=-1):
    """Merge dims start_dim..end_dim into one (Flatten in a network: start_dim=1)."""
    if x.ndim == 0:
        return reshape(x, (1,))
    s = check_axis("flatten", start_dim, x.ndim, "start_dim", x.shape)
    e = check_axis("flatten", end_dim, x.ndim, "end_dim", x.shape)
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                         f"for a tensor of rank {x.ndim}")
    shape = x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
    return reshape(x, shape)


def permute(x, dims):
    dims = tuple(check_axis("permute", d, x.ndim, "dim", x.shape) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: {dims} is not a permutation of the {x.ndim} dims "
                         f"of a tensor of shape {shape_str(x.shape)}")
    inverse = tuple(np.argsort(dims))
    return Tensor.from_op(x.data.transpose(dims), (x,),
                          lambda g: (g.transpose(inverse),), "permute")


def transpose(x, dim0, dim1):
    dims = list(range(x.ndim))
    a, b = (check_axis("transpose", d, x.ndim, "dim", x.shape) for d in (dim0, dim1))
    dims[a], dims[b] = dims[b], dims[a]
    return permute(x, dims)


def _is_basic(index):
    """True for int/slice/None/Ellipsis indexing (a view: no element picked twice)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (numbers.Integral, slice)) or p is None or p is Ellipsis
               for p in parts)


def _unwrap_index(index, xp):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(_unwrap_index(i, xp) for i in index)
    if isinstance(index, list):
        return xp.asarray(index)
    return index


def getitem(x, index):
    """x[index]: ints, slices (strided too: x[:, :, ::2, ::2]), None, ..., arrays, masks."""
    index = _unwrap_index(index, x.xp)
    try:
        out = x.data[index]
    except IndexError as e:
        raise IndexError(f"getitem: {e} (tensor of shape {shape_str(x.shape)})") from None
    basic = _is_basic(index)

    def backward(g):
        gx = x.xp.zeros_like(x.data)
        if basic:
            gx[index] = g                      # a view: every element at most once
        else:
            backend.scatter_add(x.xp, gx, index, g)   # repeated indices must sum
        return (gx,)
    return Tensor.from_op(out, (x,), backward, "getitem")


def pad(x, pad, value=0.0):
    """Constant padding, PyTorch-shaped: ``pad`` lists (before, after) pairs
    starting from the LAST dim.  pad(x, (0, 0, 0, 0, 4, 4)) adds 4 zero
    channels on each side of dim -3 (the option-A shortcut)."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: expected an even number of pad sizes covering at most "
                         f"{x.ndim} dims, got {pad}")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding {pad} is not supported (slice instead)")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    out = x.xp.pad(x.data, widths, mode="constant", constant_values=value)
    inner = tuple(slice(b, b + n) for (b, _), n in zip(widths, x.shape))
    return Tensor.from_op(out, (x,), lambda g: (g[inner],), "pad")


def cat(tensors, axis=0):
    """Concatenate along an existing axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    check_same_device("cat", *tensors)
    check_same_dtype("cat", *tensors)
    ref = tensors[0]
    if ref.ndim == 0:
        raise ValueError("cat: zero-dimensional tensors of shape () cannot be concatenated; use stack")
    axis = check_axis("cat", axis, ref.ndim)
    for t in tensors:
        if t.ndim != ref.ndim or t.shape[:axis] + t.shape[axis + 1:] != ref.shape[:axis] + ref.shape[axis + 1:]:
            raise ValueError("cat: shapes " + ", ".join(shape_str(u.shape) for u in tensors)
                             + f" differ outside axis {axis}")
    out = ref.xp.concatenate([t.data for t in tensors], axis=axis)
    bounds = np.cumsum([0] + [t.shape[axis] for t in tensors])

    def backward(g):
        return tuple(g[(slice(None),) * axis + (slice(lo, hi),)] for lo, hi in zip(bounds[:-1], bounds[1:]))
    return Tensor.from_op(out, tuple(tensors), backward, "cat")


def stack(tensors, axis=0):
    """Stack along a new axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    if len({t.shape for t in tensors}) > 1:
        raise ValueError("stack: all tensors need one shape, got "
                         + ", ".join(shape_str(t.shape) for t in tensors))
    axis = check_axis("stack", axis, tensors[0].ndim + 1)
    return cat([reshape(t, t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors], axis)
