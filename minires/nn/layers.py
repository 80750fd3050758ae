"""The layers a ResNet is made of, each a thin Module over an op in nn.functional."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..tensor import DEFAULT_DTYPE, Tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


def _empty(*shape):
    return np.zeros(shape, dtype=DEFAULT_DTYPE)


class Conv2d(Module):
    """2-d convolution.  Weight (C_out, C_in/groups, kh, kw), Kaiming-normal (fan_in, ReLU)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (kh, kw), stride, padding
        self.dilation, self.groups = dilation, groups
        self.weight = Parameter(_empty(out_channels, in_channels // groups, kh, kw))
        self.bias = Parameter(_empty(out_channels)) if bias else None
        init.kaiming_normal_(self.weight)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class _BatchNorm(Module):
    _rank = None

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, DEFAULT_DTYPE)) if affine else None
        self.bias = Parameter(np.zeros(num_features, DEFAULT_DTYPE)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, DEFAULT_DTYPE)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, DEFAULT_DTYPE)))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), np.int64)))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x):
        return self._normalise(F.batch_norm, x)

    def forward_relu(self, x):
        """relu(self(x)) as one op, F.batch_norm_relu (the models call it when fusion is
        on, ops/fused.py); forward hooks do not see it: it is not a call of the module."""
        return self._normalise(F.batch_norm_relu, x)

    def forward_add_relu(self, x, residual):
        """relu(self(x) + residual) as one op, F.batch_norm_add_relu (as forward_relu)."""
        return self._normalise(lambda x, *args: F.batch_norm_add_relu(x, residual, *args), x)

    def _normalise(self, op, x):
        if x.ndim not in self._rank:
            raise ValueError(f"{type(self).__name__}: expected input of rank "
                             f"{' or '.join(map(str, self._rank))}, got shape {tuple(x.shape)}")
        updating = self.training and self.track_running_stats
        momentum = self.momentum
        if updating and momentum is None:       # cumulative moving average
            momentum = 1.0 / (float(self.num_batches_tracked.item()) + 1)
        out = op(x, self.running_mean, self.running_var, self.weight, self.bias,
                 self.training or not self.track_running_stats, momentum, self.eps)
        if updating:                            # only once the batch was accepted
            self.num_batches_tracked.data += 1
        return out

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W): statistics per channel over N, H, W."""
    _rank = (4,)


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L)."""
    _rank = (2, 3)


class Linear(Module):
    """y = x W^T + b.  Weight (out, in), Kaiming-normal (fan_in, ReLU); bias zero."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_empty(out_features, in_features))
        self.bias = Parameter(_empty(out_features)) if bias else None
        init.kaiming_normal_(self.weight)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Identity(Module):
    def forward(self, x):
        return x


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return ops.flatten(x, self.start_dim, self.end_dim)


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.count_include_pad = count_include_pad

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"
