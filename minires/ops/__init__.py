"""Every differentiable op: forward and backward side by side, written once against ``xp``.

fused.py holds the fused ops (batch_norm_relu, add_relu, batch_norm_add_relu; and, for forward
passes that build no graph, conv2d_batch_norm_relu_eval) and the switch that lets the models use them (fusion, set_fusion; off inside minires.trace()): read its docstring for
why fusion is an explicit choice there and never a rewrite of the graph."""
from .conv import conv2d
from .dropout import dropout
from .elementwise import add, astype, div, exp, log, mul, neg, pow, relu, sqrt, sub, to_device
from .fused import (add_relu, batch_norm_add_relu, batch_norm_relu, conv2d_batch_norm_relu_eval, fusion,
                    fusion_enabled, set_fusion)
from .linalg import linear, matmul
from .loss import cross_entropy, log_softmax
from .norm import batch_norm
from .pool import adaptive_avg_pool2d, avg_pool2d, global_avg_pool2d, max_pool2d
from .reduce import max, mean, sum
from .shape import cat, flatten, getitem, pad, permute, reshape, stack, transpose
