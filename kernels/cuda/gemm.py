"""Matrix products on the GPU: minires's own tiled GEMM (gemm.cu), and matmul, which
picks cuBLAS or it by the package's switch ``minires.kernels.cuda.GEMM``."""
from __future__ import annotations

import sys

import numpy as np

from . import _launch
from ._launch import _ceil_div, _check_out, _ctype, _cupy, _kernel
from ._sources import CTYPES, expr

# The switch GEMM lives in the package (minires.kernels.cuda), where callers and the
# emulator's own-GEMM plugin set it: matmul reads it there at every call.
_package = sys.modules[__package__]

# Launch shape; must match the constants in gemm.cu (tests/test_cuda_sources.py checks).
GEMM_BM = 64                # rows of C per GEMM block (gemm.cu: BM)
GEMM_BN = 64                # columns of C per GEMM block (gemm.cu: BN)
GEMM_THREADS = 256          # threads per GEMM block (gemm.cu: THREADS)


def gemm(a, b, out=None, *, trans_a=False, trans_b=False, accumulate=False):
    """out = op(a) @ op(b)  (out += ... with accumulate=True), by gemm.cu.

    a, b: C-contiguous CuPy arrays, 2-d or 3-d (a batch), same float dtype.
    op(a) is a when trans_a is False, else a with its last two axes swapped (so
    a (K, M) array with trans_a=True acts as (M, K)); the same for b.  A 2-d
    operand, or a batch of 1, is broadcast over the other's batch (stride 0).
    The result is (batch, M, N) when either operand is 3-d, else (M, N).

    With ``out`` given nothing is allocated and nothing waits for the device: one
    kernel launch on the current stream (or none, for an empty product).  So it
    can run inside CUDA-graph capture, where cupy.matmul's cuBLAS call is refused.
    ``out`` must not overlap a or b.  conv2d's products (minires/ops/conv.py: cols
    (n*L, K), W (Cout, K), g^T (n*L, Cout), one group) map onto it as:
        out^T = cols @ W^T        gemm(cols, w2, out=res, trans_b=True)
        dW    = g^T^T @ cols      gemm(gt, cols, out=gw, trans_a=True)   (accumulate=True: dW +=)
        dcols = g^T @ W           gemm(gt, w2, out=dcols)
    """
    cp = _cupy()
    if a.dtype != b.dtype:
        raise TypeError(f"gemm: operands of different dtypes {a.dtype} and {b.dtype}")
    t = _ctype(a.dtype, "gemm operands")
    for name, m in (("a", a), ("b", b)):
        if m.ndim not in (2, 3):
            raise ValueError(f"gemm: {name} must be 2-d or 3-d, got shape {tuple(m.shape)}")
        if not m.flags.c_contiguous:
            raise ValueError(f"gemm: {name} must be C-contiguous; for a transposed view pass the "
                             f"contiguous array with trans_{name}=True (matmul() does this)")
    M, K = (a.shape[-1], a.shape[-2]) if trans_a else a.shape[-2:]
    Kb, N = (b.shape[-1], b.shape[-2]) if trans_b else b.shape[-2:]
    if K != Kb:
        raise ValueError(f"gemm: inner dimensions differ: op(a) is {M}x{K}, op(b) is {Kb}x{N}")
    batches = [m.shape[0] for m in (a, b) if m.ndim == 3]
    batch = max(batches, default=1)
    if any(bs not in (1, batch) for bs in batches):
        raise ValueError(f"gemm: batch sizes {batches} cannot be broadcast")
    out_shape = (batch, M, N) if batches else (M, N)
    if out is None:
        if accumulate:
            raise ValueError("gemm: accumulate=True needs out=")
        out = cp.empty(out_shape, dtype=a.dtype)
    else:
        _check_out(out, out_shape, a.dtype, "gemm out")
    if out.size == 0:
        return out
    if K == 0:                                   # an empty sum
        if not accumulate:
            out.fill(0)
        return out
    if max(M, N, K) > _launch._INT_MAX - max(GEMM_BM, GEMM_BN):
        raise ValueError(f"gemm: dimensions {(M, N, K)} too large for 32-bit tile indices")
    grid_y = _ceil_div(M, GEMM_BM)
    if grid_y > _launch._MAX_GRID_YZ:
        raise ValueError(f"gemm: M = {M} needs {grid_y} row blocks, more than the grid's {_launch._MAX_GRID_YZ}")
    stride_a = M * K if a.ndim == 3 and a.shape[0] == batch and batch > 1 else 0
    stride_b = K * N if b.ndim == 3 and b.shape[0] == batch and batch > 1 else 0
    fn = _kernel("gemm.cu", expr("gemm_kernel", t, "true" if trans_a else "false",
                                 "true" if trans_b else "false"))
    fn((_ceil_div(N, GEMM_BN), grid_y, min(batch, _launch._MAX_GRID_YZ)), (GEMM_THREADS,),
       (a, b, out, np.int32(M), np.int32(N), np.int32(K), np.int64(stride_a), np.int64(stride_b),
        np.int64(M * N), np.int32(batch), np.int32(bool(accumulate))))
    return out


def _gemm_operand(m):
    """(C-contiguous array, transposed?) for a matrix that is one or whose last-two-axes swap is one."""
    if m.flags.c_contiguous:
        return m, False
    swapped = m.swapaxes(-1, -2)
    if swapped.flags.c_contiguous:
        return swapped, True
    return _cupy().ascontiguousarray(m), False   # a copy: any other layout


def matmul(a, b, out=None):
    """a @ b for CuPy arrays: cupy.matmul (cuBLAS) when GEMM == 'cublas', gemm.cu when 'own'.

    The own kernel takes 2-d and 3-d float32/float64 operands that are C-contiguous
    or transposed views of C-contiguous arrays (the layouts conv2d and linear use)
    without copying; other layouts are copied first.  Shapes outside its reach
    (1-d, 4-d and more, mixed or integer dtypes) go to cupy.matmul whatever GEMM says.
    ``out`` may be any layout, as with cupy.matmul: C-contiguous (or its transpose)
    is written directly, anything else -- e.g. conv2d's column block of one group
    of a grouped convolution -- through a temporary, like cupy.matmul does.
    """
    cp = _cupy()
    GEMM = _package.GEMM
    if GEMM == "cublas":
        return cp.matmul(a, b, out=out)
    if GEMM != "own":
        raise ValueError(f"minires.kernels.cuda.GEMM must be 'cublas' or 'own', got {GEMM!r}")
    if (a.ndim not in (2, 3) or b.ndim not in (2, 3) or a.dtype != b.dtype
            or a.dtype.name not in CTYPES):
        return cp.matmul(a, b, out=out)
    a, trans_a = _gemm_operand(a)
    b, trans_b = _gemm_operand(b)
    if out is None or (out.flags.c_contiguous and out.dtype == a.dtype):
        return gemm(a, b, out, trans_a=trans_a, trans_b=trans_b)
    out_t = out.swapaxes(-1, -2)
    if out_t.flags.c_contiguous and out.dtype == a.dtype:      # out^T = op(b)^T @ op(a)^T
        gemm(b, a, out_t, trans_a=not trans_b, trans_b=not trans_a)
        return out
    result = gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    if result.shape != out.shape:
        raise ValueError(f"matmul: out has shape {tuple(out.shape)}, the product {tuple(result.shape)}")
    out[...] = result
    return out

