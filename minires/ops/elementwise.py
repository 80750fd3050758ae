"""Elementwise ops: arithmetic with broadcasting, exp/log/sqrt, relu, casts, device moves."""
from __future__ import annotations

import numbers

from .. import backend
from ..tensor import Tensor
from ._util import as_operands, unbroadcast


def add(a, b):
    a, b = as_operands("add", a, b)

    def backward(g):
        # d(a+b)/da = d(a+b)/db = 1: the gradient passes to both inputs
        # unchanged -- in y = x + F(x) this is the shortcut's "+1".
        return unbroadcast(g, a.shape), unbroadcast(g, b.shape)
    return Tensor.from_op(a.data + b.data, (a, b), backward, "add")


def sub(a, b):
    a, b = as_operands("sub", a, b)

    def backward(g):
        return unbroadcast(g, a.shape), unbroadcast(-g, b.shape)
    return Tensor.from_op(a.data - b.data, (a, b), backward, "sub")


def mul(a, b):
    a, b = as_operands("mul", a, b)

    def backward(g):
        return (unbroadcast(g * b.data, a.shape) if a.requires_grad else None,
                unbroadcast(g * a.data, b.shape) if b.requires_grad else None)
    return Tensor.from_op(a.data * b.data, (a, b), backward, "mul")


def div(a, b):
    a, b = as_operands("div", a, b)
    out = a.data / b.data

    def backward(g):
        ga = g / b.data
        return (unbroadcast(ga, a.shape) if a.requires_grad else None,
                unbroadcast(-ga * out, b.shape) if b.requires_grad else None)
    return Tensor.from_op(out, (a, b), backward, "div")


def neg(x):
    return Tensor.from_op(-x.data, (x,), lambda g: (-g,), "neg")


def pow(base, exponent):
    """base ** exponent; a number exponent is a constant, a tensor one is differentiated."""
    if isinstance(base, Tensor) and isinstance(exponent, numbers.Number):
        x, p = base, exponent
        out = x.data ** p

        def backward_const(g):
            return (g * p * x.data ** (p - 1),)
        return Tensor.from_op(out, (x,), backward_const, "pow")
    a, b = as_operands("pow", base, exponent)
    out = a.data ** b.data

    def backward(g):
        xp = a.xp
        ga = unbroadcast(g * b.data * a.data ** (b.data - 1), a.shape) if a.requires_grad else None
        gb = None
        if b.requires_grad:
            # d(a^b)/db = a^b log a, defined as 0 where a^b is 0 (a = 0, b > 0)
            log_a = xp.log(xp.where(a.data > 0, a.data, 1))
            gb = unbroadcast(g * out * log_a, b.shape)
        return ga, gb
    return Tensor.from_op(out, (a, b), backward, "pow")


def exp(x):
    out = x.xp.exp(x.data)
    return Tensor.from_op(out, (x,), lambda g: (g * out,), "exp")


def log(x):
    return Tensor.from_op(x.xp.log(x.data), (x,), lambda g: (g / x.data,), "log")


def sqrt(x):
    out = x.xp.sqrt(x.data)
    return Tensor.from_op(out, (x,), lambda g: (g / (2 * out),), "sqrt")


def relu(x):
    out = x.xp.maximum(x.data, 0)

    def backward(g):
        return (g * (out > 0),)
    return Tensor.from_op(out, (x,), backward, "relu")


def astype(x, dtype):
    """Cast; the gradient is cast back to the input's dtype."""
    src = x.dtype
    if x.xp.dtype(dtype) == src:
        return x
    return Tensor.from_op(x.data.astype(dtype), (x,), lambda g: (g.astype(src),), "astype")


def to_device(x, device):
    """Move to 'cpu' or 'cuda'; the gradient moves back."""
    device = backend.normalize_device(device)
    src = x.device
    if device == src:
        return x
    moved = backend.to_device(x.data, device)
    return Tensor.from_op(moved, (x,), lambda g: (backend.to_device(g, src),), f"to_{device}")
