"""Every differentiable op: forward and backward side by side, written once against ``xp``."""
from .conv import conv2d
from .dropout import dropout
from .elementwise import add, astype, div, exp, log, mul, neg, pow, relu, sqrt, sub, to_device
from .linalg import linear, matmul
from .loss import cross_entropy, log_softmax
from .norm import batch_norm
from .pool import adaptive_avg_pool2d, avg_pool2d, global_avg_pool2d, max_pool2d
from .reduce import max, mean, sum
from .shape import cat, flatten, getitem, pad, permute, reshape, stack, transpose
