"""Shared checks and helpers for the ops: operand coercion, error messages, unbroadcast."""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..tensor import Tensor


def shape_str(shape):
    return "(" + ", ".join(str(int(n)) for n in shape) + ")"


def check_same_device(op, *tensors):
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        described = ", ".join(f"{shape_str(t.shape)} on {t.device}" for t in tensors)
        raise RuntimeError(f"{op}: all tensors must be on one device, got {described}; "
                           f"move them with .to('cpu') or .to('cuda')")


def check_same_dtype(op, *tensors):
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        described = ", ".join(f"{shape_str(t.shape)} {t.dtype}" for t in tensors)
        raise TypeError(f"{op}: dtype mismatch ({described}); convert with .astype(...) "
                        f"(minires does not promote silently)")


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float(op, name, t):
    """The dtype rule of the ops whose math and kernels are floating-point only (conv2d,
    batch_norm, pooling, linear, losses, dropout): float32 or float64.  Integer and bool
    inputs would wrap around or truncate silently, and the CPU kernels have no float16."""
    if t is not None and t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} has dtype {t.dtype}; {op} takes float32 or float64 "
                        f"-- convert with .float() (float32) or .double() (float64)")


def check_rank(op, name, t, ndim, layout=""):
    if t.ndim != ndim:
        layout = f" {layout}" if layout else ""
        raise ValueError(f"{op}: expected {name} of rank {ndim}{layout}, got shape {shape_str(t.shape)}")


def check_tensor(op, name, t):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a minires Tensor, got {type(t).__name__}")


def as_operands(op, a, b):
    """Two tensors of one dtype and device from tensor/number/array operands.

    A Python number takes the other operand's dtype (it is a constant, not a
    graph input); arrays become constant tensors.
    """
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{op}: at least one operand must be a Tensor")
    like = a if isinstance(a, Tensor) else b
    a, b = (_coerce(op, v, like) for v in (a, b))
    check_same_device(op, a, b)
    check_same_dtype(op, a, b)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {shape_str(a.shape)} and {shape_str(b.shape)} "
                         f"cannot be broadcast together") from None
    return a, b


def _coerce(op, value, like):
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (numbers.Number, np.generic)):
        if like.dtype.kind in "biu" and not isinstance(value, (numbers.Integral, np.integer)):
            raise TypeError(f"{op}: cannot combine a {like.dtype} tensor with the number {value!r} "
                            f"(minires does not promote silently); convert with .astype(...)")
        if like.xp is np:
            return Tensor(np.asarray(value, dtype=like.dtype))
        # on the GPU a fill kernel, not a host-to-device copy: capturable in a CUDA graph
        return Tensor(like.xp.full((), value, dtype=like.dtype))
    if isinstance(value, np.ndarray) or backend.is_cupy_array(value):
        return Tensor(value)
    raise TypeError(f"{op}: unsupported operand type {type(value).__name__}")


def unbroadcast(g, shape):
    """Sum a broadcast gradient back down to ``shape`` (the input's shape)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes).reshape(shape)


def normalize_axes(op, axis, ndim):
    """A tuple of non-negative axes (all axes for None)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor of rank {ndim}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(out)


def pair(op, name, value):
    """(a, b) from an int or a 2-sequence of ints (kernel sizes, strides...)."""
    if type(value) is int:                  # the common cases first: the ABC checks below
        return (value, value)               # cost ~2 ms of a ResNet-20 step
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value
    if isinstance(value, numbers.Integral):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, numbers.Integral) for v in value):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if len(value) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {tuple(value)}")
    return tuple(int(v) for v in value)


class AxisError(ValueError, IndexError):
    """An axis out of range (both a ValueError and an IndexError, like NumPy's)."""


def check_axis(op, axis, ndim, name="axis", shape=None):
    """A non-negative axis, or an AxisError naming the op, the axis and the rank."""
    if not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        of = f"shape {shape_str(shape)} (rank {ndim})" if shape is not None else f"rank {ndim}"
        raise AxisError(f"{op}: {name} {axis} is out of range for a tensor of {of} "
                        f"(expected {-ndim}..{ndim - 1})")
    return int(axis) % ndim
