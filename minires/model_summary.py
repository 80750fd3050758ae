"""``summary(model, input_shape)``: a layer-by-layer table of output shapes,
parameters and multiply-adds (MACs), with totals.

How the numbers are found.  One forward of a batch of ONE all-zeros input runs
under no_grad in eval mode (each module's mode is restored afterwards, so BN
running statistics are untouched), with a forward hook on every leaf module
(a module without children).  Each hook records one row per call: a module
called twice (torchvision's shared ``relu``) gives two rows, its parameters
counted on the first.  The shapes are therefore the real ones, produced by the
model's own forward code -- nothing is re-derived from a description of it.

MACs are counted as the ResNet paper counts FLOPs: the multiply-adds of
convolutions and linear layers, per sample, from the recorded output shape
(BN, ReLU, pooling, additions and biases are 0):

    Conv2d  C_out*H_out*W_out * (C_in/groups)*kh*kw        Linear  out_features*in_features

Only shapes are needed, so by default (``run_convs=False``) each Conv2d's
arithmetic is replaced, for this one pass, by a zeros tensor of the shape the
conv would produce (the op's own output-size formula; input channels checked
like the op does).  Every other layer runs for real on the zeros.  That makes
ResNet-152 at 224x224 take a fraction of a second instead of seconds of im2col
and matmul; ``run_convs=True`` runs the real convolutions (the tests check
both give the same table).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import backend, nn
from .autograd import no_grad
from .ops._util import pair
from .ops.conv import conv_output_size
from .tensor import DEFAULT_DTYPE, Tensor


@dataclass(frozen=True)
class LayerRow:
    name: str             # dotted module name, 'layer1.0.conv1'
    type: str             # class name, 'Conv2d'
    output_shape: tuple   # with the batch dim of 1
    params: int           # the module's own parameters (0 on a repeated call)
    macs: int             # multiply-adds per sample


class Summary:
    """The result of ``summary``; ``str()`` (and repr) is the table."""

    def __init__(self, rows, input_shape, output_shape, total_params, trainable_params):
        self.rows = list(rows)
        self.input_shape, self.output_shape = tuple(input_shape), output_shape
        self.total_params, self.trainable_params = total_params, trainable_params
        self.total_macs = sum(r.macs for r in self.rows)

    def __str__(self):
        header = ("Layer", "Type", "Output shape", "Params", "MACs")
        body = [(r.name, r.type, str(tuple(r.output_shape)), f"{r.params:,}", f"{r.macs:,}")
                for r in self.rows]
        widths = [max(len(row[i]) for row in [header] + body) for i in range(5)]
        fmt = lambda row: "  ".join(c.ljust(w) if i < 3 else c.rjust(w)     # noqa: E731
                                    for i, (c, w) in enumerate(zip(row, widths)))
        rule = "-" * len(fmt(header))
        in_rows = sum(r.params for r in self.rows)
        lines = [rule, fmt(header), rule, *map(fmt, body), rule,
                 f"Input shape: {self.input_shape} (batch of 1)   Output shape: {self.output_shape}",
                 f"Total params: {self.total_params:,}",
                 f"Trainable params: {self.trainable_params:,}",
                 f"Non-trainable params: {self.total_params - self.trainable_params:,}"]
        if in_rows != self.total_params:      # parameters owned by non-leaf modules
            lines.append(f"({self.total_params - in_rows:,} params belong to non-leaf modules "
                         f"and are not in the rows)")
        lines += [f"Total MACs: {self.total_macs:,} ({_human(self.total_macs)}) per sample", rule]
        return "\n".join(lines)

    __repr__ = __str__


def _human(n):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def layer_macs(module, output):
    """Multiply-adds per sample of one call of ``module`` that produced ``output``."""
    if not isinstance(output, Tensor):
        return 0
    per_sample = math.prod(output.shape[1:])
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_sample * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_sample * module.in_features
    return 0


def _conv_shape_only(conv):
    """A stand-in forward for ``conv``: zeros of the output shape, no arithmetic."""
    def forward(x):                                          # (N, C_in, H, W)
        if x.ndim != 4 or x.shape[1] != conv.in_channels:
            raise ValueError(f"conv2d: expected input (N, {conv.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        (kh, kw), geometry = conv.kernel_size, [pair("conv2d", k, getattr(conv, k))
                                                for k in ("stride", "padding", "dilation")]
        (sh, sw), (ph, pw), (dh, dw) = geometry
        ho = conv_output_size(x.shape[2], kh, sh, ph, dh)
        wo = conv_output_size(x.shape[3], kw, sw, pw, dw)
        if ho < 1 or wo < 1:
            raise ValueError(f"conv2d: input {tuple(x.shape)} is smaller than the kernel "
                             f"{kh}x{kw} with padding {(ph, pw)}: the output would be {ho}x{wo}")
        return Tensor(x.xp.zeros((x.shape[0], conv.out_channels, ho, wo), dtype=x.dtype))
    return forward


def summary(model, input_shape, device="cpu", run_convs=False):
    """Run ``model`` once on zeros of shape (1, *input_shape) and tabulate its leaf layers.

    input_shape: one sample's shape, without the batch dim, e.g. (3, 32, 32).
    run_convs: False counts from shapes only (see the module docstring); True runs the convs.
    """
    input_shape = tuple(int(n) for n in input_shape)
    first = next(iter(model.parameters()), None)
    dtype = first.dtype if first is not None else DEFAULT_DTYPE
    x = Tensor(backend.to_device(np.zeros((1, *input_shape), dtype=dtype), device))

    names = {id(m): name for name, m in model.named_modules()}
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    rows, seen = [], set()

    def record(module, inputs, output):
        own = 0 if id(module) in seen else sum(p.size for p in module._parameters.values()
                                               if p is not None)
        seen.add(id(module))
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        rows.append(LayerRow(names[id(module)] or "(model)", type(module).__name__, shape, own,
                             layer_macs(module, output)))

    modes = [(m, m.training) for m in model.modules()]
    handles, stubbed = [], []
    try:
        model.eval()
        handles = [m.register_forward_hook(record) for m in leaves]
        if not run_convs:
            for m in leaves:
                if isinstance(m, nn.Conv2d):
                    m.__dict__["forward"] = _conv_shape_only(m)   # shadows the class method
                    stubbed.append(m)
        with no_grad():
            out = model(x)
    finally:
        for m in stubbed:
            del m.__dict__["forward"]
        for h in handles:
            h.remove()
        for m, mode in modes:
            object.__setattr__(m, "training", mode)

    params = list(model.parameters())
    return Summary(rows, input_shape,
                   tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__,
                   sum(p.size for p in params), sum(p.size for p in params if p.requires_grad))


def count_macs(model, input_shape, device="cpu"):
    """Multiply-adds per sample of conv and linear layers (shapes only; see above)."""
    return summary(model, input_shape, device).total_macs


__all__ = ["summary", "count_macs", "Summary", "LayerRow", "layer_macs"]
