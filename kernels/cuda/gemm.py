"""Matrix products on the GPU: minires's own tiled GEMM (gemm.cu), and matmul, which
picks cuBLAS or it by the package's switch ``minires.kernels.cuda.GEMM``; the
switch ``GEMM_TF32`` puts the own GEMM's float32 products on the TF32 tensor cores."""
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
GEMM_BM = 128               # rows of C per GEMM block (gemm.cu: BM)
GEMM_BK = 8                 # depth of one K step (gemm.cu: BK): split-K ranges are multiples of it
GEMM_BNS = (16, 32, 64)     # the column tiles gemm_kernel is instantiated for (gemm.cu: BN)
GEMM_THREADS = 128          # threads per GEMM block (gemm.cu: THREADS)
GEMM_REDUCE_THREADS = 256   # threads per split-K reduction block (gemm.cu: REDUCE_THREADS)

# Split-K (gemm.cu, 6.): when a product's tiles give fewer than GEMM_FILL_BLOCKS blocks
# and K is at least 2 * GEMM_MIN_SPLIT_K, K is cut into ranges of at least
# GEMM_MIN_SPLIT_K, enough of them to reach about GEMM_FILL_BLOCKS blocks (at most
# GEMM_MAX_SPLITS).  528 = 4 blocks (16 warps) on each of an H100/H200's 132 SMs: a
# block has only 4 warps, so one per SM would leave the memory latency unhidden.  The
# workspace stays small: splits * blocks <= 2 * GEMM_FILL_BLOCKS tiles of 128 x 64.
# (Guesses until benchmarks/gemm_cuda.py has run on a GPU.)
GEMM_FILL_BLOCKS = 528
GEMM_MIN_SPLIT_K = 256
GEMM_MAX_SPLITS = 128


def _tile_n(n):
    """The narrowest column tile that covers n (the widest for n > 64)."""
    return next((bn for bn in GEMM_BNS if n <= bn), GEMM_BNS[-1])


def _padded_work(m, n):
    """Multiply-adds per unit of K that the tiles compute for an m x n result, padding included."""
    bn = _tile_n(n)
    return _ceil_div(m, GEMM_BM) * GEMM_BM * _ceil_div(n, bn) * bn


def gemm_plan(M, N, K, batch):
    """(splits, k_per_split, transposed) that gemm uses for an (M x K) @ (K x N) product.

    splits = 1: one pass, C written directly.  splits > 1: split-K through a
    workspace; transposed: the product computed is C^T (N x M), when its tiles
    pad less (the thin dW products: M = Cout, N = kh*kw*Cin).
    """
    blocks = _ceil_div(M, GEMM_BM) * _ceil_div(N, _tile_n(N)) * batch
    if blocks >= GEMM_FILL_BLOCKS or K < 2 * GEMM_MIN_SPLIT_K:
        return 1, K, False
    transposed = _padded_work(N, M) < _padded_work(M, N)
    if transposed:
        blocks = _ceil_div(N, GEMM_BM) * _ceil_div(M, _tile_n(M)) * batch
    splits = min(_ceil_div(GEMM_FILL_BLOCKS, blocks), K // GEMM_MIN_SPLIT_K, GEMM_MAX_SPLITS)
    k_per_split = _ceil_div(_ceil_div(K, splits), GEMM_BK) * GEMM_BK
    splits = _ceil_div(K, k_per_split)              # (rounding up k_per_split may leave fewer)
    if splits == 1:
        return 1, K, False
    return splits, k_per_split, transposed


_tf32_capable = None          # the device's compute capability allows TF32 mma (sm_80+)? (asked once)


def _check_tf32():
    global _tf32_capable
    if _tf32_capable is None:
        _tf32_capable = int(_cupy().cuda.Device().compute_capability) >= 80
    if not _tf32_capable:
        raise ValueError("gemm: tf32=True needs TF32 tensor cores (compute capability 8.0 or newer); "
                         "set minires.kernels.cuda.GEMM_TF32 = False")


def gemm(a, b, out=None, *, trans_a=False, trans_b=False, accumulate=False, tf32=None):
    """out = op(a) @ op(b)  (out += ... with accumulate=True), by gemm.cu.

    a, b: C-contiguous CuPy arrays, 2-d or 3-d (a batch), same float dtype.
    op(a) is a when trans_a is False, else a with its last two axes swapped (so
    a (K, M) array with trans_a=True acts as (M, K)); the same for b.  A 2-d
    operand, or a batch of 1, is broadcast over the other's batch (stride 0).
    The result is (batch, M, N) when either operand is 3-d, else (M, N).

    tf32: float32 products on the TF32 tensor cores (inputs rounded to a 10-bit
    mantissa, fp32 sums: relative error ~1e-3 instead of ~K * 6e-8); None = the
    package's switch ``minires.kernels.cuda.GEMM_TF32``.  float64 ignores it.

    With ``out`` given nothing is allocated (split-K's partial sums go to a reused
    workspace, kernels/cuda/_launch.workspace) and nothing waits for the device:
    one kernel launch on the current stream, two with split-K (none for an empty
    product).  So it can run inside CUDA-graph capture, where cupy.matmul's cuBLAS
    call is refused.  ``out`` must not overlap a or b.  conv2d's products
    (minires/ops/conv.py: cols (n*L, K), W (Cout, K), g^T (n*L, Cout), one group)
    map onto it as:
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
    if max(M, N, K) > _launch._INT_MAX - 2 * GEMM_BM:
        raise ValueError(f"gemm: dimensions {(M, N, K)} too large for 32-bit tile indices")
    if batch > _launch._INT_MAX // GEMM_MAX_SPLITS:
        raise ValueError(f"gemm: batch {batch} too large for 32-bit launch indices")
    stride_a = M * K if a.ndim == 3 and a.shape[0] == batch and batch > 1 else 0
    stride_b = K * N if b.ndim == 3 and b.shape[0] == batch and batch > 1 else 0
    if tf32 is None:
        tf32 = _package.GEMM_TF32
    tf32 = bool(tf32) and t == "float"
    if tf32:
        _check_tf32()
    splits, k_per_split, transposed = gemm_plan(M, N, K, batch)
    if transposed:                               # C^T = op(b)^T @ op(a)^T, into the workspace
        a, b, trans_a, trans_b, stride_a, stride_b, M, N = (b, a, not trans_b, not trans_a,
                                                            stride_b, stride_a, N, M)
    bn = _tile_n(N)
    grid_y = _ceil_div(M, GEMM_BM)
    if grid_y > _launch._MAX_GRID_YZ:
        raise ValueError(f"gemm: M = {M} needs {grid_y} row blocks, more than the grid's {_launch._MAX_GRID_YZ}")
    target = out if splits == 1 else _launch.workspace("gemm_splitk", (splits, batch, M, N), a.dtype)
    fn = _kernel("gemm.cu", expr("gemm_kernel", t, "true" if trans_a else "false",
                                 "true" if trans_b else "false", str(bn), "true" if tf32 else "false"))
    fn((_ceil_div(N, bn), grid_y, min(batch * splits, _launch._MAX_GRID_YZ)), (GEMM_THREADS,),
       (a, b, target, np.int32(M), np.int32(N), np.int32(K), np.int64(stride_a), np.int64(stride_b),
        np.int64(M * N), np.int32(batch), np.int32(bool(accumulate) and splits == 1),
        np.int32(splits), np.int32(k_per_split), np.int64(batch * M * N)))
    if splits > 1:
        reduce = _kernel("gemm.cu", expr("gemm_splitk_reduce_kernel", t))
        _launch._launch_1d(reduce, batch * M * N,
                           (target, out, np.int32(M), np.int32(N), np.int32(batch), np.int32(splits),
                            np.int32(transposed), np.int32(bool(accumulate))), block=GEMM_REDUCE_THREADS)
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
    """a @ b for CuPy arrays: cupy.matmul (cuBLAS) when GEMM == 'cublas', gemm.cu when 'own'
    (on the TF32 tensor cores for float32 when GEMM_TF32 is set).

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

