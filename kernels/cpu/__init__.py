"""CPU kernels (Numba).  The interface every device's kernel module provides:

    im2col(x, kernel, stride, padding, dilation, out_hw, groups=1, out=None) -> cols (N*Ho*Wo, kh*kw*C)
    col2im(cols, x_shape, kernel, stride, padding, dilation, out_hw, groups=1, out=None) -> x
    batch_norm_forward(x3, gamma, beta, eps) -> y3, mean, var, invstd   (x3: (N, C, L))
    batch_norm_backward(g3, x3, mean, invstd, gamma) -> dx3, dgamma, dbeta
    batch_norm_update_running(running_mean, running_var, mean, var, count, momentum)  (in place)
    batch_norm_relu_forward(x3, gamma, beta, eps) -> y3, mean, var, invstd   relu(batch norm), fused
    batch_norm_relu_backward(g3, x3, y3, mean, invstd, gamma) -> dx3, dgamma, dbeta
    max_pool2d_forward(x, kernel, stride, padding, out_hw) -> out, argmax
    max_pool2d_backward(g, argmax, x_shape) -> dx
    avg_pool2d_forward(x, kernel, stride, padding, out_hw, count_include_pad) -> out
    avg_pool2d_backward(g, x_shape, kernel, stride, padding, count_include_pad) -> dx

    workspace(name, shape, dtype) -> a reusable scratch array (per thread on the CPU)
    matmul(a, b, out=None) -> a @ b (BLAS here; cuBLAS or minires's own GEMM on the GPU)
    cross_entropy_forward(logits, target) -> losses, lse
    cross_entropy_backward(logits, target, lse, g, scale) -> d logits
    sgd_step(params, grads, bufs, lr, momentum, weight_decay, dampening, nesterov, first_step)

CPU only, not in __all__ (minires/ops/fused.py and norm.py; the GPU runs array code instead):

    add_relu_forward(a, b) -> max(a + b, 0), or None when a and b share no dense layout
    add(a, b) -> a + b across the threads, or None when a and b share no dense layout
    relu_backward(g, y) -> g·[y > 0]
    batch_norm_affine(x3, scale, shift, relu, residual=None) -> x3·scale + shift per channel
        [+ residual] [then max(·, 0)]
    batch_norm_add_relu_forward(x3, r3, gamma, beta, eps) -> relu(BN(x3) + r3), mean, var, invstd
        (channels-last rows only, else None)

CPU only, not in __all__ (conv2d's Winograd path, minires/ops/winograd.py; m = 2 or 4, a = m + 2):

    winograd_tile_grid(h, w, m) -> (TH, TW)
    winograd_input(x, m, out) -> V (a*a, N*TH*TW, C)       winograd_filter(weight, m) -> U (a*a, C, K)
    winograd_output(M, m, out) -> y (N, H, W, K)          winograd_filter_grad(dU, m) -> dW (K, C, 3, 3)
    winograd_output(M, 2, out, scale, shift[, residual, relu]) -> relu(y·scale + shift + residual)
    winograd_output_grad(g, m, out) -> dM (a*a, N*TH*TW, K)
    winograd_input_grad(Z, m, out) -> dx (N, H, W, C)     F(2x2), even H and W: winograd_f2_applies

CPU only, not in __all__ (conv2d's direct path for few input channels, minires/ops/direct.py):

    direct_conv3x3(x, weight) -> (N, H, W, K)       conv(x, weight), 3x3, padding 1; x (N, C, H, W)
    direct_conv3x3_filter_grad(x, g, K) -> dW       (K, C, 3, 3); g (N, H, W, K)

kernel/stride/padding/dilation/out_hw are (h, w) pairs; x is channels-last (N, H, W, C), and a
row of cols is one output pixel with its taps ordered (channel group, kernel row, kernel column,
channel of the group) -- columns.py; im2col and col2im write into ``out=`` when given.  CONV_WORKSPACE_BYTES bounds the columns of one chunk of
images in conv2d (small on the CPU so that they stay in cache).
"""
import os

import numba

# Numba's OpenMP layer keeps its threads spinning after each parallel kernel,
# stealing the cores from the conv threads and BLAS that run next (a ResNet-20
# step measured ~15% slower).  The workqueue layer parks its threads instead.
# An explicit NUMBA_THREADING_LAYER still wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

from .memory import tune_malloc  # noqa: E402

tune_malloc()

# BLAS runs one thread per call, on every thread of the process.  conv2d already
# runs one BLAS call per core (minires.backend.parallel_for); a multi-threaded call
# anywhere else (the Winograd filter transform, a linear layer) leaves OpenBLAS's
# workers spinning for milliseconds afterwards on the cores the next conv's threads
# need.  Measured on 2 cores: a 64x8x8 conv forward + backward at batch 128 took
# 18.9 ms with one conv thread starting 2.4 ms late behind a spinning BLAS worker,
# 12.8 ms with BLAS held to one thread.  Holding it per parallel_for call was not
# enough: the spinning starts after the calls in between.
import threadpoolctl  # noqa: E402

threadpoolctl.threadpool_limits(limits=1, user_api="blas")

# One chunk's columns (im2col) or transformed tiles (Winograd): about a core's L2, so
# that they stay there between the kernel that writes them and the GEMM that reads
# them.  A ResNet-20 step on a 2-core Zen 4 (1 MiB L2 per core), interleaved rounds:
# 4 MiB 428 ms, 2 MiB 354, 1 MiB 339, 512 KiB 360 at batch 128; at batch 32 4 MiB
# 154 ms, 1 MiB 125, 256 KiB 177 (the chunks' per-call costs).
CONV_WORKSPACE_BYTES = 1 << 20

from .batchnorm import (batch_norm_add_relu_forward, batch_norm_affine, batch_norm_backward,
                        batch_norm_forward, batch_norm_relu_backward, batch_norm_relu_forward,
                        batch_norm_update_running)
from .columns import col2im, im2col
from .gemm import matmul

from .loss import cross_entropy_backward, cross_entropy_forward
from .optim import sgd_step
from .workspace import workspace
from .pooling import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward
# CPU only, outside __all__ (the interface kernels/cuda mirrors): add_relu, conv2d's Winograd path
from .elementwise import add, add_relu_forward, relu_backward
from .winograd import (winograd_filter, winograd_filter_grad, winograd_input, winograd_input_grad,
                       winograd_f2_applies, winograd_output, winograd_output_grad,
                       winograd_tile_grid)
from .direct import direct_conv3x3, direct_conv3x3_filter_grad

__all__ = ["workspace", "matmul", "cross_entropy_forward", "cross_entropy_backward", "sgd_step", "im2col", "col2im", "batch_norm_forward", "batch_norm_backward",
           "batch_norm_update_running", "batch_norm_relu_forward", "batch_norm_relu_backward",
           "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward"]
