"""``minires gradcheck``: every differentiable op and layer, checked against central differences.

Each check builds small float64 inputs from one seeded generator and runs
minires.gradcheck on them (a random upstream gradient, every element or a
random subset of it, plus random directions).  The registry, CHECKS, holds:

    ops       conv2d (stride, padding, groups, dilation), batch_norm (train and
              eval, NCHW and channels-last memory), max/avg/adaptive pooling,
              linear, matmul, log_softmax, cross_entropy, dropout, the
              elementwise ops, reductions and the shape ops
    layers    basic blocks (identity, option-A and option-B shortcuts), a
              full pre-activation unit, a whole (tiny-input) ResNet-8 with its loss
    "+1"      the identity shortcut's share of x's gradient, measured apart from
              the residual branch's share (shortcut_plus_one)

A name on the command line selects that check and its variants (``conv2d``
also runs ``conv2d-stride2`` ...).  Exit status 1 when any check fails.
"""
from __future__ import annotations

import sys
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import backend, ops
from .gradcheck import gradcheck
from .nn import functional as F
from .tensor import Tensor

DEFAULT_SEED = 0


@dataclass(frozen=True)
class Check:
    name: str
    build: Callable          # (rng, device) -> (fn, {input name: tensor}) for gradcheck
    max_elements: int | None = None   # per input; None: every element
    n_directions: int = 3             # random directions per input, through all its elements
    doc: str = ""


@dataclass(frozen=True)
class Row:
    """One line of the report."""
    name: str
    shapes: str
    max_rel_error: float
    tolerance: float
    passed: bool
    detail: str = ""         # gradcheck's line saying where, for a failure


CHECKS: dict[str, Check] = {}


def check(name, max_elements=None, n_directions=3):
    """Register ``build`` as the check ``name`` (its docstring is the --list line)."""
    def register(build):
        CHECKS[name] = Check(name, build, max_elements, n_directions, (build.__doc__ or "").strip())
        return build
    return register


def _randn(rng, device, *shape, positive=False, requires_grad=True):
    data = rng.standard_normal(shape)
    if positive:
        data = np.abs(data) + 0.5        # away from log/sqrt/div's singularities
    return _tensor(data, device, requires_grad)


def _tensor(data, device, requires_grad=True):
    return Tensor(backend.to_device(np.asarray(data, dtype=np.float64), device), requires_grad)


# ---------------------------------------------------------------- conv2d
@check("conv2d")
def _conv2d(rng, dev):
    """3x3, padding 1, with bias"""
    return (lambda x, w, b: F.conv2d(x, w, b, padding=1),
            dict(x=_randn(rng, dev, 2, 3, 5, 5), weight=_randn(rng, dev, 4, 3, 3, 3), bias=_randn(rng, dev, 4)))


@check("conv2d-stride2")
def _conv2d_stride(rng, dev):
    """3x3, stride 2, padding 1 (a downsampling conv)"""
    return (lambda x, w: F.conv2d(x, w, stride=2, padding=1),
            dict(x=_randn(rng, dev, 2, 3, 6, 6), weight=_randn(rng, dev, 4, 3, 3, 3)))


@check("conv2d-1x1")
def _conv2d_1x1(rng, dev):
    """1x1, stride 2 (the option-B projection shortcut)"""
    return (lambda x, w: F.conv2d(x, w, stride=2),
            dict(x=_randn(rng, dev, 2, 3, 5, 5), weight=_randn(rng, dev, 6, 3, 1, 1)))


@check("conv2d-groups2")
def _conv2d_groups(rng, dev):
    """groups 2, non-square kernel and stride"""
    return (lambda x, w, b: F.conv2d(x, w, b, stride=(1, 2), padding=(1, 0), groups=2),
            dict(x=_randn(rng, dev, 2, 4, 5, 6), weight=_randn(rng, dev, 6, 2, 3, 2), bias=_randn(rng, dev, 6)))


@check("conv2d-dilation2")
def _conv2d_dilation(rng, dev):
    """3x3, dilation 2, padding 2"""
    return (lambda x, w: F.conv2d(x, w, padding=2, dilation=2),
            dict(x=_randn(rng, dev, 2, 2, 5, 5), weight=_randn(rng, dev, 3, 2, 3, 3)))


# ---------------------------------------------------------------- batch_norm
def _bn_params(rng, dev, c):
    return dict(weight=_tensor(rng.uniform(0.5, 1.5, c), dev), bias=_randn(rng, dev, c))


@check("batch_norm-train")
def _bn_train(rng, dev):
    """training mode: batch statistics, affine"""
    mean, var = _tensor(np.zeros(3), dev, False), _tensor(np.ones(3), dev, False)
    return (lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=True),
            dict(x=_randn(rng, dev, 3, 3, 3, 3), **_bn_params(rng, dev, 3)))


@check("batch_norm-train-channels-last")
def _bn_train_cl(rng, dev):
    """training mode on channels-last memory (a conv2d output's layout)"""
    x = _randn(rng, dev, 3, 3, 3, 3)
    x.data = x.xp.ascontiguousarray(x.data.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
            dict(x=x, **_bn_params(rng, dev, 3)))


@check("batch_norm-train-1d")
def _bn_train_1d(rng, dev):
    """training mode, (N, C) input (BatchNorm1d)"""
    return (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
            dict(x=_randn(rng, dev, 5, 4), **_bn_params(rng, dev, 4)))


@check("batch_norm-eval")
def _bn_eval(rng, dev):
    """evaluation mode: running statistics"""
    mean = _tensor(rng.standard_normal(3), dev, False)
    var = _tensor(rng.uniform(0.5, 2.0, 3), dev, False)
    return (lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=False),
            dict(x=_randn(rng, dev, 3, 3, 3, 3), **_bn_params(rng, dev, 3)))


# ---------------------------------------------------------------- fused ops (ops/fused.py)
def _channels_last(x):
    """x with the same values in channels-last memory (a conv2d output's layout)."""
    x.data = x.xp.ascontiguousarray(x.data.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return x


@check("batch_norm_relu-train")
def _bn_relu_train(rng, dev):
    """relu(batch_norm(x)) as one op, training mode, channels-last memory"""
    mean, var = _tensor(np.zeros(3), dev, False), _tensor(np.ones(3), dev, False)
    return (lambda x, w, b: F.batch_norm_relu(x, mean, var, w, b, training=True),
            dict(x=_channels_last(_randn(rng, dev, 3, 3, 3, 3)), **_bn_params(rng, dev, 3)))


@check("batch_norm_relu-train-nchw")
def _bn_relu_train_nchw(rng, dev):
    """the same on NCHW memory (a per-channel kernel of its own)"""
    return (lambda x, w, b: F.batch_norm_relu(x, None, None, w, b, training=True),
            dict(x=_randn(rng, dev, 3, 3, 3, 3), **_bn_params(rng, dev, 3)))


@check("batch_norm_relu-eval")
def _bn_relu_eval(rng, dev):
    """evaluation mode: running statistics, then the ReLU"""
    mean = _tensor(rng.standard_normal(3), dev, False)
    var = _tensor(rng.uniform(0.5, 2.0, 3), dev, False)
    return (lambda x, w, b: F.batch_norm_relu(x, mean, var, w, b, training=False),
            dict(x=_randn(rng, dev, 3, 3, 3, 3), **_bn_params(rng, dev, 3)))


@check("batch_norm_add_relu-train")
def _bn_add_relu_train(rng, dev):
    """relu(batch_norm(x) + r) as one op (a block's end), training, channels-last"""
    return (lambda x, r, w, b: F.batch_norm_add_relu(x, r, None, None, w, b, training=True),
            dict(x=_channels_last(_randn(rng, dev, 3, 3, 3, 3)), residual=_channels_last(_randn(rng, dev, 3, 3, 3, 3)),
                 **_bn_params(rng, dev, 3)))


@check("batch_norm_add_relu-eval")
def _bn_add_relu_eval(rng, dev):
    """evaluation mode, NCHW residual (the option-A shortcut's layout)"""
    mean = _tensor(rng.standard_normal(3), dev, False)
    var = _tensor(rng.uniform(0.5, 2.0, 3), dev, False)
    return (lambda x, r, w, b: F.batch_norm_add_relu(x, r, mean, var, w, b, training=False),
            dict(x=_channels_last(_randn(rng, dev, 3, 3, 3, 3)), residual=_randn(rng, dev, 3, 3, 3, 3),
                 **_bn_params(rng, dev, 3)))


@check("add_relu")
def _add_relu(rng, dev):
    """relu(a + b) as one op, both channels-last (the residual addition + ReLU)"""
    return F.add_relu, dict(a=_channels_last(_randn(rng, dev, 2, 3, 4, 4)),
                            b=_channels_last(_randn(rng, dev, 2, 3, 4, 4)))


@check("add_relu-broadcast")
def _add_relu_broadcast(rng, dev):
    """(3, 4) and (4,), broadcast: the array-code path"""
    return F.add_relu, dict(a=_randn(rng, dev, 3, 4), b=_randn(rng, dev, 4))


# ---------------------------------------------------------------- pooling
@check("max_pool2d")
def _max_pool(rng, dev):
    """2x2, stride 2"""
    return lambda x: F.max_pool2d(x, 2), dict(x=_randn(rng, dev, 2, 3, 6, 6))


@check("max_pool2d-overlap")
def _max_pool_overlap(rng, dev):
    """3x3, stride 2, padding 1 (ImageNet ResNet's stem)"""
    return lambda x: F.max_pool2d(x, 3, 2, 1), dict(x=_randn(rng, dev, 2, 2, 7, 7))


@check("avg_pool2d")
def _avg_pool(rng, dev):
    """2x2, stride 2"""
    return lambda x: F.avg_pool2d(x, 2), dict(x=_randn(rng, dev, 2, 3, 6, 6))


@check("avg_pool2d-padded")
def _avg_pool_padded(rng, dev):
    """3x3, stride 2, padding 1, padding excluded from the divisor"""
    return (lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
            dict(x=_randn(rng, dev, 2, 2, 7, 7)))


@check("adaptive_avg_pool2d")
def _adaptive_pool(rng, dev):
    """5x7 -> 3x2: uneven, overlapping bins"""
    return lambda x: F.adaptive_avg_pool2d(x, (3, 2)), dict(x=_randn(rng, dev, 2, 2, 5, 7))


@check("global_avg_pool2d")
def _global_pool(rng, dev):
    """(N, C, H, W) -> (N, C, 1, 1)"""
    return lambda x: F.global_avg_pool2d(x), dict(x=_randn(rng, dev, 2, 3, 4, 4))


# ---------------------------------------------------------------- linear, losses, dropout
@check("linear")
def _linear(rng, dev):
    """x @ W^T + b"""
    return F.linear, dict(x=_randn(rng, dev, 4, 5), weight=_randn(rng, dev, 3, 5), bias=_randn(rng, dev, 3))


@check("matmul")
def _matmul(rng, dev):
    """batched, broadcasting"""
    return ops.matmul, dict(a=_randn(rng, dev, 2, 3, 4), b=_randn(rng, dev, 4, 2))


@check("log_softmax")
def _log_softmax(rng, dev):
    """over the last axis"""
    return F.log_softmax, dict(x=_randn(rng, dev, 4, 5))


@check("cross_entropy")
def _cross_entropy(rng, dev):
    """mean over the batch"""
    target = backend.to_device(rng.integers(0, 5, 4), dev)
    return lambda z: F.cross_entropy(z, target), dict(logits=_randn(rng, dev, 4, 5))


@check("cross_entropy-sum")
def _cross_entropy_sum(rng, dev):
    """reduction='sum'"""
    target = backend.to_device(rng.integers(0, 5, 4), dev)
    return lambda z: F.cross_entropy(z, target, reduction="sum"), dict(logits=_randn(rng, dev, 4, 5))


@check("cross_entropy-none")
def _cross_entropy_none(rng, dev):
    """reduction='none' (one loss per sample)"""
    target = backend.to_device(rng.integers(0, 5, 4), dev)
    return lambda z: F.cross_entropy(z, target, reduction="none"), dict(logits=_randn(rng, dev, 4, 5))


@check("dropout")
def _dropout(rng, dev):
    """p 0.3, the same mask in every evaluation (reseeded)"""
    from .random import manual_seed

    def fn(x):
        manual_seed(7)
        return F.dropout(x, 0.3, training=True)
    return fn, dict(x=_randn(rng, dev, 4, 6))


# ---------------------------------------------------------------- elementwise and reductions
def _binary(op, b_shape, positive_b=False):
    def build(rng, dev):
        return op, dict(a=_randn(rng, dev, 3, 4), b=_randn(rng, dev, *b_shape, positive=positive_b))
    build.__doc__ = f"(3, 4) and {b_shape}" + (", broadcast" if b_shape != (3, 4) else "")
    return build


check("add")(_binary(ops.add, (4,)))
check("sub")(_binary(ops.sub, (3, 1)))
check("mul")(_binary(ops.mul, (1, 4)))
check("div")(_binary(ops.div, (3, 4), positive_b=True))


def _unary(name, op, positive=False, doc=""):
    def build(rng, dev):
        return op, dict(x=_randn(rng, dev, 3, 4, positive=positive))
    build.__doc__ = doc
    check(name)(build)


_unary("relu", F.relu, doc="max(x, 0)")
_unary("neg", ops.neg, doc="-x")
_unary("exp", ops.exp, doc="e ** x")
_unary("log", ops.log, positive=True, doc="on positive inputs")
_unary("sqrt", ops.sqrt, positive=True, doc="on positive inputs")
_unary("pow", lambda x: ops.pow(x, 3.0), doc="x ** 3")


@check("pow-tensor")
def _pow_tensor(rng, dev):
    """a ** b, both differentiated (a positive)"""
    return ops.pow, dict(a=_randn(rng, dev, 3, 4, positive=True), b=_randn(rng, dev, 4))


_unary("softmax", F.softmax, doc="over the last axis")
_unary("sum", lambda x: ops.sum(x, axis=1), doc="over axis 1")
_unary("mean", lambda x: ops.mean(x, axis=(0, 1), keepdims=True), doc="over every axis, keepdims")
_unary("max", lambda x: ops.max(x, axis=0), doc="over axis 0")


# ---------------------------------------------------------------- shape ops
_unary("reshape", lambda x: ops.reshape(x, (2, 6)), doc="(3, 4) -> (2, 6)")
_unary("transpose", lambda x: ops.transpose(x, 0, 1), doc="swap the two axes")


@check("flatten")
def _flatten(rng, dev):
    """start_dim 1 (before a classifier)"""
    return lambda x: F.flatten(x, 1), dict(x=_randn(rng, dev, 2, 3, 2, 2))


@check("permute")
def _permute(rng, dev):
    """NCHW -> NHWC"""
    return lambda x: ops.permute(x, (0, 2, 3, 1)), dict(x=_randn(rng, dev, 2, 3, 2, 2))


@check("getitem")
def _getitem(rng, dev):
    """x[:, :, ::2, ::2] (the option-A shortcut's subsampling)"""
    return lambda x: x[:, :, ::2, ::2], dict(x=_randn(rng, dev, 2, 3, 4, 4))


@check("getitem-repeated")
def _getitem_repeated(rng, dev):
    """an index array that picks rows twice (the gradients must add)"""
    index = backend.to_device(np.array([2, 0, 2, 1]), dev)
    return lambda x: ops.getitem(x, index), dict(x=_randn(rng, dev, 3, 4))


@check("pad")
def _pad(rng, dev):
    """zero channels on both sides (the option-A shortcut's padding)"""
    return lambda x: F.pad(x, (0, 0, 0, 0, 2, 2)), dict(x=_randn(rng, dev, 2, 3, 2, 2))


@check("cat")
def _cat(rng, dev):
    """along axis 1"""
    return lambda a, b: ops.cat([a, b], axis=1), dict(a=_randn(rng, dev, 2, 3), b=_randn(rng, dev, 2, 2))


@check("stack")
def _stack(rng, dev):
    """along a new axis 0"""
    return lambda a, b: ops.stack([a, b]), dict(a=_randn(rng, dev, 2, 3), b=_randn(rng, dev, 2, 3))


# ---------------------------------------------------------------- layers and a whole network
def _randomize_batch_norms(module, rng):
    """Non-trivial affine parameters (not 1 and 0), so that their gradients are tested."""
    from .nn.layers import _BatchNorm
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.weight.data[...] = backend.to_device(rng.uniform(0.5, 1.5, m.num_features), m.weight.device)
            m.bias.data[...] = backend.to_device(rng.uniform(-0.5, 0.5, m.num_features), m.bias.device)


def _module_inputs(module, x, rng):
    """x plus every parameter of ``module``, by name."""
    _randomize_batch_norms(module, rng)
    return dict(x=x, **dict(module.named_parameters()))


# layers and the network: a random subset of each tensor's elements and one direction
# through all of them (every element of every parameter would take minutes)
LAYER = dict(max_elements=12, n_directions=1)


def _block(rng, dev, in_planes, planes, stride, shortcut="A", variant="original"):
    from .models.cifar import BasicBlock
    from .random import manual_seed
    manual_seed(int(rng.integers(2 ** 31)))
    block = BasicBlock(in_planes, planes, stride, shortcut, variant).double().to(dev)
    inputs = _module_inputs(block, _randn(rng, dev, 2, in_planes, 4, 4), rng)
    return (lambda x, *params: block(x)), inputs


@check("basic_block", **LAYER)
def _basic_block(rng, dev):
    """relu(x + BN(conv(relu(BN(conv(x)))))), identity shortcut"""
    return _block(rng, dev, 3, 3, 1)


@check("basic_block-option-a", **LAYER)
def _basic_block_a(rng, dev):
    """stride 2, 2 -> 4 channels, zero-padding shortcut (option A)"""
    return _block(rng, dev, 2, 4, 2, "A")


@check("basic_block-option-b", **LAYER)
def _basic_block_b(rng, dev):
    """stride 2, 2 -> 4 channels, 1x1-conv projection shortcut (option B)"""
    return _block(rng, dev, 2, 4, 2, "B")


@check("preact_unit", **LAYER)
def _preact_unit(rng, dev):
    """x + conv(relu(BN(conv(relu(BN(x)))))) (He 2016, full pre-activation)"""
    return _block(rng, dev, 3, 3, 1, variant="full_preact")


@check("resnet", **LAYER)
def _resnet(rng, dev):
    """ResNet-8 on a 2x3x8x8 batch, through its cross-entropy loss"""
    from .models.cifar import resnet_cifar
    from .random import manual_seed
    manual_seed(int(rng.integers(2 ** 31)))
    net = resnet_cifar(8).double().to(dev)
    target = backend.to_device(rng.integers(0, 10, 2), dev)
    inputs = _module_inputs(net, _randn(rng, dev, 2, 3, 8, 8), rng)
    # x and parameters spread through the net: the stem, a strided conv, the last stage's
    # batch norm, the classifier
    picked = {k: v for k, v in inputs.items()
              if k in ("x", "conv1.weight", "layer2.0.conv1.weight", "layer3.0.bn2.bias", "linear.weight")}
    return (lambda x, *params: F.cross_entropy(net(x), target)), picked


# ---------------------------------------------------------------- the shortcut's "+1"
PLUS_ONE = "shortcut_plus_one"
PLUS_ONE_RTOL = 1e-12     # x.grad - branch's share == g exactly, up to one rounding of the sum


def shortcut_plus_one(rng, device):
    """(max relative error, shapes) of the identity shortcut's gradient, measured.

    For y = x + F(x) (a full pre-activation unit) and upstream g, backward gives
    x.grad = g + (dF/dx)^T g.  The second term is measured by a second run with
    the shortcut removed; what is left, x.grad minus it, is the shortcut's share
    and must be g itself: the "+1" of dy/dx = 1 + dF/dx.
    """
    from .models.cifar import BasicBlock
    from .random import manual_seed
    manual_seed(int(rng.integers(2 ** 31)))
    block = BasicBlock(3, 3, 1, "A", "full_preact").double().to(device)
    _randomize_batch_norms(block, rng)
    x0 = rng.standard_normal((2, 3, 4, 4))
    g = rng.standard_normal(x0.shape)

    def x_grad(shortcut):
        block.shortcut = shortcut
        x = _tensor(x0, device)
        block(x).backward(backend.to_device(g, device))
        return backend.to_numpy(x.grad.data)
    identity = block.shortcut
    total, branch = x_grad(identity), x_grad(None)
    block.shortcut = identity
    # relative to the terms' size: the sum and the difference round once each
    rel = np.abs((total - branch) - g) / np.maximum(np.abs(total) + np.abs(branch), np.finfo(float).tiny)
    return float(rel.max()), f"x {_dims(x0.shape)}, g {_dims(g.shape)}"


# ---------------------------------------------------------------- running and reporting
def _dims(shape):
    return "x".join(str(n) for n in shape) if shape else "scalar"


def names():
    """Every check's name, in run order (the "+1" last)."""
    return list(CHECKS) + [PLUS_ONE]


def select(wanted):
    """The check names that ``wanted`` selects (exact names and their variants), in run order."""
    if not wanted:
        return names()
    unknown = [w for w in wanted if not any(n == w or n.startswith(w + "-") for n in names())]
    if unknown:
        raise ValueError(f"unknown check{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; the checks are: "
                         + ", ".join(names()))
    return [n for n in names() if any(n == w or n.startswith(w + "-") for w in wanted)]


def run_check(name, seed=DEFAULT_SEED, device=backend.CPU):
    """One check as a Row (a FAIL row if it raised).  Each check draws from a generator
    of its own (seeded by --seed and its name), so selecting a few checks does not
    change their inputs."""
    try:
        return _run_check(name, seed, device)
    except Exception as e:       # a broken op fails its row; the other checks still run
        return Row(name, "", float("nan"), float("nan"), False, f"raised {type(e).__name__}: {e}")


def _run_check(name, seed, device):
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    if name == PLUS_ONE:
        err, shapes = shortcut_plus_one(rng, device)
        return Row(name, shapes, err, PLUS_ONE_RTOL, err <= PLUS_ONE_RTOL)
    spec = CHECKS[name]
    fn, inputs = spec.build(rng, device)
    result = gradcheck(fn, tuple(inputs.values()), seed=seed, max_elements=spec.max_elements,
                       n_directions=spec.n_directions, raise_exception=False)
    shapes = ", ".join(f"{k} {_dims(v.shape)}" for k, v in inputs.items())
    if len(shapes) > 44:                 # a module's: x and its parameters
        shapes = f"x {_dims(inputs['x'].shape)} + {len(inputs) - 1} parameters"
    detail = "; ".join(c.failure.strip() for c in result.inputs if c.failure)
    return Row(name, shapes, result.max_rel_error, result.rtol, bool(result), detail)


def run(selected, seed=DEFAULT_SEED, device=backend.CPU, out=None):
    """Run the checks named in ``selected``, printing one row each (to stdout); the rows."""
    out = out or sys.stdout
    width = max(len(n) for n in selected)
    print(f"{'check':<{width}}  {'inputs':<44}  {'max rel err':>11}  {'tolerance':>9}  result", file=out)
    rows = []
    for name in selected:
        row = run_check(name, seed, device)
        rows.append(row)
        print(f"{row.name:<{width}}  {row.shapes:<44}  {row.max_rel_error:>11.2e}  "
              f"{row.tolerance:>9.0e}  {'pass' if row.passed else 'FAIL'}", file=out, flush=True)
        if row.detail:
            print(f"{'':<{width}}  {row.detail}", file=out)
    return rows


def resolve_device(device):
    """'cpu', 'gpu'/'cuda', or 'auto' (the GPU when CuPy sees one) as a backend device."""
    if device == "auto":
        return backend.CUDA if backend.cuda_is_available() else backend.CPU
    device = backend.normalize_device(device)
    if device == backend.CUDA and not backend.cuda_is_available():
        raise RuntimeError("--device gpu: no CUDA GPU that CuPy can use here; try --device cpu")
    return device


def add_parser(sub):
    """Register ``minires gradcheck`` on the CLI's sub-parsers."""
    p = sub.add_parser(
        "gradcheck", help="check every op's and layer's gradient against central differences",
        description="Check, in float64 with random upstream gradients, the backward of every "
                    "differentiable op and layer (and the identity shortcut's +1) against "
                    "central differences. A row's relative error is |analytic - numerical| / "
                    "(|numerical| + atol/rtol), its worst over the elements and random directions "
                    "compared; it passes at most at the tolerance (rtol). Exits 1 if any check fails.")
    p.add_argument("checks", nargs="*", metavar="CHECK",
                   help="checks to run: a name runs that check and its variants "
                        "(conv2d also runs conv2d-stride2 ...); all when none is given")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the inputs and upstream gradients (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["cpu", "gpu", "cuda", "auto"],
                   help="where to run (default: %(default)s, the GPU when CuPy sees one)")
    p.set_defaults(func=cmd_gradcheck)
    return p


def cmd_gradcheck(args):
    selected = select(args.checks)
    if args.list:
        width = max(len(n) for n in selected)
        for name in selected:
            doc = CHECKS[name].doc if name in CHECKS else "the identity shortcut's gradient, measured"
            print(f"{name:<{width}}  {doc}")
        return
    device = resolve_device(args.device)
    start = time.perf_counter()
    rows = run(selected, args.seed, device)
    failed = [r.name for r in rows if not r.passed]
    print(f"{len(rows)} checks, {len(rows) - len(failed)} passed, {len(failed)} failed "
          f"(seed {args.seed}, {device}, {time.perf_counter() - start:.1f} s)"
          + (": " + ", ".join(failed) if failed else ""))
    if failed:
        raise SystemExit(1)
