"""CUDA kernels (CUDA C compiled by CuPy).  The interface of ``minires.kernels.cpu``, on CuPy arrays:

    im2col(x, kernel, stride, padding, dilation, out_hw, out=None) -> cols (C*kh*kw, N*Ho*Wo)
    col2im(cols, x_shape, kernel, stride, padding, dilation, out_hw, out=None) -> x
    batch_norm_forward(x3, gamma, beta, eps) -> y3, mean, var, invstd   (x3: (N, C, L); stats float64)
    batch_norm_backward(g3, x3, mean, invstd, gamma) -> dx3, dgamma, dbeta
    batch_norm_update_running(running_mean, running_var, mean, var, count, momentum)  (in place)
    max_pool2d_forward(x, kernel, stride, padding, out_hw) -> out, argmax (int32)
    max_pool2d_backward(g, argmax, x_shape) -> dx
    avg_pool2d_forward(x, kernel, stride, padding, out_hw, count_include_pad) -> out
    avg_pool2d_backward(g, x_shape, kernel, stride, padding, count_include_pad) -> dx
    CONV_WORKSPACE_BYTES

float32 and float64; the arrays are made C-contiguous when they are not (a copy),
and the results are new arrays unless ``out=`` is given (then nothing is allocated).

GPU-only extras, for the ops and the optimizer to adopt (nothing calls them yet):

    batch_norm_relu_forward / batch_norm_relu_backward   fused BN + ReLU
    gemm(a, b, out=None, *, trans_a, trans_b, accumulate)   minires's own tiled GEMM
    matmul(a, b, out=None)       cupy.matmul or the own GEMM, by the switch GEMM
    sgd_step(params, grads, bufs, lr, momentum, weight_decay, dampening, nesterov, first_step)
    cross_entropy_forward / cross_entropy_backward       NaN loss for a bad target
    load_all()                   compile and load every kernel now

The sources are the ``*.cu`` files beside this module, one per job (columns,
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

import functools
from collections import OrderedDict

import numpy as np

from . import _sources
from ._sources import CTYPES, INDEX_CTYPES, expr

# One chunk of conv2d's columns.  On the GPU the point is fewer, bigger GEMMs, not
# cache residency: 1 GiB holds a whole batch of 128 for every layer of ResNet-20
# in float32 (the largest, 16 channels x 3x3 at 32x32: 144 x 131072 x 4 B = 75 MB).
CONV_WORKSPACE_BYTES = 1 << 30

# Which GEMM matmul() uses: 'cublas' (cupy.matmul) or 'own' (gemm.cu).  CuPy refuses
# to call cuBLAS while a stream is capturing a CUDA graph, so a captured training
# step must run its products on the own kernel.
GEMM = "cublas"

# Launch shapes.  The GEMM and SGD numbers must match the constants in gemm.cu and
# sgd.cu (tests/test_cuda_sources.py checks that they do).
BLOCK = 256                 # threads per block of the elementwise / per-element kernels
BN_REDUCE_BLOCK = 512       # threads per channel in the batch-norm reductions (a multiple of 32)
BN_ITEMS = 4                # values per thread in the batch-norm apply kernels
GEMM_BM = 64                # rows of C per GEMM block (gemm.cu: BM)
GEMM_BN = 64                # columns of C per GEMM block (gemm.cu: BN)
GEMM_THREADS = 256          # threads per GEMM block (gemm.cu: THREADS)
SGD_CHUNK = 4096            # elements per block in the fused SGD (sgd.cu: SGD_CHUNK)
SGD_THREADS = 256
CE_ROWS_PER_BLOCK = 4       # cross-entropy forward: one warp per row
POOL_GEOMETRY_INTS = 8      # int32 record behind max pooling's argmax (pooling.cu)

_MAX_GRID_X = 2**31 - 1
_MAX_GRID_YZ = 65535
_INT_MAX = 2**31 - 1

__all__ = ["workspace", "im2col", "col2im", "batch_norm_forward", "batch_norm_backward",
           "batch_norm_update_running",
           "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "CONV_WORKSPACE_BYTES",
           "batch_norm_relu_forward", "batch_norm_relu_backward", "GEMM", "gemm", "matmul",
           "sgd_step", "cross_entropy_forward", "cross_entropy_backward", "load_all"]


# ------------------------------------------------------------------ plumbing
_cp = None
_modules = {}               # source file -> cupy.RawModule
_functions = {}             # (source file, name expression) -> cupy.RawKernel


def _cupy():
    global _cp
    if _cp is None:
        import cupy
        _cp = cupy
    return _cp


def _kernel(source, name):
    """The compiled kernel ``name`` (a name expression from _sources.KERNELS) of ``source``."""
    fn = _functions.get((source, name))
    if fn is None:
        module = _modules.get(source)
        if module is None:
            module = _cupy().RawModule(code=_sources.read_source(source),
                                       options=_sources.RAWMODULE_OPTIONS,
                                       name_expressions=list(_sources.KERNELS[source]))
            _modules[source] = module
        fn = _functions[(source, name)] = module.get_function(name)
    return fn


def load_all():
    """Compile (or load from CuPy's disk cache) every kernel now.

    Call it before capturing a CUDA graph: a first use inside the capture would
    compile and load a module, which capture does not allow.
    """
    for source, names in _sources.KERNELS.items():
        for name in names:
            _kernel(source, name)


def _ceil_div(a, b):
    return -(-a // b)


_CTYPE_OF = {np.dtype(name): ctype for name, ctype in CTYPES.items()}


def _ctype(dtype, what):
    ctype = _CTYPE_OF.get(dtype)             # dtype objects hash fast; .name does not
    if ctype is None:
        name = np.dtype(dtype).name
        if name not in CTYPES:
            raise TypeError(f"minires CUDA kernels: {what} must be float32 or float64, got {name}")
        ctype = CTYPES[name]
    return ctype


def _i32(v, what):
    v = int(v)
    if not -2**31 <= v <= _INT_MAX:
        raise ValueError(f"minires CUDA kernels: {what} = {v} does not fit in a 32-bit int")
    return np.int32(v)


def _ints(values, what):
    return tuple(_i32(v, what) for v in values)


def _launch_1d(fn, total, args, block=BLOCK):
    """One thread per element (the kernels' grid-stride loops cover any excess)."""
    if total > 0:
        fn((min(_ceil_div(total, block), _MAX_GRID_X),), (block,), args)


def _is_cupy(a):
    return type(a).__module__.split(".")[0] == "cupy"


def _as_device(a, dtype=None):
    """A C-contiguous CuPy array (a no-op for one that already is, of that dtype)."""
    cp = _cupy()
    if type(a) is cp.ndarray and a.flags.c_contiguous and (dtype is None or a.dtype == dtype):
        return a                             # the common case, without CuPy's call overhead
    return cp.ascontiguousarray(cp.asarray(a), dtype=dtype)


def _check_ndim(a, ndim, what):
    if a.ndim != ndim:
        raise ValueError(f"minires CUDA kernels: {what} must be {ndim}-d, got shape {tuple(a.shape)}")


def _check_out(out, shape, dtype, what):
    """``out`` must be exactly what the kernel writes: no copy is made into it."""
    if not _is_cupy(out):
        raise TypeError(f"minires CUDA kernels: {what} must be a CuPy array, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"minires CUDA kernels: {what} must be a C-contiguous {np.dtype(dtype).name} "
                         f"array of shape {tuple(shape)}, got {out.dtype} {tuple(out.shape)} "
                         f"(C-contiguous: {out.flags.c_contiguous})")


def _vector(a, length, dtype, what):
    a = _as_device(a, dtype)
    if a.shape != (length,):
        raise ValueError(f"minires CUDA kernels: {what} must have shape ({length},), got {tuple(a.shape)}")
    return a


def _geometry(kernel, stride, padding, dilation, out_hw):
    """The ten int32 kernel arguments of a convolution's geometry ((h, w) pairs in)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    return _geometry_ints(kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)


@functools.lru_cache(maxsize=1024)      # a network has a few geometries: convert each once
def _geometry_ints(*values):
    return _ints(values, "convolution geometry")


# ------------------------------------------------------------------ columns
_workspaces = {}             # (name, dtype) -> flat device buffer


def workspace(name, shape, dtype):
    """A reusable device array of ``shape`` (contents undefined), valid until the next
    call with the same ``name`` and dtype (the CPU module keeps one set per thread; the
    GPU has one host thread).  Once warm, a training step allocates nothing here --
    what CUDA-graph capture needs."""
    key, size = (name, np.dtype(dtype)), int(np.prod(shape))
    flat = _workspaces.get(key)
    if flat is None or flat.size < size:
        flat = _workspaces[key] = _cupy().empty(size, dtype=key[1])
    return flat[:size].reshape(tuple(int(s) for s in shape))


def im2col(x, kernel, stride, padding, dilation, out_hw, groups=1, out=None):
    """x (N, H, W, C) channels-last -> cols (N*Ho*Wo, C*kh*kw), written into ``out`` when given.

    columns.cu: one thread per element of cols.
    """
    t = _ctype(x.dtype, "im2col input")
    _check_ndim(x, 4, "im2col input (N, H, W, C)")
    x = _as_device(x)
    n, h, w, c = x.shape
    geo = _geometry(kernel, stride, padding, dilation, out_hw)
    kh, kw, ho, wo = int(geo[0]), int(geo[1]), int(geo[8]), int(geo[9])
    shape = (n * ho * wo, c * kh * kw)
    if out is None:
        out = _cupy().empty(shape, dtype=x.dtype)
    else:
        _check_out(out, shape, x.dtype, "im2col out")
    _launch_1d(_kernel("columns.cu", expr("im2col_kernel", t)), out.size,
               (x, out, *_ints((n, h, w, c), "input shape"), *geo, *_ints((groups,), "groups")))
    return out


def col2im(cols, x_shape, kernel, stride, padding, dilation, out_hw, groups=1, out=None):
    """cols (N*Ho*Wo, C*kh*kw) -> x (N, H, W, C) channels-last, summing overlapping taps
    (im2col's adjoint).

    columns.cu: one thread per input element gathering its taps (no atomics); ``out``
    (C-contiguous, shape x_shape) is overwritten when given.
    """
    t = _ctype(cols.dtype, "col2im columns")
    cols = _as_device(cols)
    n, h, w, c = (int(s) for s in x_shape)
    geo = _geometry(kernel, stride, padding, dilation, out_hw)
    kh, kw, ho, wo = int(geo[0]), int(geo[1]), int(geo[8]), int(geo[9])
    if tuple(cols.shape) != (n * ho * wo, c * kh * kw):
        raise ValueError(f"col2im: columns of shape {tuple(cols.shape)} do not match x_shape {tuple(x_shape)} "
                         f"and the geometry: expected {(n * ho * wo, c * kh * kw)}")
    if out is None:
        out = _cupy().empty((n, h, w, c), dtype=cols.dtype)
    else:
        _check_out(out, (n, h, w, c), cols.dtype, "col2im out")
    _launch_1d(_kernel("columns.cu", expr("col2im_kernel", t)), out.size,
               (cols, out, *_ints((n, h, w, c), "x_shape"), *geo, *_ints((groups,), "groups")))
    return out


# --------------------------------------------------------------- batch norm
def _bn_apply_grid(count, channels):
    """(blocks per channel, channels) for the apply kernels: ~BN_ITEMS values per thread."""
    return (min(max(1, _ceil_div(count, BLOCK * BN_ITEMS)), _MAX_GRID_X), min(channels, _MAX_GRID_YZ))


def _bn_forward(x, gamma, beta, eps, relu):
    cp = _cupy()
    t = _ctype(x.dtype, "batch_norm input")
    _check_ndim(x, 3, "batch_norm input (N, C, L)")
    x = _as_device(x)
    n, c, length = x.shape
    gamma = _vector(gamma, c, x.dtype, "gamma")
    beta = _vector(beta, c, x.dtype, "beta")
    stats = cp.empty((3, c), dtype=cp.float64)
    mean, var, invstd = stats[0], stats[1], stats[2]
    y = cp.empty_like(x)
    if c == 0 or x.size == 0:
        stats.fill(np.nan)
        return y, mean, var, invstd
    shape_args = (_i32(n, "N"), _i32(c, "C"), np.int64(length))
    _kernel("batchnorm.cu", expr("bn_forward_stats_kernel", t))(
        (min(c, _MAX_GRID_X),), (BN_REDUCE_BLOCK,),
        (x, *shape_args, np.float64(eps), mean, var, invstd))
    _kernel("batchnorm.cu", expr("bn_forward_apply_kernel", t, "true" if relu else "false"))(
        _bn_apply_grid(n * length, c), (BLOCK,), (x, y, mean, invstd, gamma, beta, *shape_args))
    return y, mean, var, invstd


def _bn_backward(g, x, y, mean, invstd, gamma, relu):
    cp = _cupy()
    t = _ctype(x.dtype, "batch_norm input")
    _check_ndim(x, 3, "batch_norm input (N, C, L)")
    x = _as_device(x)
    g = _as_device(g, x.dtype)
    if g.shape != x.shape:
        raise ValueError(f"batch_norm backward: gradient {tuple(g.shape)} != input {tuple(x.shape)}")
    if relu:
        y = _as_device(y, x.dtype)
        if y.shape != x.shape:
            raise ValueError(f"batch_norm_relu backward: output {tuple(y.shape)} != input {tuple(x.shape)}")
    else:
        y = x                                   # not read by the RELU = false kernels
    n, c, length = x.shape
    mean = _vector(mean, c, cp.float64, "mean")
    invstd = _vector(invstd, c, cp.float64, "invstd")
    gamma = _vector(gamma, c, x.dtype, "gamma")
    dx = cp.empty_like(x)
    dgamma = cp.empty(c, dtype=x.dtype)        # separate arrays: they become parameter gradients
    dbeta = cp.empty(c, dtype=x.dtype)
    if c == 0 or x.size == 0:
        dgamma.fill(0)
        dbeta.fill(0)
        return dx, dgamma, dbeta
    coef = cp.empty(3 * c, dtype=cp.float64)    # per channel: gamma*invstd, Σg/M, Σg(x-mean)invstd²/M
    flag = "true" if relu else "false"
    shape_args = (_i32(n, "N"), _i32(c, "C"), np.int64(length))
    _kernel("batchnorm.cu", expr("bn_backward_reduce_kernel", t, flag))(
        (min(c, _MAX_GRID_X),), (BN_REDUCE_BLOCK,),
        (g, x, y, mean, invstd, gamma, *shape_args, dgamma, dbeta, coef))
    _kernel("batchnorm.cu", expr("bn_backward_apply_kernel", t, flag))(
        _bn_apply_grid(n * length, c), (BLOCK,), (g, x, y, mean, coef, *shape_args, dx))
    return dx, dgamma, dbeta


def batch_norm_forward(x, gamma, beta, eps):
    """x (N, C, L) -> y, mean, var (biased), invstd; the statistics are float64 (C,), as on the CPU.

    batchnorm.cu: one block per channel computes the statistics in one pass
    (shifted sums in double), then an elementwise kernel writes y.
    """
    return _bn_forward(x, gamma, beta, eps, relu=False)


def batch_norm_backward(g, x, mean, invstd, gamma):
    """-> dx (N, C, L), dgamma (C,), dbeta (C,) in x's dtype.

    batchnorm.cu: one reduction pass per channel (Σg, Σg·(x-mean)), one elementwise pass.
    """
    return _bn_backward(g, x, None, mean, invstd, gamma, relu=False)


def batch_norm_update_running(running_mean, running_var, mean, var, count, momentum):
    """In place: running = (1 - momentum) running + momentum batch (variance unbiased, x M/(M-1)).

    batchnorm.cu: one launch for both statistics; mean and var as batch_norm_forward gives them.
    """
    cp = _cupy()
    _check_ndim(running_mean, 1, "batch_norm running_mean (C,)")
    c = running_mean.shape[0]
    for what, a in (("running_mean", running_mean), ("running_var", running_var)):
        _check_out(a, (c,), running_mean.dtype, f"batch_norm {what}")   # updated in place
    t = _ctype(running_mean.dtype, "batch_norm running statistics")
    mean = _vector(mean, c, cp.float64, "mean")
    var = _vector(var, c, cp.float64, "var")
    _launch_1d(_kernel("batchnorm.cu", expr("bn_update_running_kernel", t)), c,
               (running_mean, running_var, mean, var, _i32(c, "C"), np.float64(momentum),
                np.float64(count / (count - 1))))


def batch_norm_relu_forward(x, gamma, beta, eps):
    """relu(batch_norm(x)) in one pass: -> y, mean, var, invstd (as batch_norm_forward).

    How an op would use it (nothing does yet): a ``batch_norm_relu`` op, taken in
    training mode where a model has BN immediately followed by ReLU (the stem and
    the first BN of every ResNet basic block; not the second, whose ReLU comes
    after the residual addition), calls this instead of batch_norm then relu,
    updates the running statistics from mean/var exactly as ops/norm.py does, keeps
    y (its own output, which autograd holds anyway) and in backward calls
    batch_norm_relu_backward(g, x3, y3, mean, invstd, gamma).  It saves the
    intermediate BN output (one activation-sized tensor per layer) and two
    elementwise passes.  Evaluation mode keeps the unfused ops.
    """
    return _bn_forward(x, gamma, beta, eps, relu=True)


def batch_norm_relu_backward(g, x, y, mean, invstd, gamma):
    """Backward of relu(batch_norm(x)); y is the forward's output (its y > 0 is ReLU's mask).

    -> dx, dgamma, dbeta: batch-norm backward of g·(y > 0), masked on the fly.
    """
    return _bn_backward(g, x, y, mean, invstd, gamma, relu=True)


# ------------------------------------------------------------------ pooling
def _pool_args(kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    return _ints((kh, kw, sh, sw, ph, pw), "pooling geometry")


def max_pool2d_forward(x, kernel, stride, padding, out_hw):
    """-> out (N, C, Ho, Wo), argmax (int32 flat index into each input plane).

    pooling.cu: one thread per output.  argmax is the head of an int32 allocation
    whose last POOL_GEOMETRY_INTS entries hold the pooling geometry (written by the
    kernel itself): max_pool2d_backward is not given the geometry, and its gather
    needs it.  An argmax from elsewhere still works, through a slower full-plane scan.
    """
    cp = _cupy()
    t = _ctype(x.dtype, "max_pool2d input")
    _check_ndim(x, 4, "max_pool2d input (N, C, H, W)")
    x = _as_device(x)
    n, c, h, w = x.shape
    ho, wo = (int(v) for v in out_hw)
    shape = (n, c, ho, wo)
    size = n * c * ho * wo
    out = cp.empty(shape, dtype=x.dtype)
    record = cp.empty(size + POOL_GEOMETRY_INTS, dtype=cp.int32)
    argmax = record[:size].reshape(shape)
    _launch_1d(_kernel("pooling.cu", expr("max_pool_forward_kernel", t)), size,
               (x, out, argmax, record[size:], np.int64(n * c), *_ints((h, w, ho, wo), "shape"),
                *_pool_args(kernel, stride, padding)))
    return out, argmax


def _geometry_record(argmax):
    """The geometry record behind an argmax made by max_pool2d_forward, else None.

    Only host-side metadata is looked at (CuPy views keep the allocation's root
    array in ``.base``); the kernel also checks the record's magic number.
    """
    base = argmax.base
    if (base is not None and base.dtype == np.int32 and base.ndim == 1 and argmax.flags.c_contiguous
            and base.size == argmax.size + POOL_GEOMETRY_INTS and base.data.ptr == argmax.data.ptr):
        return base[argmax.size:]
    return None


def max_pool2d_backward(g, argmax, x_shape):
    """dx (x_shape): each window's gradient to its argmax.

    pooling.cu: one thread per input pixel, gathering over the windows that contain it.
    """
    cp = _cupy()
    t = _ctype(g.dtype, "max_pool2d gradient")
    g = _as_device(g)
    record = _geometry_record(argmax) if _is_cupy(argmax) else None
    argmax = _as_device(argmax, cp.int32)
    n, c, h, w = (int(s) for s in x_shape)
    if g.ndim != 4 or g.shape != argmax.shape or tuple(g.shape[:2]) != (n, c):
        raise ValueError(f"max_pool2d backward: gradient {tuple(g.shape)}, argmax {tuple(argmax.shape)} "
                         f"and input {tuple(x_shape)} do not match")
    ho, wo = g.shape[2:]
    dx = cp.empty((n, c, h, w), dtype=g.dtype)
    _launch_1d(_kernel("pooling.cu", expr("max_pool_backward_kernel", t)), dx.size,
               (g, argmax, record if record is not None else np.uint64(0), dx, np.int64(n * c),
                *_ints((h, w, ho, wo), "shape")))
    return dx


def avg_pool2d_forward(x, kernel, stride, padding, out_hw, count_include_pad):
    """pooling.cu: one thread per output; PyTorch's divisor (see kernels/cpu/pooling.py)."""
    cp = _cupy()
    t = _ctype(x.dtype, "avg_pool2d input")
    _check_ndim(x, 4, "avg_pool2d input (N, C, H, W)")
    x = _as_device(x)
    n, c, h, w = x.shape
    ho, wo = (int(v) for v in out_hw)
    out = cp.empty((n, c, ho, wo), dtype=x.dtype)
    _launch_1d(_kernel("pooling.cu", expr("avg_pool_forward_kernel", t)), out.size,
               (x, out, np.int64(n * c), *_ints((h, w, ho, wo), "shape"),
                *_pool_args(kernel, stride, padding), np.int32(bool(count_include_pad))))
    return out


def avg_pool2d_backward(g, x_shape, kernel, stride, padding, count_include_pad):
    """pooling.cu: one thread per input pixel, gathering g/divisor over the windows that contain it."""
    cp = _cupy()
    t = _ctype(g.dtype, "avg_pool2d gradient")
    _check_ndim(g, 4, "avg_pool2d gradient (N, C, Ho, Wo)")
    g = _as_device(g)
    n, c, h, w = (int(s) for s in x_shape)
    if tuple(g.shape[:2]) != (n, c):
        raise ValueError(f"avg_pool2d backward: gradient {tuple(g.shape)} does not match input {tuple(x_shape)}")
    ho, wo = g.shape[2:]
    dx = cp.empty((n, c, h, w), dtype=g.dtype)
    _launch_1d(_kernel("pooling.cu", expr("avg_pool_backward_kernel", t)), dx.size,
               (g, dx, np.int64(n * c), *_ints((h, w, ho, wo), "shape"),
                *_pool_args(kernel, stride, padding), np.int32(bool(count_include_pad))))
    return dx


# --------------------------------------------------------------------- GEMM
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
    ``out`` must not overlap a or b.  conv2d's products map onto it as:
        W @ cols                  gemm(w_groups, cols)
        g2 @ cols^T  (dW +=)      gemm(g2, cols, out=gw, trans_b=True, accumulate=True)
        W^T @ g2                  gemm(w_groups, g2, trans_a=True)
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
    if max(M, N, K) > _INT_MAX - max(GEMM_BM, GEMM_BN):
        raise ValueError(f"gemm: dimensions {(M, N, K)} too large for 32-bit tile indices")
    grid_y = _ceil_div(M, GEMM_BM)
    if grid_y > _MAX_GRID_YZ:
        raise ValueError(f"gemm: M = {M} needs {grid_y} row blocks, more than the grid's {_MAX_GRID_YZ}")
    stride_a = M * K if a.ndim == 3 and a.shape[0] == batch and batch > 1 else 0
    stride_b = K * N if b.ndim == 3 and b.shape[0] == batch and batch > 1 else 0
    fn = _kernel("gemm.cu", expr("gemm_kernel", t, "true" if trans_a else "false",
                                 "true" if trans_b else "false"))
    fn((_ceil_div(N, GEMM_BN), grid_y, min(batch, _MAX_GRID_YZ)), (GEMM_THREADS,),
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


# ---------------------------------------------------------------------- SGD
# Pointer tables of sgd_step, keyed by the arrays' addresses and sizes.  The key
# changes whenever a gradient is a fresh array -- as minires's autograd makes
# them today -- and then the table is rebuilt and uploaded (a few KB, a host to
# device copy that waits for the device).  For the table to be reused step after
# step, and above all for a captured CUDA graph (whose replay reads the table it
# was captured with and must not copy from the host), parameters, gradients and
# momentum buffers must live in persistent buffers: e.g. the optimizer owns one
# flat gradient buffer, and backward writes each parameter's gradient into its
# slice instead of allocating.  A stale entry is harmless: it is only used for
# arrays at exactly its addresses and sizes, which is exactly what it describes.
_sgd_tables = OrderedDict()
_SGD_TABLE_CACHE = 16


def _sgd_table(triples):
    """(device table, number of blocks) for [(param, grad, buf or None), ...] (see sgd.cu)."""
    cp = _cupy()
    key = (cp.cuda.runtime.getDevice(),
           tuple((p.data.ptr, g.data.ptr, 0 if b is None else b.data.ptr, p.size) for p, g, b in triples))
    entry = _sgd_tables.get(key)
    if entry is not None:
        _sgd_tables.move_to_end(key)
        return entry
    count = len(triples)
    sizes = np.array([p.size for p, _, _ in triples], dtype=np.int64)
    first_block = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(_ceil_div(sizes, SGD_CHUNK), out=first_block[1:])
    host = np.empty(5 * count + 1, dtype=np.uint64)
    host[0:count] = [p.data.ptr for p, _, _ in triples]
    host[count:2 * count] = [g.data.ptr for _, g, _ in triples]
    host[2 * count:3 * count] = [0 if b is None else b.data.ptr for _, _, b in triples]
    host[3 * count:4 * count] = sizes
    host[4 * count:] = first_block
    entry = (cp.asarray(host), int(first_block[-1]))
    _sgd_tables[key] = entry
    if len(_sgd_tables) > _SGD_TABLE_CACHE:
        _sgd_tables.popitem(last=False)
    return entry


def sgd_step(params, grads, bufs, lr, momentum, weight_decay, dampening, nesterov, first_step):
    """One SGD step over all parameters, one kernel launch per dtype (sgd.cu).

    params, grads, bufs: lists of C-contiguous CuPy arrays, matched by position;
    bufs (the momentum buffers, updated in place) may be None when momentum == 0.
    first_step: the buffers are (re)initialised to the gradient, as PyTorch does
    when a parameter has no buffer yet.  lr: a number, or a float64 CuPy array of
    one element that the kernel reads on the device (so that a captured graph
    follows a schedule that writes into it).  Parameters are updated in place.
    """
    cp = _cupy()
    params, grads = list(params), list(grads)
    use_momentum = momentum != 0
    bufs = list(bufs) if use_momentum else [None] * len(params)
    if not (len(params) == len(grads) == len(bufs)):
        raise ValueError(f"sgd_step: {len(params)} parameters, {len(grads)} gradients, {len(bufs)} buffers")
    groups = {}
    for i, (p, g, b) in enumerate(zip(params, grads, bufs)):
        arrays = (p, g) if b is None else (p, g, b)
        if use_momentum and b is None:
            raise ValueError(f"sgd_step: parameter {i} has no momentum buffer (momentum={momentum})")
        for a in arrays:
            if not _is_cupy(a):
                raise TypeError(f"sgd_step: parameter {i}: expected CuPy arrays, got {type(a).__name__}")
            if a.shape != p.shape or a.dtype != p.dtype or not a.flags.c_contiguous:
                raise ValueError(f"sgd_step: parameter {i}: parameter, gradient and buffer must be "
                                 f"C-contiguous with one shape and dtype, got "
                                 f"{[(tuple(x.shape), str(x.dtype), x.flags.c_contiguous) for x in arrays]}")
        _ctype(p.dtype, f"sgd_step parameter {i}")
        if p.size:
            groups.setdefault(p.dtype.name, []).append((p, g, b))
    if _is_cupy(lr):
        if lr.dtype != cp.float64 or lr.size != 1:
            raise ValueError(f"sgd_step: a device learning rate must be one float64 element, "
                             f"got {lr.dtype} of shape {tuple(lr.shape)}")
        lr_value, lr_ptr = 0.0, lr
    else:
        lr_value, lr_ptr = float(lr), np.uint64(0)
    for dtype_name, triples in groups.items():
        table, n_blocks = _sgd_table(triples)
        _kernel("sgd.cu", expr("sgd_multi_tensor_kernel", CTYPES[dtype_name]))(
            (n_blocks,), (SGD_THREADS,),
            (table, np.int32(len(triples)), np.float64(lr_value), lr_ptr, np.float64(momentum),
             np.float64(weight_decay), np.float64(dampening), np.int32(bool(nesterov)),
             np.int32(bool(first_step))))


# ------------------------------------------------------------- cross-entropy
def _ce_target(target, n):
    cp = _cupy()
    target = cp.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype {target.dtype}")
    if target.shape != (n,):
        raise ValueError(f"cross_entropy: target shape {tuple(target.shape)} != ({n},)")
    if target.dtype.name not in INDEX_CTYPES:
        target = target.astype(cp.int64)
    return cp.ascontiguousarray(target), INDEX_CTYPES[target.dtype.name]


def cross_entropy_forward(logits, target):
    """logits (N, C), target (N,) ints -> losses (N,), lse (N,) in logits' dtype.

    losses[i] = -log softmax(logits)[i, target[i]], NaN where target[i] is not in
    [0, C) (no host-side check: it would sync every step); lse (the row's
    log-sum-exp) is what cross_entropy_backward needs.  loss.cu: a warp per row.
    An op would reduce the losses itself (mean/sum) -- NaN propagates.
    """
    cp = _cupy()
    t = _ctype(logits.dtype, "cross_entropy logits")
    _check_ndim(logits, 2, "cross_entropy logits (N, C)")
    logits = _as_device(logits)
    n, c = logits.shape
    if c == 0:
        raise ValueError("cross_entropy: logits have no classes (C = 0)")
    target, ti = _ce_target(target, n)
    losses = cp.empty(n, dtype=logits.dtype)
    lse = cp.empty(n, dtype=logits.dtype)
    if n:
        _kernel("loss.cu", expr("cross_entropy_forward_kernel", t, ti))(
            (_ceil_div(n, CE_ROWS_PER_BLOCK),), (32 * CE_ROWS_PER_BLOCK,),
            (logits, target, losses, lse, _i32(n, "N"), _i32(c, "C")))
    return losses, lse


def cross_entropy_backward(logits, target, lse, g, scale=1.0):
    """d logits = (softmax(logits) - onehot(target)) * g * scale; NaN rows for bad targets.

    g: the upstream gradient on the device -- one element (reductions 'mean' and
    'sum': pass scale 1/N and 1) or N elements (reduction 'none'); a Python
    number is accepted too.  loss.cu: one thread per logit.
    """
    cp = _cupy()
    t = _ctype(logits.dtype, "cross_entropy logits")
    _check_ndim(logits, 2, "cross_entropy logits (N, C)")
    logits = _as_device(logits)
    n, c = logits.shape
    target, ti = _ce_target(target, n)
    lse = _vector(lse, n, logits.dtype, "lse")
    g = cp.full((), g, dtype=logits.dtype) if not _is_cupy(g) else _as_device(g, logits.dtype)
    if g.size == 1:
        g_stride = 0
    elif g.size == n:
        g_stride = 1
    else:
        raise ValueError(f"cross_entropy backward: upstream gradient of shape {tuple(g.shape)}, "
                         f"expected one element or ({n},)")
    grad = cp.empty_like(logits)
    scalar = np.float32 if t == "float" else np.float64
    _launch_1d(_kernel("loss.cu", expr("cross_entropy_backward_kernel", t, ti)), grad.size,
               (logits, target, lse, g, np.int64(g_stride), scalar(scale), grad, _i32(n, "N"), _i32(c, "C")))
    return grad
