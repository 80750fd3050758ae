"""CUDA kernels (CUDA C compiled by CuPy).  The interface of ``minires.kernels.cpu``, on CuPy arrays:

    im2col(x, kernel, stride, padding, dilation, out_hw, groups=1, out=None) -> cols (N*Ho*Wo, kh*kw*C)
    col2im(cols, x_shape, kernel, stride, padding, dilation, out_hw, groups=1, out=None) -> x
    batch_norm_forward(x3, gamma, beta, eps) -> y3, mean, var, invstd   (x3: (N, C, L); stats float64)
    batch_norm_backward(g3, x3, mean, invstd, gamma) -> dx3, dgamma, dbeta
    batch_norm_update_running(running_mean, running_var, mean, var, count, momentum)  (in place)
    max_pool2d_forward(x, kernel, stride, padding, out_hw) -> out, argmax (int32)
    max_pool2d_backward(g, argmax, x_shape) -> dx
    avg_pool2d_forward(x, kernel, stride, padding, out_hw, count_include_pad) -> out
    avg_pool2d_backward(g, x_shape, kernel, stride, padding, count_include_pad) -> dx
    CONV_WORKSPACE_BYTES

x is channels-last (N, H, W, C); a row of cols is one output pixel, its taps ordered
(channel group, kernel row, kernel column, channel of the group) -- kernels/cpu/columns.py.
float32 and float64; the arrays are made C-contiguous when they are not (a copy),
and the results are new arrays unless ``out=`` is given (then nothing is allocated).

GPU-only extras, for the ops and the optimizer to adopt (nothing calls them yet):

    batch_norm_relu_forward / batch_norm_relu_backward   fused BN + ReLU
    gemm(a, b, out=None, *, trans_a, trans_b, accumulate)   minires's own tiled GEMM
    matmul(a, b, out=None)       cupy.matmul or the own GEMM, by the switch GEMM
    sgd_step(params, grads, bufs, lr, momentum, weight_decay, dampening, nesterov, first_step)
    cross_entropy_forward / cross_entropy_backward       NaN loss for a bad target
    load_all()                   compile and load every kernel now

The wrappers are split by job, each module beside its CUDA source:

    _launch.py     CuPy on demand, compiling and launching kernels, argument checks, workspace, load_all
    columns.py     im2col, col2im                          (columns.cu)
    batchnorm.py   batch norm, plain and fused with ReLU   (batchnorm.cu)
    pooling.py     max and average pooling                 (pooling.cu)
    gemm.py        gemm, matmul                            (gemm.cu)
    sgd.py         sgd_step                                (sgd.cu)
    loss.py        cross-entropy                           (loss.cu)

This module is their index: every public name is reachable as
``minires.kernels.cuda.NAME``, and the switches CONV_WORKSPACE_BYTES and GEMM
live here (conv2d and matmul read them from this module at each call, so
setting them here takes effect).  The function ``gemm`` shadows the submodule of
the same name in this namespace; the submodule is ``sys.modules['minires.kernels.cuda.gemm']``.

The sources are the ``*.cu`` files beside these modules, one per job (columns,
batchnorm, pooling, gemm, sgd, loss).  Each is compiled by NVRTC through
``cupy.RawModule`` the first time one of its kernels is used, with every float
and double instantiation at once (templates + ``name_expressions``, listed in
``_sources.py``); CuPy caches the binary on disk (~/.cupy/kernel_cache), so a
later process loads it without compiling.  ``python -m
minires.kernels.cuda.compile_check`` compiles them all without a GPU.

Importing this module does not import CuPy (compile_check and the CI tests
rely on it): CuPy is imported by the first kernel call.  Kernels run on CuPy's
current stream.  Scalars are passed to kernels as NumPy scalars of the exact C
type of the parameter (np.int32 for int, np.int64 for long long, np.float64 for
double), never as bare Python numbers.
"""
from __future__ import annotations

from ._launch import BLOCK, load_all, workspace
from .batchnorm import (BN_ITEMS, BN_REDUCE_BLOCK, batch_norm_backward, batch_norm_forward,
                        batch_norm_relu_backward, batch_norm_relu_forward, batch_norm_update_running)
from .columns import col2im, im2col
from .gemm import GEMM_BM, GEMM_BN, GEMM_THREADS, gemm, matmul
from .loss import CE_ROWS_PER_BLOCK, cross_entropy_backward, cross_entropy_forward
from .pooling import (POOL_GEOMETRY_INTS, avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward,
                      max_pool2d_forward)
from .sgd import SGD_CHUNK, SGD_THREADS, sgd_step

# One chunk of conv2d's columns.  On the GPU the point is fewer, bigger GEMMs, not
# cache residency: 1 GiB holds a whole batch of 128 for every layer of ResNet-20
# in float32 (the largest, 16 channels x 3x3 at 32x32: 144 x 131072 x 4 B = 75 MB).
CONV_WORKSPACE_BYTES = 1 << 30

# Which GEMM matmul() uses: 'cublas' (cupy.matmul) or 'own' (gemm.cu).  CuPy refuses
# to call cuBLAS while a stream is capturing a CUDA graph, so a captured training
# step must run its products on the own kernel.
GEMM = "cublas"

# The launch shapes (the last line of __all__) are defined beside the wrappers that
# use them and re-exported for reading: setting one here changes no launch.  The GEMM
# and SGD numbers must match the constants in gemm.cu and sgd.cu
# (tests/test_cuda_sources.py checks that they do).

__all__ = ["workspace", "im2col", "col2im", "batch_norm_forward", "batch_norm_backward",
           "batch_norm_update_running",
           "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "CONV_WORKSPACE_BYTES",
           "batch_norm_relu_forward", "batch_norm_relu_backward", "GEMM", "gemm", "matmul",
           "sgd_step", "cross_entropy_forward", "cross_entropy_backward", "load_all",
           "BLOCK", "BN_REDUCE_BLOCK", "BN_ITEMS", "GEMM_BM", "GEMM_BN", "GEMM_THREADS", "SGD_CHUNK",
           "SGD_THREADS", "CE_ROWS_PER_BLOCK", "POOL_GEOMETRY_INTS"]
