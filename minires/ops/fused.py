"""Fused ops: batch norm + ReLU and the residual addition + ReLU, each one op, one node.

    batch_norm_relu(x, ...)           = relu(batch_norm(x, ...))          node "batch_norm_relu"
    add_relu(a, b)                    = relu(a + b)                       node "add_relu"
    batch_norm_add_relu(x, r, ...)    = relu(batch_norm(x, ...) + r)      node "batch_norm_add_relu"
    conv2d_batch_norm_relu_eval(x, w, ..., residual=r)
                                      = relu(batch_norm(conv2d(x, w)) [+ r])  no node (no_grad only)

(batch_norm_add_relu is the end of a basic block: its second BN, the shortcut's addition,
the ReLU.  The last is for forward passes that build no graph -- evaluation, inference:
there batch norm is a fixed affine map per channel, and the Winograd output transform
applies it, the addition and the ReLU as it writes each tile, so the convolution's output
never makes a pass through memory of its own.)

Why: on the CPU these elementwise passes are memory-bound, and unfused each one reads and
writes a whole activation.  Fused, batch norm's last forward pass writes max(x*scale +
shift, 0) directly; its backward reads g·[y > 0] (ReLU's backward mask) as it reads g; the
addition and its ReLU are one pass forward and one backward.  The BN output before the
ReLU and the sum before the ReLU are never stored: one activation-sized array less per
fused pair, in the graph as well as in time (a graph keeps every op's inputs alive until
backward, so an unfused basic block holds its second BN's output and its sum as well).

The design choice -- fusion is an explicit, visible choice, never a rewrite behind the
user's back.  minires exists to study autograd, and a fused op hides the relu (and the
add) that a reader expects to find in a graph, a trace or a hook.  So:

  * F.batch_norm_relu, F.add_relu and F.batch_norm_add_relu are ordinary ops that always
    fuse: call one and you get one node; call batch_norm then relu and you get two,
    whatever the switch says.
  * The CIFAR models (minires/models/cifar.py) call the fused ops when ``fusion_enabled()``
    is true, the eager ops otherwise.  It is true by default (training speed); false
    inside ``minires.trace()`` (the tracer must see every op), under
    ``with minires.fusion(False):``, after ``minires.set_fusion(False)``, or with
    MINIRES_FUSION=0 in the environment.  A batch norm module with a forward hook is never
    fused (model_summary and other hooks must see its output).
  * Tensor.register_hook on the BN output before the ReLU, or on the sum before it, needs
    those tensors to exist: build the graph with fusion off (docs/autograd.md's tour does).

The gradients are the unfused ops' (same kernels, same summation order, the ReLU mask
applied as a select; batch_norm_relu and add_relu are bit-identical on the CPU,
batch_norm_add_relu may round its sum once instead of twice): tests/test_fused.py checks
float64 gradients against central differences and float32 results against the eager ops,
with the bounds it states.  On the GPU batch_norm_relu runs
kernels/cuda's batch_norm_relu_forward/backward; add_relu runs the array code below on
both devices when the CPU kernel does not apply (other layouts, broadcasting, integers);
batch_norm_add_relu runs batch_norm_forward and adds in place where its CPU kernel does not
apply (the GPU, NCHW memory) -- one output array either way.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from .. import autograd, backend
from ..tensor import Tensor
from ._util import as_operands, check_same_device, check_same_dtype, check_tensor, shape_str, unbroadcast
from . import winograd
from .conv import check_conv2d, conv2d
from .norm import (_select, batch_norm_eval_backward, channel_view, check_batch_norm, eval_affine,
                   eval_scale_shift, from_channel_view, prepare_batch_norm)

ENV_VAR = "MINIRES_FUSION"
_chosen = None        # set_fusion's choice; None: the environment decides


def set_fusion(enabled):
    """Let the models fuse (True) or not (False); None goes back to $MINIRES_FUSION
    (default on).  Returns the previous setting (True, False or None)."""
    global _chosen
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_fusion: expected True, False or None, got {enabled!r}")
    previous, _chosen = _chosen, enabled
    return previous


@contextlib.contextmanager
def fusion(enabled=True):
    """``with minires.fusion(False):`` -- the models inside build every op as its own node."""
    previous = set_fusion(enabled)
    try:
        yield
    finally:
        set_fusion(previous)


def fusion_enabled():
    """Whether the models should call the fused ops now: off while a trace records."""
    if autograd.tracer is not None:
        return False
    if _chosen is not None:
        return _chosen
    value = os.environ.get(ENV_VAR, "1")
    if value not in ("0", "1"):
        raise ValueError(f"minires: {ENV_VAR}={value!r}; expected 1 (fuse) or 0 (do not), "
                         f"or leave it unset (fuse)")
    return value == "1"


def _cpu_kernels(xp):
    """kernels/cpu when the arrays are NumPy's (its add_relu kernels are CPU-only), else None."""
    return backend.kernels_for(np) if xp is np else None


def batch_norm_relu(x, running_mean, running_var, weight=None, bias=None,
                    training=False, momentum=0.1, eps=1e-5):
    """relu(batch_norm(x, ...)) as one op; the arguments and their checks are batch_norm's.
    (N, C, ...) -> (N, C, ...), in x's memory layout."""
    op = "batch_norm_relu"
    params, stats, gamma, beta, cl, x3, count = prepare_batch_norm(
        op, x, running_mean, running_var, weight, bias, training)
    K = backend.kernels_for(x.xp)
    parents = (x, *params)

    if training:
        y3, mean, var, invstd = K.batch_norm_relu_forward(x3, gamma, beta, eps)
        if stats:
            K.batch_norm_update_running(running_mean.data, running_var.data, mean, var, count, momentum)

        def backward(g):
            # y3 is the op's own output (the next layer holds it anyway): its y > 0 is the mask
            dx, dgamma, dbeta = K.batch_norm_relu_backward(channel_view(g, cl), x3, y3, mean, invstd, gamma)
            return _select(x, weight, bias, from_channel_view(dx, x.shape, cl), dgamma, dbeta)
        return Tensor.from_op(from_channel_view(y3, x.shape, cl), parents, backward, op)

    mean, invstd, scale, shift = eval_scale_shift(running_mean, running_var, gamma, beta, x.dtype, eps)
    y3 = eval_affine(x3, scale, shift, relu=True)

    def backward_eval(g):
        g3 = channel_view(g, cl) * (y3 > 0)            # ReLU's mask, then batch_norm's backward
        dx, dgamma, dbeta = batch_norm_eval_backward(g3, x3, mean, invstd, gamma)
        return _select(x, weight, bias, from_channel_view(dx, x.shape, cl), dgamma, dbeta)
    return Tensor.from_op(from_channel_view(y3, x.shape, cl), parents, backward_eval, op)


def add_relu(a, b):
    """relu(a + b) as one op: the residual addition and the ReLU after it (broadcasting as add).

    Backward: g·[y > 0] to both inputs -- add's "+1" to each, after ReLU's mask."""
    a, b = as_operands("add_relu", a, b)
    xp, K = a.xp, _cpu_kernels(a.xp)
    out = None
    if K is not None and a.shape == b.shape and a.dtype.kind == "f":
        out = K.add_relu_forward(a.data, b.data)       # None when a and b differ in layout
    if out is None:
        out = a.data + b.data
        xp.maximum(out, 0, out=out)

    def backward(g):
        masked = K.relu_backward(g, out) if K is not None and out.dtype.kind == "f" else g * (out > 0)
        return unbroadcast(masked, a.shape), unbroadcast(masked, b.shape)
    return Tensor.from_op(out, (a, b), backward, "add_relu")


def batch_norm_add_relu(x, residual, running_mean, running_var, weight=None, bias=None,
                        training=False, momentum=0.1, eps=1e-5):
    """relu(batch_norm(x, ...) + residual) as one op: a basic block's second batch norm, the
    shortcut's addition and the ReLU.  residual has x's shape; the other arguments are
    batch_norm's.  Backward: m = g·[y > 0] is the residual's gradient (add's "+1") and
    batch_norm's upstream gradient.  (N, C, ...) -> (N, C, ...), in x's memory layout."""
    op = "batch_norm_add_relu"
    params, stats, gamma, beta, cl, x3, count = prepare_batch_norm(
        op, x, running_mean, running_var, weight, bias, training)
    check_tensor(op, "residual", residual)
    if residual.shape != x.shape:
        raise ValueError(f"{op}: residual has shape {shape_str(residual.shape)}, expected the "
                         f"input's {shape_str(x.shape)}")
    check_same_device(op, x, residual)
    check_same_dtype(op, x, residual)
    xp, K = x.xp, backend.kernels_for(x.xp)
    cpu = _cpu_kernels(xp)
    r3 = channel_view(_like(xp, residual.data, x.data), cl)    # in x's layout (a copy only if not)
    parents = (x, residual, *params)

    def finish(y3):                        # y3 = BN(x) as a fresh array: add and rectify in place
        y3 += r3
        return xp.maximum(y3, 0, out=y3)

    if training:
        fused = cpu.batch_norm_add_relu_forward(x3, r3, gamma, beta, eps) if cpu is not None else None
        if fused is None:
            t3, mean, var, invstd = K.batch_norm_forward(x3, gamma, beta, eps)
            fused = finish(t3), mean, var, invstd
        y3, mean, var, invstd = fused
        if stats:
            K.batch_norm_update_running(running_mean.data, running_var.data, mean, var, count, momentum)
    else:
        mean, invstd, scale, shift = eval_scale_shift(running_mean, running_var, gamma, beta, x.dtype, eps)
        y3 = eval_affine(x3, scale, shift, relu=True, residual=r3)   # one pass: affine, add, ReLU
    y = from_channel_view(y3, x.shape, cl)

    def backward(g):
        masked = cpu.relu_backward(g, y) if cpu is not None else g * (y > 0)
        m3 = channel_view(masked, cl)
        if training:
            dx, dgamma, dbeta = K.batch_norm_backward(m3, x3, mean, invstd, gamma)
        else:
            dx, dgamma, dbeta = batch_norm_eval_backward(m3, x3, mean, invstd, gamma)
        grads = _select(x, weight, bias, from_channel_view(dx, x.shape, cl), dgamma, dbeta)
        return grads[:1] + (masked,) + grads[1:]
    return Tensor.from_op(y, parents, backward, op)


def conv2d_batch_norm_relu_eval(x, conv_weight, running_mean, running_var, weight=None, bias=None,
                                eps=1e-5, residual=None, stride=1, padding=0, dilation=1, groups=1):
    """relu(batch_norm(conv2d(x, conv_weight, stride, padding, dilation, groups), running
    statistics) [+ residual]) for a forward pass that builds no graph: under
    minires.no_grad(), or with no operand that requires a gradient (with one it raises --
    call conv2d, then batch_norm_relu or batch_norm_add_relu, to get gradients).

    Evaluation-mode batch norm is y·scale + shift per channel (scale = γ/√(var+ε), shift =
    β - mean·scale).  Where conv2d runs as Winograd F(2x2) on the CPU (ops/winograd.py),
    the output transform applies it, the residual and the ReLU as it writes each tile
    (kernels/cpu/winograd.py's winograd_output): one pass over the output instead of two,
    one fork-join instead of two.  Elsewhere (im2col layers, the GPU) it runs conv2d, then
    batch_norm_relu or batch_norm_add_relu.  The arguments and their checks are conv2d's
    and batch_norm's; residual has the convolution's output shape.  Float32 results may
    differ from the unfused ops' by a rounding or two (LLVM may contract the affine map
    into a fused multiply-add differently); tests/test_fused.py holds them to 2e-6 of the
    largest value.  ResNet-20/56 logits came out bit-identical (Zen 5, 2026-12-04)."""
    op = "conv2d_batch_norm_relu_eval"
    stride, padding, dilation, (ho, wo) = check_conv2d(op, x, conv_weight, None, stride, padding,
                                                       dilation, groups)
    if autograd.is_grad_enabled() and any(t is not None and t.requires_grad
                                          for t in (x, conv_weight, weight, bias, residual)):
        raise RuntimeError(f"{op}: builds no graph, so it runs under minires.no_grad() (or on "
                           f"operands that need no gradient); for gradients call conv2d, then "
                           f"batch_norm_relu or batch_norm_add_relu")
    n, c_out = x.shape[0], conv_weight.shape[0]
    out_shape = (n, c_out, ho, wo)
    if residual is not None:
        check_tensor(op, "residual", residual)
        if residual.shape != out_shape:
            raise ValueError(f"{op}: residual has shape {shape_str(residual.shape)}, expected the "
                             f"convolution's output shape {shape_str(out_shape)}")
        check_same_device(op, x, residual)
        check_same_dtype(op, x, residual)
    # batch norm's checks want its input: a stand-in of the output's shape and dtype (no memory)
    xp = x.xp
    check_batch_norm(op, Tensor(xp.broadcast_to(xp.zeros((), x.dtype), out_shape)),
                     running_mean, running_var, weight, bias, False)
    m = winograd.tile_size(x, conv_weight, stride, padding, dilation, groups)    # None off the CPU
    if m is None or not backend.kernels_for(np).winograd_f2_applies((n, ho, wo, c_out), m):
        y = conv2d(x, conv_weight, None, stride, padding, dilation, groups)
        if residual is None:
            return batch_norm_relu(y, running_mean, running_var, weight, bias, False, 0.0, eps)
        return batch_norm_add_relu(y, residual, running_mean, running_var, weight, bias, False, 0.0, eps)
    gamma = weight.data if weight is not None else np.ones(c_out, dtype=x.dtype)
    beta = bias.data if bias is not None else np.zeros(c_out, dtype=x.dtype)
    _, _, scale, shift = eval_scale_shift(running_mean, running_var, gamma, beta, x.dtype, eps)
    out = winograd.conv2d_batch_norm_eval(x.data, conv_weight.data, m, scale, shift,
                                          None if residual is None else residual.data, relu=True)
    return Tensor(out)


def _like(xp, a, like):
    """a's values in like's memory layout (a itself when it already has it)."""
    if a.strides == like.strides:
        return a
    out = xp.empty_like(like)
    out[...] = a
    return out
