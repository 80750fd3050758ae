"""minires: a from-scratch deep-learning engine for studying residual networks.

    autograd.py  the graph walk (backward)        tensor.py   Tensor and factories
    ops/         every op, forward beside backward  backend.py  NumPy/CuPy seam
    nn/          modules and nn.functional          optim/      SGD and LR schedules
    gradcheck.py numerical gradient checks          graph.py    graph listing, DOT, render_graph
    trace.py     minires.trace(): every op's record models/     CIFAR and ImageNet ResNets
    data/        datasets and the DataLoader        train.py    the training loop
    cli.py       `minires train|eval|summary`
    kernels/     (minires.kernels) Numba and CUDA kernels
"""
from . import backend, ops
from .autograd import is_grad_enabled, no_grad, set_grad_enabled
from .gradcheck import GradcheckError, gradcheck
from .graph import format_graph, render_graph, to_dot
from .ops import cat, stack
from .ops.fused import fusion, fusion_enabled, set_fusion
from .random import manual_seed
from .trace import trace  # the function; the module is still sys.modules['minires.trace']
from .tensor import (Tensor, float32, float64, int64, ones, ones_like, randn, tensor,
                     zeros, zeros_like)
from . import nn, optim  # noqa: E402  (nn builds on the names above)
from . import data, models  # noqa: E402
from .model_summary import count_macs, summary  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "zeros", "ones", "randn", "zeros_like", "ones_like", "cat", "stack",
    "float32", "float64", "int64", "no_grad", "set_grad_enabled", "is_grad_enabled",
    "gradcheck", "GradcheckError", "format_graph", "to_dot", "render_graph", "trace", "manual_seed",
    "nn", "optim", "backend", "ops", "summary", "count_macs", "fusion", "set_fusion", "fusion_enabled",
]
